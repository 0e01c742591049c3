"""What the figures compute, from the trained zoo of a preset; results are cached in
``<data root>/results/<preset>/`` (recomputed when a checkpoint is newer than its cache entry), and every function
that reads checkpoints is :func:`univenc.results.recorded`: its value also goes into the preset's results file,
from which ``make figures RESULTS=path`` rebuilds the figures and the claims without any checkpoint.

Every statistic comes with its null: spatial scores beside the same score on randomly initialised weights of
the same shapes, eigenvector similarities beside randomly initialised networks, and S (eq. 6) beside its
random-rotation floor.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .alignment import analysed_layers, pair_layers
from .covariance import fold_batchnorm_scale, layer_spectrum, truncate_layer
from .data import data_root, load_dataset
from .results import recorded, results_source, settings_digest
from .similarity import compare, compare_many, group_pairs, with_travel
from .spatial import (PADDING_STATUS, conv_weights, layer_maps, mean_spatial_covariance, padding_dominated,
                      random_init_weights, spatial_eigenvectors, spatial_similarity)
from .storage import file_locks, load_checkpoint, save_torch
from .training import evaluate, tensor_batches
from .catalogue import ABLATION_NETS, ABLATIONS, PAIRS, ZOO, ZOO_BY_NAME
from .models import for_inference, load_checkpoint_model
from .presets import get_preset
from .zoo import (ablation_checkpoint, build_model, checkpoint_path, load_net, load_task_for, zoo_checkpoints,
                  zoo_dir)

__all__ = ["trained", "spatial_layers", "spatial_maps", "spatial_score_table", "first_layer_table",
           "probe_batches", "compare_pair", "compare_pairs", "layer_ranks", "rank_curves", "top_similarity",
           "random_init_net", "results_dir", "null_comparison", "layer_ranks_random", "trajectory",
           "ablation_table", "spatial_grid", "raw_filters", "spatial_report_of", "canonical_filter_set",
           "training_logs", "zoo_table", "zoo_net", "canonical_scores", "chance_levels", "spatial_panels",
           "rainbow_table", "init_curves", "steps_to_accuracy", "INIT_STUDY", "RAINBOW_SOURCE"]


def results_dir(preset, root=None) -> Path:
    return data_root(root) / "results" / get_preset(preset).name


@recorded
def trained(names, preset, root=None):
    """The subset of ``names`` whose final checkpoint exists."""
    return [n for n in names if checkpoint_path(n, preset, root).exists()]


def spatial_layers(model):
    """Spatial eigenvalues and eigen-images of each k x k conv layer: list of (eigenvalues, (k^2, k, k))."""
    return [spatial_eigenvectors(m.weight) for _, m in conv_weights(model) if m.kernel_size[0] > 1]


def spatial_maps(model) -> list:
    """Input map side of each k x k conv layer, in the order of :func:`spatial_layers` (NaN when unknown)."""
    maps = layer_maps(model)
    return [maps[name] for name, m in conv_weights(model) if m.kernel_size[0] > 1]


def _null_scores(shape_a, shape_b, seeds, n=5, grid="resample"):
    out = []
    for s in range(seeds):
        ea = spatial_eigenvectors(random_init_weights(shape_a, 2 * s))[1]
        eb = spatial_eigenvectors(random_init_weights(shape_b, 2 * s + 1))[1]
        out.append(spatial_similarity(ea, eb, n, grid))
    return np.array(out)


@recorded
def spatial_score_table(names, preset, root=None, n: int = 5, grid: str = "resample") -> pd.DataFrame:
    """Spatial universality score (:func:`univenc.spatial.spatial_similarity`) between every pair of the
    networks ``names``, layer by layer, with its null on random-init weights of the same shapes
    (``preset.null_seeds`` seeds). Columns: net_a, net_b, layer (1-based), k_a, k_b, map_a, map_b (input map
    side), padded (the layer's map is not larger than k in either network), score, null_mean, null_std."""
    p = get_preset(preset)
    nets = {name: load_net(name, p, root) for name in trained(names, p, root)}
    eig = {name: spatial_layers(m) for name, m in nets.items()}
    maps = {name: spatial_maps(m) for name, m in nets.items()}
    shapes = {name: [tuple(m.weight.shape) for _, m in conv_weights(net) if m.kernel_size[0] > 1]
              for name, net in nets.items()}
    rows = []
    for a, b in itertools.combinations(nets, 2):
        for layer, ((_, ea), (_, eb)) in enumerate(zip(eig[a], eig[b]), start=1):
            null = _null_scores(shapes[a][layer - 1], shapes[b][layer - 1], p.null_seeds, n, grid)
            k_a, k_b, map_a, map_b = ea.shape[-1], eb.shape[-1], maps[a][layer - 1], maps[b][layer - 1]
            rows.append(dict(net_a=a, net_b=b, layer=layer, k_a=k_a, k_b=k_b, map_a=map_a, map_b=map_b,
                             padded=padding_dominated(map_a, k_a) or padding_dominated(map_b, k_b),
                             score=spatial_similarity(ea, eb, n, grid), null_mean=null.mean(), null_std=null.std()))
    return pd.DataFrame(rows)


@recorded
def first_layer_table(names, preset, root=None, n: int = 5) -> pd.DataFrame:
    """Within each network: score of layer 1 against the common eigenvectors of the deeper layers whose input
    map is larger than k, beside the mean pairwise score among those layers. Columns: net, first_vs_deeper,
    deeper_vs_deeper, null_mean, deeper_layers (1-based, counted), excluded_layers (padding-dominated)."""
    p = get_preset(preset)
    rows = []
    for name in trained(names, p, root):
        net = load_net(name, p, root)
        layers = spatial_layers(net)
        maps = spatial_maps(net)
        k = layers[0][1].shape[-1]
        counted = [i for i in range(1, len(layers)) if not padding_dominated(maps[i], k)]
        weights = [m.weight for _, m in conv_weights(net) if m.kernel_size[0] > 1]
        common = spatial_eigenvectors(covariance=mean_spatial_covariance([weights[i] for i in counted]))[1]
        deeper = [spatial_similarity(layers[i][1], layers[j][1], n) for i, j in itertools.combinations(counted, 2)]
        shape = tuple(conv_weights(net)[0][1].weight.shape)
        rows.append(dict(net=name, first_vs_deeper=spatial_similarity(layers[0][1], common, n),
                         deeper_vs_deeper=float(np.mean(deeper)),
                         null_mean=float(_null_scores(shape, shape, p.null_seeds, n).mean()),
                         deeper_layers=[i + 1 for i in counted],
                         excluded_layers=[i + 1 for i in range(1, len(layers)) if i not in counted]))
    return pd.DataFrame(rows)


_PROBES: dict = {}


def probe_batches(preset, root=None, batch_size: int = 250):
    """The alignment's probe images: the first ``preset.analysis_images`` CIFAR-10 test images, as float
    batches preprocessed as in training (natural images shared by every pair). Loaded once per process."""
    p = get_preset(preset)
    key = (str(data_root(root)), p.analysis_images, batch_size)
    if key not in _PROBES:
        x, y = load_dataset("cifar10", train=False, root=root)
        x, y = x[: p.analysis_images], y[: p.analysis_images]
        _PROBES[key] = [b for b, _ in tensor_batches(x, y, batch_size, False, None, torch.device("cpu"),
                                                     shuffle=False)]
    return _PROBES[key]


def random_init_net(name: str, preset, seed: int):
    """A randomly initialised network with the architecture of zoo entry ``name`` (null model)."""
    return for_inference(build_model(dataclasses.replace(ZOO_BY_NAME[name], init_seed=seed), preset, num_classes=10))


def _cached(cache: Path, sources, p):
    """The value saved in ``cache`` by :func:`_save_cache`, or None when there is none, when a file of
    ``sources`` (checkpoints) is newer, or when it was computed by another version of the library or at other
    settings of the preset (:func:`univenc.results.settings_digest`)."""
    if not cache.exists() or any(cache.stat().st_mtime < s.stat().st_mtime for s in sources if s.exists()):
        return None
    stored = load_checkpoint(cache)
    return stored["value"] if isinstance(stored, dict) and stored.get("key") == settings_digest(p) else None


def _save_cache(value, cache: Path, p) -> None:
    save_torch({"key": settings_digest(p), "value": value}, cache)


def zoo_net(name: str, preset, root=None, fold_bn: bool = False):
    """:func:`univenc.zoo.load_net`; with ``fold_bn``, the scale of each conv's affine BatchNorm folded into the
    conv weight (:func:`univenc.covariance.fold_batchnorm_scale`; the zoo's VGGs have none)."""
    net = load_net(name, preset, root)
    return fold_batchnorm_scale(net, net.input_size)[0] if fold_bn else net


def _pair_cache(a: str, b: str, p, root, fold_bn: bool) -> Path:
    return results_dir(p, root) / "compare" / f"{a}__{b}{'__bn_folded' if fold_bn else ''}.pt"


# Architectures whose channel maps are linear layers (a ViT: attention and MLP projections): their comparisons
# include nn.Linear layers; the others compare their convolutions, as the paper does.
LINEAR_ARCHS = ("vit",)


def _includes_linear(a: str, b: str) -> bool:
    return any(ZOO_BY_NAME[n].arch in LINEAR_ARCHS for n in (a, b))


def _pair_sources(a: str, b: str, p, root) -> list:
    return [checkpoint_path(a, p, root), checkpoint_path(b, p, root)]


def _compare_zoo_pairs(pairs, p, root, fold_bn: bool, progress: bool) -> None:
    """Compare the zoo pairs [(a, b), ...] whose cache is missing or older than a checkpoint, in as few passes over
    the probe images as the memory budget allows (each network runs once per pass, whatever the number of its
    pairs), and cache them pass by pass."""
    def uncached(pairs):
        return [(a, b) for a, b in dict.fromkeys(pairs)
                if _cached(_pair_cache(a, b, p, root, fold_bn), _pair_sources(a, b, p, root), p) is None]

    todo = uncached(pairs)
    if not todo:
        return
    # Processes comparing overlapping pairs at once (a notebook in JupyterLab beside make figures) compare each pair
    # once: the later one waits for the pairs the other is comparing, then finds them cached.
    locks = [_pair_cache(a, b, p, root, fold_bn).with_suffix(".lock") for a, b in todo]
    with file_locks(locks, required=False):
        _compare_uncached(uncached(todo), p, root, fold_bn, progress)


def _compare_uncached(todo, p, root, fold_bn: bool, progress: bool) -> None:
    if not todo:
        return
    nets = {name: zoo_net(name, p, root, fold_bn) for name in dict.fromkeys(n for pair in todo for n in pair)}
    for linear in sorted({_includes_linear(a, b) for a, b in todo}):  # one pass over the probes per kind
        layers = {(a, b): pair_layers(nets[a], nets[b], linear) for a, b in todo if _includes_linear(a, b) == linear}
        for group in group_pairs(layers, keep_matrices=False):  # cached group by group: an interrupted run resumes
            _cache_zoo_pairs(compare_many(nets, group, probe_batches(p, root), n_draws=p.n_draws, progress=progress,
                                          layer_pairs=layers, keep_matrices=False), nets, p, root, fold_bn)


def _cache_zoo_pairs(results: dict, nets: dict, p, root, fold_bn: bool) -> None:
    """Cache each of ``results`` ({(a, b): Comparison}) with its layers' travel from their initial weights."""
    for (a, b), res in results.items():
        inits = [checkpoint_path(n, p, root).parent / "epoch_000.pt" for n in (a, b)]
        table = with_travel(res.table, nets[a], nets[b], *(i if i.exists() else None for i in inits))
        _save_cache({"table": table.assign(net_a=a, net_b=b).to_dict("list"), "cosines": res.cosines},
                    _pair_cache(a, b, p, root, fold_bn), p)


@recorded
def compare_pair(a: str, b: str, preset, root=None, progress: bool = False, fold_bn: bool = False) -> dict:
    """:func:`univenc.similarity.compare` of two zoo networks (BatchNorm scale folded in with ``fold_bn``),
    cached: two architectures are paired by input map size and stage, a ViT's linear layers are included
    (``LINEAR_ARCHS``). Returns {"table": DataFrame, "cosines": {layer: {...}}}."""
    p = get_preset(preset)
    cache, sources = _pair_cache(a, b, p, root, fold_bn), _pair_sources(a, b, p, root)
    out = _cached(cache, sources, p)
    if out is None:
        _compare_zoo_pairs([(a, b)], p, root, fold_bn, progress)
        out = _cached(cache, sources, p)
    return {"table": pd.DataFrame(out["table"]), "cosines": out["cosines"]}


def compare_pairs(preset, root=None, groups=None, progress: bool = True, pairs=None,
                  fold_bn: bool = False) -> tuple[pd.DataFrame, dict]:
    """Compare every pair of ``pairs`` (default ``PAIRS``; optionally only some ``groups``) whose networks are
    trained, all in one pass over the probe images. Returns (table with a ``group`` column, {(a, b): cosines}).
    Pairs whose networks are missing are listed in the table's ``attrs["missing"]``."""
    p = get_preset(preset)
    selected = [x for x in (PAIRS if pairs is None else pairs) if groups is None or x[2] in groups]
    ready = [x for x in selected if len(trained([x[0], x[1]], p, root)) == 2]
    if results_source() is None:
        _compare_zoo_pairs([(a, b) for a, b, _ in ready], p, root, fold_bn, progress)
    tables, cosines = [], {}
    for a, b, group in ready:
        out = compare_pair(a, b, p, root, fold_bn=fold_bn)
        tables.append(out["table"].assign(group=group))
        cosines[(a, b)] = out["cosines"]
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    table.attrs["missing"] = [x for x in selected if x not in ready]
    return table, cosines


def top_similarity(cos: np.ndarray, r: int) -> float:
    """Mean over the leading ``r`` eigenvectors of network a of their best |cos| among b's leading ``r``
    (robust to swapped ranks). Chance level for random directions is about sqrt(2 ln r / d)."""
    r = max(1, min(r, cos.shape[0]))
    return float(cos[:r, :r].max(axis=1).mean())


@recorded
def null_comparison(name: str, preset, root=None, seeds=(9001, 9002)) -> dict:
    """:func:`compare` of two randomly initialised networks with the architecture of ``name`` (cached)."""
    p = get_preset(preset)
    cache = results_dir(p, root) / "compare" / f"null_{name}.pt"
    out = _cached(cache, [], p)
    if out is not None:
        return {"table": pd.DataFrame(out["table"]), "cosines": out["cosines"]}
    a, b = random_init_net(name, p, seeds[0]), random_init_net(name, p, seeds[1])
    res = compare(a, b, probe_batches(p, root), n_draws=p.n_draws, progress=False)
    _save_cache({"table": res.table.to_dict("list"), "cosines": res.cosines}, cache, p)
    return {"table": res.table, "cosines": res.cosines}


@recorded
def layer_ranks(names, preset, root=None) -> pd.DataFrame:
    """Effective rank (eq. 4) and retained rank of every analysed layer of each network, unaligned.
    Columns: net, layer, depth, d, Cout, rank, r_eff."""
    p = get_preset(preset)
    rows = []
    for name in trained(names, p, root):
        net = load_net(name, p, root)
        for depth, (layer, m) in enumerate(analysed_layers(net), start=1):
            spec = layer_spectrum(m)
            rows.append(dict(net=name, layer=layer, depth=depth, d=spec.d, Cout=spec.cout, rank=spec.rank,
                             r_eff=spec.effective_rank))
    return pd.DataFrame(rows)


@recorded
def layer_ranks_random(name: str, preset, root=None, seeds=(9001, 9002, 9003)) -> float:
    """Mean effective rank over the layers of randomly initialised networks of ``name``'s architecture."""
    r = [layer_spectrum(m).effective_rank for s in seeds
         for _, m in analysed_layers(random_init_net(name, preset, s))]
    return float(np.mean(r))


def _test_batches(name, p, root, n=2000):
    data = load_task_for(ZOO_BY_NAME[name], p, root)
    x, y = data.test_images[:n], data.test_labels[:n]
    return list(tensor_batches(x, y, 500, False, None, torch.device("cpu"), shuffle=False))


@recorded
def rank_curves(name: str, preset, root=None, n_ranks: int = 8) -> pd.DataFrame:
    """Fig. 2 (bottom right): test accuracy when one layer's weights are replaced by their projection on the
    top-r eigenvectors of the layer's channel covariance, for a geometric grid of r per layer; plus every
    layer at once truncated to ceil(r_eff) (row layer="all@r_eff") and, as a null, each layer projected on
    r random directions. Columns: layer, depth, rank, r_eff, d, accuracy, random_accuracy, full_accuracy."""
    p = get_preset(preset)
    cache = results_dir(p, root) / f"rank_curves_{name}.pt"
    out = _cached(cache, [checkpoint_path(name, p, root)], p)
    if out is not None:
        return pd.DataFrame(out)
    net = load_net(name, p, root)
    batches = _test_batches(name, p, root)
    full = evaluate(net, batches)[1]
    rng = np.random.default_rng(0)
    rows, all_ranks = [], {}
    for depth, (layer, m) in enumerate(analysed_layers(net), start=1):
        spec = layer_spectrum(m)
        r_eff = spec.effective_rank
        all_ranks[layer] = int(np.ceil(r_eff))
        d = spec.d
        ranks = sorted(set(np.unique(np.geomspace(1, d, n_ranks).astype(int))) | {max(1, int(np.ceil(r_eff)))})
        for r in ranks:
            acc = evaluate(truncate_layer(net, layer, r), batches)[1]
            # null: the same rank along random directions
            q = np.linalg.qr(rng.standard_normal((d, r)))[0]
            rand = _project(net, layer, q)
            rows.append(dict(layer=layer, depth=depth, rank=r, r_eff=r_eff, d=d, accuracy=acc,
                             random_accuracy=evaluate(rand, batches)[1], full_accuracy=full))
    joint = net
    for layer, r in all_ranks.items():
        joint = truncate_layer(joint, layer, max(r, 1))
    rows.append(dict(layer="all@r_eff", depth=0, rank=-1, r_eff=float("nan"), d=0,
                     accuracy=evaluate(joint, batches)[1], random_accuracy=float("nan"), full_accuracy=full))
    _save_cache(pd.DataFrame(rows).to_dict("list"), cache, p)
    return pd.DataFrame(rows)


def _project(net, layer, basis):
    out = copy.deepcopy(net)
    m = out.get_submodule(layer)
    w = m.weight.detach().double().reshape(m.weight.shape[0], -1).numpy()
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor((w @ basis) @ basis.T, dtype=m.weight.dtype).reshape(m.weight.shape))
    return out


