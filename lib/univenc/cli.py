"""The ``univenc`` command: the paper's instruments on any CNN, from a shell.

    univenc spatial torchvision:resnet18 --input-size 3 32 32
    univenc compare run_a/final.pt run_b/final.pt --data cifar10 --out results/
    univenc trajectory run_a/epoch_*.pt run_a/final.pt
    univenc init --from run_a/final.pt --out init.pt          (a covariance file: univenc.init)
    univenc zoo --preset cpu --jobs 2          univenc reproduce --preset smoke

Models are references (``univenc.refs``): torchvision:NAME[:WEIGHTS], timm:NAME[:pretrained], a zoo name with
--preset, a checkpoint or state-dict file (with --arch), or module.path:factory. Output is a table on stdout
(``--format json`` for scripts); ``--out DIR`` also writes CSV, JSON and PNG/PDF figures. A bad input ends with
one line that says what is wrong, and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

__all__ = ["main", "model_batches"]


def model_batches(model, dataset: str, images: int, root=None, batch_size: int = 250, train: bool = False):
    """The first ``images`` test (or ``train``) images of ``dataset``, preprocessed as univenc trains, checked to
    run through ``model`` (a clear error when it cannot take them)."""
    import torch

    from .data import load_dataset
    from .training import tensor_batches

    x, y = load_dataset(dataset, train=train, root=root)
    x, y = x[:images], y[:images]
    batches = [b for b, _ in tensor_batches(x, y, batch_size, False, None, torch.device("cpu"), shuffle=False)]
    try:
        with torch.no_grad():
            model(batches[0][:2])
    except Exception as err:  # any failure here means these inputs do not fit the model
        raise ValueError(f"{type(model).__name__} cannot take {dataset} images of shape "
                         f"{tuple(batches[0].shape[1:])} ({type(err).__name__}: {err})") from err
    return batches


def _emit(table: pd.DataFrame, args, name: str, figures=()):
    if args.format == "json":
        print(table.to_json(orient="records", indent=1))
    else:
        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
            print(table.round(3).to_string(index=False))
    if args.out:
        from .figures import save_figure, save_table
        out = Path(args.out)
        save_table(table, f"{name}.csv", out)
        (out / f"{name}.json").write_text(table.to_json(orient="records", indent=1))
        for fig_name, fig in figures:
            save_figure(fig, fig_name, "cli", out)
        print(f"[univenc] wrote {name}.csv, {name}.json" + "".join(f", {f}.png/.pdf" for f, _ in figures)
              + f" in {out}", file=sys.stderr)


def _init_of(ref: str, given, args):
    """The initial weights of model ``ref``: the file given with --init, else the zoo's ``epoch_000.pt`` of a zoo
    network or beside a checkpoint file, else None (no travel column)."""
    if given is not None:
        return given
    from .catalogue import ZOO_BY_NAME
    if ref in ZOO_BY_NAME and args.preset:
        from .zoo import zoo_dir
        path = zoo_dir(args.preset, args.root) / ref / "epoch_000.pt"
    else:
        path = Path(ref).parent / "epoch_000.pt"
    return path if path.is_file() and Path(ref).name != "epoch_000.pt" else None


def _inits(args, refs) -> list:
    given = args.init or []
    if given and len(given) != len(refs):
        raise ValueError(f"--init takes one initial-weights file per model: {len(refs)} models, {len(given)} files")
    return [_init_of(ref, given[i] if given else None, args) for i, ref in enumerate(refs)]


def _spatial(args):
    from .experiments import spatial_layers
    from .figures import plot_spatial_grid
    from .refs import resolve_model
    from .spatial import canonical_score_table

    tables, grids = [], {}
    for ref, init in zip(args.models, _inits(args, args.models)):
        model = _folded(resolve_model(ref, args.arch, args.preset, args.root, args.num_classes), args,
                        args.input_size)
        table = canonical_score_table(model, tuple(args.input_size) if args.input_size else None, init=init)
        tables.append(table.assign(model=ref))
        if args.out:
            grids[ref] = spatial_layers(model)
    table = pd.concat(tables, ignore_index=True)
    table = table[["model"] + [c for c in table.columns if c != "model"]]
    figures = [("spatial_eigenvectors", plot_spatial_grid(grids, title="spatial eigenvectors"))] if args.out else []
    _emit(table, args, "spatial", figures)


def _folded(model, args, input_size=None):
    """With --fold-bn: the conv weights times the scale of the affine BatchNorm that follows them."""
    if not args.fold_bn:
        return model
    from .covariance import fold_batchnorm_scale
    model, pairs = fold_batchnorm_scale(model, tuple(input_size) if input_size else (3, 32, 32))
    print(f"[univenc] folded the BatchNorm scale into {len(pairs)} conv layers", file=sys.stderr)
    return model


def _pairs(text):
    if not text:
        return None
    try:
        return [tuple(pair.split("=")) for pair in text.split(",") if pair.split("=")[1]]
    except IndexError:
        raise ValueError(f"--pairs must read a1=b1,a2=b2 (layer names of the two networks), got {text!r}") from None


def _compare(args):
    from .figures import plot_cosine_matrices, plot_similarity_vs_depth
    from .refs import resolve_model
    from .similarity import compare

    net_a = _folded(resolve_model(args.model_a, args.arch, args.preset, args.root, args.num_classes), args)
    net_b = _folded(resolve_model(args.model_b, args.arch_b or args.arch, args.preset, args.root,
                                  args.num_classes), args)
    batches = model_batches(net_a, args.data, args.images, args.root)
    model_batches(net_b, args.data, 2, args.root)
    inits = _inits(args, [args.model_a, args.model_b])
    res = compare(net_a, net_b, batches, n_draws=args.draws, progress=False, pairs=_pairs(args.pairs),
                  inits=inits if any(i is not None for i in inits) else None, include_linear=True, by=args.by)
    compared = res.table.drop(columns=["Cout_b", "rank_a", "rank_b"]).rename(columns={"S_status": "status"})
    unpaired = res.unpaired.assign(layer_a=res.unpaired.layer.where(res.unpaired.network == "a", ""),
                                   layer_b=res.unpaired.layer.where(res.unpaired.network == "b", ""))
    table = pd.concat([compared, unpaired[["layer_a", "layer_b", "status"]]], ignore_index=True)
    figures = []
    if args.out:
        import matplotlib.pyplot as plt
        panels = {key: [dict(cos=c[key], d=c["d"], r_eff_a=c["r_eff_a"], r_eff_b=c["r_eff_b"])
                        if c[key] is not None else None for c in res.cosines.values()]
                  for key in ("unaligned", "aligned")}
        fig, ax = plt.subplots(figsize=(6, 3.8))
        plot_similarity_vs_depth(res.table.assign(net_a=args.model_a, net_b=args.model_b), ax, "S (eq. 6) vs depth")
        figures = [("cosine_matrices", plot_cosine_matrices(panels, title=f"{args.model_a} vs {args.model_b}",
                                                            col_labels=list(res.cosines))), ("similarity", fig)]
    _emit(table, args, "compare", figures)
    print(READING_S, file=sys.stderr)


def _init(args):
    """Write a covariance file of a trained network (universal init), or with --data a rainbow network drawn from it."""
    from .init import encode, sample_like, save_encoding, universal_init
    from .refs import resolve_model
    from .storage import save_torch

    source = resolve_model(args.source, args.arch_source, args.preset, args.root, args.num_classes)
    target = resolve_model(args.arch, preset=args.preset, root=args.root, num_classes=args.num_classes) \
        if args.arch else None
    if args.data is None:
        encoding = encode(source, args.source)
        if target is not None:  # it must fit: fails now, naming the layer, rather than later
            universal_init(target, encoding)
        save_encoding(encoding, args.out)
        table = pd.DataFrame([dict(layer=c.name, k=c.k, Cin=c.cin, Cout=c.cout, spikes=len(c.channel),
                                   spatial="yes" if c.spatial is not None else "1x1",
                                   first_layer_covariance="yes" if c.full is not None else "", scale=c.scale)
                              for c in encoding["layers"]])
        _emit(table, argparse.Namespace(format=args.format, out=None), "init")
        print(f"[univenc] wrote the covariance file {args.out} (no weights): univenc.init.universal_init(model, "
              f"univenc.init.load_encoding({str(args.out)!r})) draws a network from it", file=sys.stderr)
        return
    batches = model_batches(source, args.data, args.images, args.root, train=True)
    net = sample_like(source, batches, target=target, seed=args.seed)
    config = {"model": net.config} if hasattr(net, "config") else {}
    save_torch({"state_dict": net.state_dict(), "config": config, "epoch": 0, "log": [],
                "init": {"source": args.source, "data": args.data, "images": args.images, "seed": args.seed}},
               args.out)
    print(f"[univenc] wrote a rainbow network of {args.source} (every layer drawn from its covariances, aligned on "
          f"{args.images} {args.data} training images) to {args.out}", file=sys.stderr)


READING_S = ("How to read S (eq. 6): 0 is the random-rotation floor, 1 the resampling ceiling (two independent "
             "draws of Cout neurons from one covariance). A network compared with itself, or a near copy, has no "
             "sampling noise between the two and scores above 1. S is undefined (NaN) where no eigenvalue of either "
             "layer is above the noise, or where the ceiling exceeds the floor by less than 0.05 (ceiling ≈ floor).")


def _trajectory(args):
    from .figures import plot_trajectory
    from .refs import resolve_model
    from .trajectories import learning_trajectory

    model = resolve_model(args.arch, preset=args.preset, root=args.root) if args.arch else None
    batches = None
    if args.vs:
        if not args.data:
            raise ValueError("--vs compares two runs after aligning their activations: give --data DATASET")
        from .models import load_checkpoint_model
        batches = model_batches(load_checkpoint_model(args.checkpoints[0], model)[0], args.data, args.images,
                                args.root)
    table = learning_trajectory(args.checkpoints, args.vs, batches, model=model, progress=False)
    figures = []
    if args.out:
        import matplotlib.pyplot as plt
        stats = [s for s in ("top5", "spatial_score", "r_eff", "S") if table[s].notna().any()]
        fig, axes = plt.subplots(1, len(stats), figsize=(4.5 * len(stats), 3.4), squeeze=False)
        for ax, stat in zip(axes[0], stats):
            plot_trajectory(table, stat, ax, stat)
        fig.tight_layout()
        figures = [("trajectory", fig)]
    _emit(table, args, "trajectory", figures)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="univenc", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--arch", help="architecture of a plain state-dict file, e.g. torchvision:resnet18")
        p.add_argument("--num-classes", type=int, help="classes of a torchvision or timm model's classifier (a state "
                       "dict's own are read from the file)")
        p.add_argument("--preset", help="preset of zoo names (smoke, cpu, paper)")
        p.add_argument("--root", help="data root (default: $UNIVENC_DATA or <repo>/data)")
        p.add_argument("--out", help="also write CSV, JSON and PNG/PDF figures in this folder")
        p.add_argument("--format", choices=["table", "json"], default="table", help="stdout format")
        p.add_argument("--fold-bn", action="store_true", help="fold the scale gamma/sqrt(var+eps) of the affine "
                       "BatchNorm that follows each conv into its weight first")

    def init_option(p):
        p.add_argument("--init", nargs="+", metavar="INIT", help="each model's initial weights (checkpoint or state "
                       "dict file), for the travel column ||W - W0|| / ||W0||; default: the epoch_000.pt of a zoo "
                       "network or beside a checkpoint")

    p = sub.add_parser("spatial", help="per-layer spatial report and universality score of each model",
                       description="Spatial covariance eigenvectors of every conv layer, the top-1/3/5 variance, "
                       "each layer's input map (with --input-size, or the model's own), and the universality "
                       "score against univenc's canonical 3x3 filters beside its random-init null.")
    p.add_argument("models", nargs="+", metavar="MODEL")
    p.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                   help="input size, for the map sizes (layers whose map is not larger than k are flagged)")
    common(p)
    init_option(p)
    p.set_defaults(run=_spatial)

    p = sub.add_parser("compare", help="aligned channel-covariance comparison of two models, layer by layer",
                       description="Procrustes-align the input activations of each layer on DATASET images, "
                       "then compare the channel weight covariances: S (eq. 6), r_eff, cos_bw, floor, ceiling. "
                       "Two architectures are paired by input map size and stage (--by), aligned by a "
                       "semi-orthogonal rotation where their widths differ and compared in the narrower space. "
                       "Every weight layer is listed, compared or not and why. " + READING_S)
    p.add_argument("model_a", metavar="MODEL_A")
    p.add_argument("model_b", metavar="MODEL_B")
    p.add_argument("--data", required=True, help="probe dataset, e.g. cifar10 (its test images)")
    p.add_argument("--images", type=int, default=1000, help="probe images (default 1000)")
    p.add_argument("--arch-b", help="architecture of MODEL_B when it differs from --arch")
    p.add_argument("--pairs", help="layers to compare, a1=b1,a2=b2 (default: --by)")
    p.add_argument("--by", choices=["auto", "name", "order", "map"], default="auto", help="how layers are paired: "
                   "by name (one architecture), by order, or by input map size and stage (two architectures); "
                   "auto: the first that applies")
    p.add_argument("--draws", type=int, default=5, help="floor/ceiling draws of eq. 6")
    common(p)
    init_option(p)
    p.set_defaults(run=_compare)

    p = sub.add_parser("trajectory", help="the statistics along training, from checkpoint files",
                       description="Per layer and epoch: spatial top-5 variance, spatial score against the final "
                       "network, r_eff and, with --vs, S between two runs at matching epochs.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT")
    p.add_argument("--vs", nargs="+", metavar="CHECKPOINT", help="a second run's checkpoints")
    p.add_argument("--data", help="probe dataset for --vs")
    p.add_argument("--images", type=int, default=1000)
    common(p)
    p.set_defaults(run=_trajectory)

    p = sub.add_parser("init", help="a covariance file of a trained network, or a rainbow network drawn from it",
                       description="Without --data: write the covariance file of SOURCE (spatial covariances, channel "
                       "spectra, the first layer's covariance; no weights), from which univenc.init.universal_init "
                       "draws a network of its family at any width (--arch: check one now). With --data: draw a "
                       "rainbow network from SOURCE, each layer aligned on the dataset's first --images training "
                       "images (of --arch's widths if given), and write it as a univenc checkpoint (epoch 0).")
    p.add_argument("--from", dest="source", required=True, metavar="SOURCE", help="the trained network (a reference)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--arch", help="the architecture to initialise (a reference, e.g. univenc_vgg11)")
    p.add_argument("--arch-source", help="architecture of a plain state-dict SOURCE")
    p.add_argument("--num-classes", type=int, help="classes of a torchvision or timm model's classifier")
    p.add_argument("--data", help="a dataset: draw a rainbow network aligned on its training images")
    p.add_argument("--images", type=int, default=2000, help="images for the alignment (default 2000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--preset", help="preset of zoo names (smoke, cpu, paper)")
    p.add_argument("--root", help="data root (default: $UNIVENC_DATA or <repo>/data)")
    p.add_argument("--format", choices=["table", "json"], default="table", help="stdout format")
    p.set_defaults(run=_init)

    for name, target in DELEGATED.items():  # listed in --help; main() hands their arguments over
        sub.add_parser(name, help=f"python -m {target} (its own --help)", add_help=False)
    return ap


DELEGATED = {"zoo": "univenc.runner", "reproduce": "univenc.reproduce"}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:  # their own entry points, their own options and --help
        import importlib
        return importlib.import_module(DELEGATED[argv[0]]).main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError) as err:  # bad input: one line, no traceback
        print(f"univenc: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
