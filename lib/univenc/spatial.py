"""Spatial structure of conv filters (Sec. 2 of the paper, Fig. 1 and 5).

The spatial covariance of a conv layer with weight W (Cout, Cin, k, k) is the k^2 x k^2 second-moment matrix
of its Cout*Cin filters, E[w w^T] over all filters w in R^{k^2} (uncentred, as in Trockman et al. 2023:
the mean filter is itself part of the spatial structure). Its eigenvectors, shown as k x k images, are the
"spatial eigenvectors", found to be the same for every layer l >= 2, filter size, dataset and task.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

__all__ = ["spatial_covariance", "spatial_eigenvectors", "spatial_report", "spatial_similarity",
           "to_common_grid", "mean_spatial_covariance", "random_init_weights", "conv_weights",
           "canonical_filters", "save_filters", "layer_input_sizes", "default_input_size", "padding_dominated",
           "PADDING_STATUS", "layer_maps", "canonical_score_table", "weight_layers", "analysed"]

# A k x k filter on a map not larger than k mostly multiplies the zero padding: on a 1x1 map only the centre
# tap ever sees data, so only the centre tap trains and the spatial covariance is "centre pixel + init noise",
# whatever the data. Such layers are shown (greyed) but kept out of every spatial claim.
PADDING_STATUS = "map ≤ k: padding-dominated"


def _as_float64(weight) -> np.ndarray:
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"expected a conv weight of shape (Cout, Cin, k, k), got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("the weight has non-finite entries (NaN or inf): was training diverging?")
    return w


def spatial_covariance(weight) -> np.ndarray:
    """k^2 x k^2 spatial covariance of a conv weight (Cout, Cin, k, k), averaged over all Cout*Cin filters.

    Returns float64 (k^2, k^2); pixel index i*k + j is row i, column j of the filter."""
    w = _as_float64(weight)
    f = w.reshape(-1, w.shape[2] * w.shape[3])
    return f.T @ f / len(f)


def _sign_convention(v: np.ndarray) -> np.ndarray:
    """Fix the arbitrary sign of an eigen-image: a positive sum when the mean is clearly non-zero (blobs),
    otherwise a positive value at the first pixel, in raster order, that reaches half the largest magnitude
    (derivative-like images, whose sum is about zero)."""
    s = v.sum()
    if abs(s) > 0.1 * np.linalg.norm(v):
        return v if s > 0 else -v
    a = np.abs(v)
    first = int(np.argmax(a >= 0.5 * a.max()))
    return v if v[first] >= 0 else -v


def spatial_eigenvectors(weight=None, covariance=None):
    """Spatial eigenvalues (descending) and eigenvectors as k x k images.

    Give a conv weight (Cout, Cin, k, k) or a k^2 x k^2 ``covariance``. Returns eigenvalues (k^2,) and
    eigenvectors (k^2, k, k), unit norm, signs fixed by :func:`_sign_convention`."""
    c = spatial_covariance(weight) if covariance is None else np.asarray(covariance, float)
    k = int(round(np.sqrt(c.shape[0])))
    vals, vecs = np.linalg.eigh(c)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    vecs = np.stack([_sign_convention(v) for v in vecs.T])
    return vals, vecs.reshape(-1, k, k)


def conv_weights(model: nn.Module):
    """(name, module) of every nn.Conv2d, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def default_input_size(model: nn.Module):
    """The (C, H, W) input a model was built for, when it says: ``model.input_size`` (set on the zoo's
    networks from their dataset) or timm's ``pretrained_cfg["input_size"]``; else None."""
    size = getattr(model, "input_size", None)
    if size is None:
        size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    return tuple(size) if size is not None else None