# --------------------------------------------------------------------------- training dynamics (Figs. 6-7)

@recorded
def trajectory(a: str, b: str | None, preset, root=None, progress: bool = False):
    """:func:`univenc.trajectories.learning_trajectory` of zoo network ``a`` (and ``b`` at matching epochs),
    cached; None when a network or its checkpoints are missing."""
    from .trajectories import learning_trajectory

    p = get_preset(preset)
    names = [a] + ([b] if b else [])
    if len(trained(names, p, root)) < len(names):
        return None
    paths = {n: zoo_checkpoints(n, p, root) for n in names}
    cache = results_dir(p, root) / "trajectories" / f"{'__'.join(names)}.pt"
    out = _cached(cache, [x for ps in paths.values() for x in ps], p)
    if out is not None:
        return pd.DataFrame(out)
    table = learning_trajectory(paths[a], paths.get(b), probe_batches(p, root) if b else None,
                                n_draws=p.n_draws, progress=progress)
    _save_cache(table.to_dict("list"), cache, p)
    return table


@recorded
def ablation_table(preset, root=None) -> pd.DataFrame | None:
    """One row per trained setting of ``univenc.zoo.ABLATIONS``: setting, kind, test_acc (mean of the twins),
    S_twins (mean over layers), S_twins_by_layer, S_true_random_1_3 (true vs random partner, layers 1-3).
    None when nothing of the sweep is trained."""
    p = get_preset(preset)
    settings = {ab: {role: ablation_checkpoint(ab, role, p, root) for role in ABLATION_NETS} for ab in ABLATIONS}
    settings = {ab: paths for ab, paths in settings.items() if all(x.exists() for x in paths.values())}
    tables = _compare_files([(paths["twin_a"], paths[other]) for paths in settings.values()
                             for other in ("twin_b", "random")], p, root)
    rows = []
    for ab, paths in settings.items():
        twins = tables[(paths["twin_a"], paths["twin_b"])]
        true_random = tables[(paths["twin_a"], paths["random"])]
        acc = [load_checkpoint(paths[r])["log"][-1]["test_acc"] for r in ("twin_a", "twin_b")]
        rows.append(dict(setting=ab.name, kind=ab.kind, test_acc=float(np.mean(acc)), S_twins=twins.S.mean(),
                         S_twins_by_layer=twins.S.tolist(),
                         S_true_random_1_3=true_random[true_random.depth <= 3].S.mean()))
    return pd.DataFrame(rows) if rows else None


def _compare_files(pairs, p, root) -> dict:
    """{(path_a, path_b): :func:`compare` table} of pairs of checkpoint files, cached beside the other
    comparisons; those not cached are computed in one pass over the probe images."""
    def cache(path_a, path_b):
        key = f"{path_a.parent.parent.name}_{path_a.parent.name}__{path_b.parent.name}"
        return results_dir(p, root) / "compare" / "ablations" / f"{key}.pt"

    tables = {pair: _cached(cache(*pair), pair, p) for pair in pairs}
    todo = [pair for pair, table in tables.items() if table is None]
    if todo:
        nets = {path: load_checkpoint_model(path)[0] for path in dict.fromkeys(x for pair in todo for x in pair)}
        for pair, res in compare_many(nets, todo, probe_batches(p, root), n_draws=p.n_draws, progress=False,
                                      keep_matrices=False).items():
            tables[pair] = res.table.to_dict("list")
            _save_cache(tables[pair], cache(*pair), p)
    return {pair: pd.DataFrame(table) for pair, table in tables.items()}


# --------------------------------------------------------------------------- what the notebooks plot

@recorded
def spatial_grid(names: dict, preset, root=None) -> dict:
    """Fig. 1 panels: {label: (eigenvalues and eigen-images per k x k layer, input map per layer)} of the
    trained networks among ``names`` ({label: zoo name})."""
    p = get_preset(preset)
    nets = {label: load_net(name, p, root) for label, name in names.items() if trained([name], p, root)}
    return {label: (spatial_layers(net), spatial_maps(net)) for label, net in nets.items()}