def layer_input_sizes(model: nn.Module, input_size) -> dict[str, tuple[int, int]]:
    """Height and width of the input map of every ``nn.Conv2d`` of ``model``, from one forward pass of a zero
    probe of shape (1, C, H, W). ``input_size``: (C, H, W), or an int H for a 3-channel H x H image.

    Returns {layer name: (H, W)} for every conv the forward pass reaches."""
    if isinstance(input_size, int):
        input_size = (3, input_size, input_size)
    if len(tuple(input_size)) != 3:
        raise ValueError(f"input_size must be (C, H, W) or an int H, got {input_size!r}")
    sizes = {}

    def record(name):
        def hook(module, args):  # returns None: the module's input is left as it is
            sizes.setdefault(name, tuple(args[0].shape[-2:]))
        return hook
    hooks = [m.register_forward_pre_hook(record(name)) for name, m in conv_weights(model)]
    param = next(model.parameters(), None)
    probe = torch.zeros(1, *input_size, dtype=param.dtype if param is not None else torch.float32,
                        device=param.device if param is not None else "cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(probe)
    except Exception as err:  # any failure of the probe means this size does not fit the model
        raise ValueError(f"{type(model).__name__} cannot take an input of size {tuple(input_size)} "
                         f"({type(err).__name__}: {err}). Pass the input_size (C, H, W) it was trained on.") from err
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sizes


def layer_maps(model: nn.Module, input_size=None) -> dict:
    """{conv layer name: smaller side of its input map} for every ``nn.Conv2d`` (NaN where unknown).
    ``input_size`` as in :func:`layer_input_sizes`; default :func:`default_input_size` (None: all unknown)."""
    input_size = input_size if input_size is not None else default_input_size(model)
    sizes = layer_input_sizes(model, input_size) if input_size is not None else {}
    return {name: min(sizes[name]) if name in sizes else np.nan for name, _ in conv_weights(model)}


def padding_dominated(map_size, k: int) -> bool:
    """True when a k x k filter's input map (its smaller side) is not larger than k."""
    return map_size is not None and not np.isnan(map_size) and map_size <= k


def weight_layers(model: nn.Module):
    """(name, module) of every module that owns a weight of two or more dimensions (convolutions, linear layers,
    embeddings, ...), in module order: the layers a report lists, analysed or not."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m._parameters.get("weight"), torch.Tensor) and m._parameters["weight"].dim() >= 2]


NOT_SPATIAL = "not analysed: {} (no spatial structure; its channel covariance: univenc compare)"


def _conv_status(m: nn.Conv2d, k: int, map_size) -> str:
    """What the report says of an analysed k x k Conv2d."""
    if padding_dominated(map_size, k):
        return PADDING_STATUS
    if m.groups == m.in_channels == m.out_channels and m.groups > 1:
        status = "analysed (depthwise: one kernel per channel, so no channel covariance)"
    elif m.groups > 1:
        status = f"analysed per group ({m.groups} groups)"
    elif m.stride == m.kernel_size:
        status = "analysed (patch embedding: stride = kernel)"
    else:
        status = "analysed"
    if k * k < 5:
        status += f"; {k}x{k} has {k * k} spatial eigenvectors: top-5 and its score undefined"
    return status


def spatial_report(model: nn.Module, input_size=None, n_top=(1, 3, 5), init=None) -> pd.DataFrame:
    """One row per weight layer (:func:`weight_layers`): name, kind, k, Cout, Cin, groups, map (the smaller side of
    a conv's input map), status (analysed, or not and why), eigenvalue spectrum (normalised to sum 1) and the
    fraction of variance in the top 1/3/5 eigenvectors (as many as exist), beside top5_isotropic = 5 / k^2 (its value
    for i.i.d. weights). With ``init``, the network's initial weights (a network, state dict or checkpoint file:
    :func:`univenc.travel.init_weights`), also travel: ||W - W0|| / ||W0|| of each trainable conv (NaN for frozen ones).

    input_size : (C, H, W) of the model's input, or an int H (3 x H x H); default :func:`default_input_size`
        (the zoo's networks know their dataset's). Unknown: the map column is NaN and no layer is flagged.
    Every square k x k Conv2d with k > 1 is analysed, whatever k: a 2x2 one has 4 spatial eigenvectors, so its
    top-5 is NaN. Layers whose input map is not larger than k get the status ``PADDING_STATUS`` (their spectrum is
    still given). Grouped convs are analysed per group: their weight (Cout, Cin/groups, k, k) holds one filter per
    (output, input) pair within a group, exactly the filters the covariance averages over; a depthwise conv holds
    one kernel per channel and has no channel covariance; a patch embedding (stride = kernel) is a k x k filter
    bank on the image. 1x1 convs and linear layers have no spatial structure (status "1x1: no spatial structure",
    "not analysed: linear ..."); other weight layers say what they are."""
    from .travel import init_weights, relative_travel

    maps = layer_maps(model, input_size)
    initial = init_weights(init) if init is not None else None
    rows = []
    for name, m in weight_layers(model):
        row = dict(layer=name, kind=type(m).__name__, trainable=m.weight.requires_grad)
        if isinstance(m, nn.Conv2d):
            row.update(k=m.kernel_size[0], Cout=m.out_channels, Cin=m.in_channels, groups=m.groups, map=maps[name])
            if initial is not None:
                if f"{name}.weight" not in initial:
                    raise ValueError(f"the initialisation has no {name}.weight: is it the initialisation of this "
                                     f"network?")
                row["travel"] = relative_travel(m.weight, initial[f"{name}.weight"]) if m.weight.requires_grad \
                    else np.nan
        if not isinstance(m, nn.Conv2d):
            row["status"] = NOT_SPATIAL.format("linear") if isinstance(m, nn.Linear) else \
                f"not analysed: {type(m).__name__} has no square 2-D kernel"
        elif m.kernel_size[0] != m.kernel_size[1]:
            row["status"] = f"skipped: non-square kernel {m.kernel_size}"
        elif row["k"] == 1:
            row["status"] = "1x1: no spatial structure"
        else:
            k = row["k"]
            vals, _ = spatial_eigenvectors(m.weight)
            frac = vals / vals.sum()
            row["status"] = _conv_status(m, k, row["map"])
            row["spectrum"] = frac
            for n in n_top:
                row[f"top{n}"] = float(frac[:n].sum()) if n <= k * k else np.nan
            row["top5_isotropic"] = min(1.0, 5 / k ** 2) if k * k >= 5 else np.nan
        rows.append(row)
    kinds = sorted({type(m).__name__ for _, m in weight_layers(model)})
    if not any(isinstance(m, nn.Conv2d) for _, m in weight_layers(model)):
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer: spatial analysis needs conv layers (its "
                         f"weight layers: {', '.join(kinds) or 'none'})")
    return pd.DataFrame(rows)


def analysed(report: pd.DataFrame) -> pd.Series:
    """Which rows of a :func:`spatial_report` hold an analysed spatial covariance (padding-dominated ones included)."""
    return report.status.str.startswith("analysed") | (report.status == PADDING_STATUS)


def canonical_score_table(model: nn.Module, input_size=None, n: int = 5, null_seeds: int = 5,
                          filters=None, init=None) -> pd.DataFrame:
    """:func:`spatial_report` plus each k x k layer's universality score against a canonical filter set (default:
    the package's, ``univenc.models.canonical_spatial_filters``): the matched |cos| of the top-``n`` eigen-images
    (:func:`spatial_similarity`), beside the same score for PyTorch-default random-init weights of the layer's
    shape (``null`` and ``null_std`` over ``null_seeds``). Layers not analysed (1x1, non-square) get NaN. With the
    network's initial weights ``init``, also each layer's travel (:func:`spatial_report`)."""
    from .models import canonical_spatial_filters

    report = spatial_report(model, input_size=input_size, init=init).drop(columns=["spectrum"], errors="ignore")
    scored = analysed(report) & (report.get("k", pd.Series(0, index=report.index)) ** 2 >= n)
    if not analysed(report).any():
        raise ValueError(f"{type(model).__name__} has no square k x k conv layer (k > 1): there is no spatial "
                         f"structure to analyse (its layers: {', '.join(sorted(set(report.status)))})")
    canonical = np.asarray(canonical_spatial_filters() if filters is None else filters, dtype=np.float64)
    modules = dict(conv_weights(model))
    scores, nulls = [], []
    for row in report.itertuples():
        if not scored[row.Index]:  # not a k x k spatial covariance, or fewer than n eigenvectors to match
            scores.append(np.nan), nulls.append([np.nan])
            continue
        weight = modules[row.layer].weight
        scores.append(spatial_similarity(spatial_eigenvectors(weight)[1], canonical, n))
        nulls.append([spatial_similarity(spatial_eigenvectors(random_init_weights(weight.shape, s))[1], canonical, n)
                      for s in range(null_seeds)])
    return report.assign(score=scores, null=[np.mean(x) for x in nulls], null_std=[np.std(x) for x in nulls])


def mean_spatial_covariance(weights) -> np.ndarray:
    """Average of the trace-normalised spatial covariances of several conv weights of the same k (e.g. the
    layers l >= 2 of one or more networks): the estimate behind the canonical filter set."""
    covs = [spatial_covariance(w) for w in weights]
    return np.mean([c / np.trace(c) for c in covs], axis=0)


def to_common_grid(images: np.ndarray, size: int, grid: str = "resample") -> np.ndarray:
    """Put k x k eigen-images (n, k, k) on a size x size grid, unit norm.

    grid="resample" (default): bilinear resampling of the filter's support [0, 1]^2, i.e. compare shapes
    relative to the filter size. Spatial eigenvectors fill their whole support (a k=7 blob is as wide as its
    filter), so shape, not pixel scale, is what the paper says is shared across sizes.
    grid="embed": zero-pad the small filter at the centre of the large one (same pixel scale): the
    alternative hypothesis, kept to test that the result does not hinge on the choice.
    """
    images = np.asarray(images, float)
    k = images.shape[-1]
    if k == size:
        out = images
    elif grid == "embed":
        if size < k:
            raise ValueError(f"cannot centre-embed a {k}x{k} filter in a {size}x{size} grid")
        p = (size - k) // 2
        out = np.pad(images, ((0, 0), (p, p), (p, p)))
    elif grid == "resample":
        t = torch.as_tensor(images)[:, None]
        out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        out = out[:, 0].numpy()
    else:
        raise ValueError(f"grid must be 'resample' or 'embed', got {grid!r}")
    return out / np.linalg.norm(out.reshape(len(out), -1), axis=1)[:, None, None]


def spatial_similarity(eig_a: np.ndarray, eig_b: np.ndarray, n: int = 5, grid: str = "resample") -> float:
    """Universality score of two sets of spatial eigenvectors (n_a, k_a, k_a) and (n_b, k_b, k_b).

    The leading ``n`` of each are put on the larger grid (:func:`to_common_grid`), their |cos| matrix is formed
    and the best one-to-one matching (Hungarian algorithm) is found; the score is the mean matched |cos|,
    in [0, 1]. |cos| makes it blind to sign flips and the matching to swapped ranks of near-equal eigenvalues.
    Compare it with the same score on randomly initialised weights (:func:`random_init_weights`)."""
    size = max(eig_a.shape[-1], eig_b.shape[-1])
    a = to_common_grid(eig_a[:n], size, grid).reshape(n, -1)
    b = to_common_grid(eig_b[:n], size, grid).reshape(n, -1)
    cos = np.abs(a @ b.T)
    rows, cols = linear_sum_assignment(-cos)
    return float(cos[rows, cols].mean())


def random_init_weights(shape, seed: int) -> torch.Tensor:
    """A conv weight of ``shape`` (Cout, Cin, k, k) drawn with PyTorch's default init (Kaiming uniform,
    a=sqrt(5)): the null model for every spatial score."""
    g = torch.Generator().manual_seed(seed)
    cout, cin, k, _ = shape
    bound = 1.0 / np.sqrt(cin * k * k)
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound


def canonical_filters(models, n: int = 5, first_layer: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The universal spatial filters f1..fn of one or more trained networks: eigen-images of the mean
    trace-normalised spatial covariance of their conv layers with index >= ``first_layer`` (0-based: the first
    layer is left out, it differs), leaving out padding-dominated layers when the model's input size is known
    (:func:`default_input_size`). All those layers must share one k. Returns (eigenvalues (k^2,),
    filters (n, k, k))."""
    weights = []
    for model in models:
        maps = layer_maps(model)
        convs = [(name, m) for name, m in conv_weights(model) if m.groups == 1 and m.kernel_size[0] > 1]
        weights += [m.weight for name, m in convs[first_layer:] if not padding_dominated(maps[name], m.kernel_size[0])]
    if not weights:
        raise ValueError("no k x k conv layer past the first whose input map is larger than k: cannot estimate "
                         "spatial filters")
    vals, vecs = spatial_eigenvectors(covariance=mean_spatial_covariance(weights))
    return vals, vecs[:n]


def save_filters(path, filters: np.ndarray, eigenvalues: np.ndarray, provenance: str):
    """Write a filter file (npz: filters (n, k, k), eigenvalues, provenance) atomically."""
    from .storage import atomic_write

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, filters=filters.astype(np.float32), eigenvalues=eigenvalues, provenance=provenance)
    return atomic_write(path, write)