@recorded
def raw_filters(name: str, preset, root=None, n: int = 16) -> tuple[list, list]:
    """Fig. 5: the first ``n`` x ``n`` raw filters (co, ci, k, k) of each k x k conv layer, and its input map."""
    net = load_net(name, preset, root)
    weights = [m.weight.detach()[:n, :n].numpy().copy() for _, m in conv_weights(net) if m.kernel_size[0] > 1]
    return weights, spatial_maps(net)


@recorded
def canonical_scores(names, preset, root=None, fold_bn: bool = False) -> pd.DataFrame:
    """:func:`univenc.spatial.canonical_score_table` of each trained network among ``names`` (its k x k layers
    against the package's canonical 3x3 set, beside random-init weights), BatchNorm scale folded in with
    ``fold_bn``. Columns: net, layer, k, map, status, padded, top1/3/5, score, null."""
    from .spatial import canonical_score_table

    tables = []
    for name in trained(names, preset, root):
        net = zoo_net(name, preset, root, fold_bn)
        table = canonical_score_table(net, net.input_size, null_seeds=get_preset(preset).null_seeds)
        table = table[table.k > 1].drop(columns=["Cout", "Cin", "groups", "trainable"])
        tables.append(table.assign(net=name, padded=[padding_dominated(m, k) for m, k in zip(table["map"], table.k)]))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


@recorded
def chance_levels(datasets, preset, root=None) -> dict:
    """{dataset: test accuracy of always answering its most frequent test class}, for the datasets present."""
    from .data import is_available

    out = {}
    for name in datasets:
        if is_available(name, root):
            labels = load_dataset(name, train=False, root=root, download=False)[1]
            out[name] = float(torch.bincount(labels).max()) / len(labels)
    return out


@recorded
def spatial_report_of(name: str, preset, root=None) -> pd.DataFrame:
    """:func:`univenc.spatial.spatial_report` of a zoo network (its dataset's input size)."""
    from .spatial import spatial_report
    return spatial_report(load_net(name, preset, root))


@recorded
def canonical_filter_set(name: str, preset, root=None, n: int = 5):
    """(eigenvalues, filters (n, k, k)) of :func:`univenc.spatial.canonical_filters` for one zoo network."""
    from .spatial import canonical_filters
    return canonical_filters([load_net(name, preset, root)], n=n)


@recorded
def training_logs(preset, root=None) -> dict:
    """{name: per-epoch log (DataFrame)} of every zoo network with a log."""
    folder = zoo_dir(preset, root)
    return {s.name: pd.read_csv(folder / s.name / "log.csv") for s in ZOO if (folder / s.name / "log.csv").exists()}


@recorded
def zoo_table(preset, root=None) -> pd.DataFrame:
    """:func:`univenc.zoo.zoo_table`: one row per trained network (what ``figures/zoo.csv`` holds)."""
    from .zoo import zoo_table as table
    return table(preset, root)


@recorded
def spatial_panels(names: dict, preset, root=None) -> dict:
    """Fig. 11 (a): {label: {"table": the k x k layers (k >= 3) whose input map is larger than k, with their score
    against the canonical set and its null (:func:`univenc.spatial.canonical_score_table`), "layers": their
    eigenvalues and eigen-images}} of the trained networks among ``names`` ({label: zoo name}): a VGG's convs, a
    ConvNeXt's depthwise kernels, a ViT's patch embedding."""
    from .spatial import analysed, canonical_score_table

    p = get_preset(preset)
    out = {}
    for label, name in names.items():
        if not trained([name], p, root):
            continue
        net = load_net(name, p, root)
        table = canonical_score_table(net, net.input_size, null_seeds=p.null_seeds)
        shown = table[analysed(table) & (table.status != PADDING_STATUS) & (table.k >= 3)]
        modules = dict(conv_weights(net))
        out[label] = {"table": shown.drop(columns=["spectrum"], errors="ignore").reset_index(drop=True),
                      "layers": [spatial_eigenvectors(modules[layer].weight) for layer in shown.layer]}
    return out


# --------------------------------------------------------------------------- networks drawn from covariances (Fig. 12)

RAINBOW_SOURCE = "fac_cifar10"


@recorded
def rainbow_table(name: str, preset, root=None, seed: int = 0) -> pd.DataFrame:
    """Fig. 12 (a): test accuracy of rainbow networks of zoo network ``name`` (:func:`univenc.init.rainbow_depths`:
    its first L layers drawn from its covariances, aligned on its first ``analysis_images`` training images, the
    others kept) with only their classifier retrained on its training images, per depth L; beside the source
    itself (as trained, and with its classifier retrained), a network drawn from the unaligned covariances, and
    a freshly initialised one (PyTorch's init, BatchNorm statistics on the same images) with its classifier
    retrained. Columns: method, depth, test_acc."""
    from .init import probe_accuracy, rainbow_depths, recompute_batchnorm
    from .training import to_float

    p = get_preset(preset)
    if not trained([name], p, root):
        return pd.DataFrame(columns=["method", "depth", "test_acc"])
    source = load_net(name, p, root)
    data = load_task_for(ZOO_BY_NAME[name], p, root)
    train, test = (to_float(data.train_images), data.train_labels), (to_float(data.test_images), data.test_labels)
    probes = list(train[0][: p.analysis_images].split(250))
    rows = [dict(method="source", depth=0, test_acc=evaluate(source, zip(test[0].split(500), test[1].split(500)))[1]),
            dict(method="source, classifier retrained", depth=0, test_acc=probe_accuracy(source, train, test))]
    fresh = recompute_batchnorm(for_inference(build_model(dataclasses.replace(ZOO_BY_NAME[name], init_seed=9000 + seed),
                                                          p, data.num_classes)), probes)
    rows.append(dict(method="PyTorch init, classifier retrained", depth=0, test_acc=probe_accuracy(fresh, train, test)))
    for aligned in (True, False):
        method = "rainbow, aligned" if aligned else "rainbow, unaligned"
        for depth, net in rainbow_depths(source, probes, aligned=aligned, seed=seed):
            rows.append(dict(method=method, depth=depth, test_acc=probe_accuracy(net, train, test)))
    return pd.DataFrame(rows)


INIT_STUDY = [s for s in ZOO if s.curve]


@recorded
def init_curves(preset, root=None) -> pd.DataFrame:
    """Fig. 12 (b, c): the test accuracy after every epoch of the universal-initialisation networks
    (``univenc.catalogue``: ``init_*``). Columns: name, init, target, seed, epoch, steps, test_acc."""
    from .zoo import zoo_dir
    rows = []
    for spec in INIT_STUDY:
        log_file = zoo_dir(preset, root) / spec.name / "log.csv"
        if not checkpoint_path(spec.name, preset, root).exists():
            continue
        label, target, seed = spec.name.split("_")[1], spec.task.name, spec.name.rsplit("_", 1)[1]
        for r in pd.read_csv(log_file).itertuples():
            rows.append(dict(name=spec.name, init=label, target=target, seed=seed, epoch=r.epoch, steps=r.steps,
                             test_acc=r.test_acc))
    return pd.DataFrame(rows, columns=["name", "init", "target", "seed", "epoch", "steps", "test_acc"])


def steps_to_accuracy(curves: pd.DataFrame, reference: str = "default") -> pd.DataFrame:
    """Per (target, init): the mean and sd over seeds of the final test accuracy, and the steps each seed needs
    to reach the ``reference`` accuracy (NaN: never reached); their mean (NaN when a seed never reaches it).
    The reference accuracy is the lowest final accuracy of the ``reference`` init's seeds: one that each of its
    seeds reaches, so that the reference's own steps are always defined (their mean final accuracy is, by
    construction, above what its weaker seed ever reaches when that seed peaks at its end).
    Columns: target, init, seeds, final_acc, final_sd, reference_acc, steps (per seed), mean_steps."""
    rows = []
    for target, t in curves.groupby("target", sort=False):
        finals = t.sort_values("epoch").groupby(["init", "seed"]).test_acc.last()
        if reference not in finals.index.get_level_values(0):
            continue
        goal = finals[reference].min()
        for init, g in t.groupby("init", sort=False):
            steps = []
            for _, run in g.sort_values("epoch").groupby("seed"):
                reached = run[run.test_acc >= goal]
                steps.append(float(reached.steps.iloc[0]) if len(reached) else np.nan)
            rows.append(dict(target=target, init=init, seeds=len(steps), final_acc=finals[init].mean(),
                             final_sd=finals[init].std(ddof=1) if len(finals[init]) > 1 else np.nan,
                             reference_acc=goal, steps=steps,
                             mean_steps=float(np.mean(steps)) if not np.isnan(steps).any() else np.nan))
    return pd.DataFrame(rows)
