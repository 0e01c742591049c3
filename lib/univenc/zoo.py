"""Training and loading the zoo: each network's model and recipe at a preset, its files, and ``train_zoo``.

What the zoo holds is plain data in :mod:`univenc.catalogue`, the scales in :mod:`univenc.presets`; running many
networks as jobs is :mod:`univenc.runner`. Checkpoints: ``<data root>/zoo/<preset>/<name>/final.pt`` (plus
``last.pt``, ``epoch_XXX.pt``, ``log.csv``); the sweep of notebook 08 goes to ``<data root>/zoo/<preset>/ablations/``.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .catalogue import ABLATION_NETS, ABLATIONS, ZOO, ZOO_BY_NAME, Ablation, NetSpec
from .data import Task, data_root, load_task, task_available
from .models import ARCHITECTURES, VGG, canonical_spatial_filters, load_checkpoint_model
from .presets import Preset, get_preset
from .storage import exclusive_lock, load_checkpoint
from .training import TrainConfig, train

__all__ = ["build_model", "train_config", "train_images", "recipe_change", "is_trained", "load_task_for", "train_zoo",
           "load_net", "checkpoint_path", "zoo_dir", "zoo_checkpoints", "available", "zoo_table", "ablation_config",
           "ablation_checkpoint", "sweep_per_class", "train_ablation", "train_ablations"]


def zoo_dir(preset, root=None) -> Path:
    return data_root(root) / "zoo" / get_preset(preset).name


def checkpoint_path(name: str, preset, root=None) -> Path:
    return zoo_dir(preset, root) / name / "final.pt"


def available(spec: NetSpec, root=None) -> bool:
    """True when the dataset the network trains on is in the data root."""
    return task_available(spec.task, root)


def build_model(spec: NetSpec, preset, num_classes: int, filters=None, root=None) -> torch.nn.Module:
    """A freshly initialised network of ``spec`` at the preset's width (seeded by ``spec.init_seed``); the
    ResNet-18, the ConvNeXt and the ViT are at their own widths (``univenc.models.ARCHITECTURES``)."""
    p = get_preset(preset)
    torch.manual_seed(spec.init_seed)
    if spec.arch in ARCHITECTURES:  # torchvision's and timm's, at their own widths
        model = ARCHITECTURES[spec.arch](num_classes)
        model.input_size = spec.task.input_size
        return model
    factorized = spec.arch == "factorized"
    if factorized and filters is None:
        filters = canonical_spatial_filters()
    model = VGG(num_classes=num_classes, kernel_size=spec.kernel_size, width=p.width,
                batchnorm=spec.recipe != "random_fig1b", head=spec.head, factorized=factorized,
                filters=filters, init=p.fig1b_init if spec.recipe == "random_fig1b" else "default")
    model.input_size = spec.task.input_size  # map sizes of its layers (univenc.spatial.spatial_report)
    return _initialised(model, spec, p, root)


def _initialised(model, spec: NetSpec, p: Preset, root):
    """``model`` drawn from ``spec.init`` (``univenc.init``), seeded by its init seed: the closed form, or the
    covariance file of a trained zoo network of the preset."""
    if spec.init == "default":
        return model
    from .init import closed_form_encoding, encode, universal_init
    if spec.init == "closed_form":
        encoding = closed_form_encoding(model)
    elif spec.init_source is not None:
        encoding = encode(load_net(spec.init_source, p, root), spec.init_source)
    else:
        raise ValueError(f"{spec.name}: unknown init {spec.init!r} (default, closed_form or cov:<zoo network>)")
    return universal_init(model, encoding, seed=spec.init_seed)


# The architectures whose whole runs in bfloat16 were measured against float32 and found to change nothing
# measurable (benchmarks/bench_precision.py: accuracy within the seed spread, S(bf16, fp32) above S(two fp32
# seeds) or within its spread in every layer) and to train faster. Only they take bfloat16 under
# ``precision="auto"``; the ConvNeXt (about 1.1x faster in bfloat16) trains in float32 unless a preset names one.
BF16_MEASURED = ("vgg", "factorized", "resnet18", "vit")


def train_config(spec: NetSpec, preset) -> TrainConfig:
    """The B.3 recipe of ``spec`` at the preset's scale (with the preset's reduced random-label recipe)."""
    p = get_preset(preset)
    mult = {"standard": 1, "random_fig1b": 2, "random_noaug": 2, "random_fig34": 4}[spec.recipe]
    override = {k: v for k, v in p.random_label_recipes.get(spec.recipe, {}).items() if k != "per_class"}
    epochs = override.get("epochs", p.epochs * mult)
    if spec.match_steps:  # as many gradient steps as a CIFAR-10 network: more epochs over fewer images
        epochs = max(epochs, round(epochs * train_images(ZOO_BY_NAME["fac_cifar10"], p) / train_images(spec, p)))
    # The preset's epochs and their multiples: a random-label run shares epochs with a true-label one.
    ckpts = tuple(sorted({e for e in p.checkpoint_epochs} | {e * mult for e in p.checkpoint_epochs}))
    # Intermediate checkpoints feed the learning trajectories of the VGGs; a ResNet-18's are 90 MB each.
    keep = spec.arch in ("vgg", "factorized") and not spec.match_steps and not spec.curve
    cfg = TrainConfig(epochs=epochs, lr=p.fig1b_lr if spec.recipe == "random_fig1b" else p.lr,
                      lr_step=max(1, epochs // 3), batch_size=p.batch_size,
                      augment=spec.recipe not in ("random_fig1b", "random_noaug"), seed=spec.init_seed,
                      checkpoint_epochs=tuple(e for e in ckpts if e < epochs and keep),
                      eval_every=1 if spec.curve else p.eval_every,
                      precision=_precision(spec, p), max_steps=p.max_steps,
                      train_eval_images=p.max_test_images if p.max_steps else None)
    return replace(cfg, **override)


def _precision(spec: NetSpec, p: Preset) -> str:
    return "fp32" if p.precision == "auto" and spec.arch not in BF16_MEASURED else p.precision


def train_images(spec: NetSpec, preset, per_class: int | None = None) -> int:
    """How many training images network ``spec`` sees per epoch under the preset (known before loading);
    ``per_class`` as in :func:`load_task_for` (the sweep's networks)."""
    p = get_preset(preset)
    per_class = _task_for(spec, p, per_class).per_class
    counts = spec.task.train_class_counts
    return sum(c if per_class is None else min(c, per_class) for c in counts)


def _task_for(spec: NetSpec, p: Preset, per_class=None) -> Task:
    if per_class is None and not spec.match_steps:  # match_steps: all its images, up to the cap below
        per_class = p.random_per_class if spec.task.random_labels is not None else p.per_class
        per_class = p.random_label_recipes.get(spec.recipe, {}).get("per_class", per_class)
    if p.max_train_images is not None:  # the same data budget for 5, 10, 50 or 100 classes
        cap = p.max_train_images // spec.task.num_classes
        per_class = cap if per_class is None else min(per_class, cap)
    return replace(spec.task, per_class=per_class)


# What makes two trainings the same network: the fields of TrainConfig that change the weights. Evaluation,
# checkpoints kept, precision and device do not (bfloat16 was measured to change nothing measurable).
RECIPE_FIELDS = ("epochs", "lr", "lr_step", "schedule", "optimizer", "momentum", "weight_decay", "batch_size",
                 "augment", "seed", "max_steps")


def recipe_change(path: Path, cfg: TrainConfig, images: int, width: float | None) -> str | None:
    """How the network trained at ``path`` differs from recipe ``cfg`` on ``images`` training images at channel
    multiplier ``width`` (None: the architecture's own), as "field old -> new" items, or None when it does not."""
    config = load_checkpoint(path, mmap=True)["config"]
    old, defaults = config.get("train", {}), TrainConfig()
    changes = [f"{f} {old.get(f, getattr(defaults, f))!r} -> {getattr(cfg, f)!r}" for f in RECIPE_FIELDS
               if old.get(f, getattr(defaults, f)) != getattr(cfg, f)]
    if config.get("train_images", images) != images:
        changes.append(f"training images {config['train_images']} -> {images}")
    old_width = config.get("model", {}).get("width", width)
    if width is not None and old_width != width:
        changes.append(f"width {old_width} -> {width}")
    return ", ".join(changes) or None


def _set_aside(path: Path, change: str) -> Path:
    """Move the files of a network trained with an older recipe into ``<its folder>/stale/<time>/`` (nothing is
    deleted), so that it trains again from scratch. Returns that folder."""
    folder = path.parent / "stale" / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    for f in [*path.parent.glob("*.pt"), path.parent / "log.csv"]:
        if f.exists():
            f.rename(folder / f.name)
    (folder / "why.txt").write_text(f"recipe changed: {change}\n")
    print(f"[univenc] {path.parent.name}: trained with another recipe ({change}); its files are kept in {folder}, "
          f"and it trains again")
    return folder


def _spec_change(spec: NetSpec, p: Preset, path: Path, cfg: TrainConfig, per_class=None) -> str | None:
    """:func:`recipe_change` of network ``spec`` of preset ``p``, trained at ``path``, against recipe ``cfg`` on
    ``per_class`` images per class (None: the zoo's), at the preset's width for the VGGs."""
    width = p.width if spec.arch in ("vgg", "factorized") else None
    return recipe_change(path, cfg, train_images(spec, p, per_class), width)


def is_trained(spec: NetSpec, preset, root=None, per_class=None, cfg: TrainConfig | None = None,
               path: Path | None = None) -> bool:
    """Whether ``spec``'s final checkpoint exists and was trained with today's recipe at the preset (a zoo
    network; or with ``cfg`` on ``per_class`` images per class at ``path``, a network of the sweep)."""
    p = get_preset(preset)
    path = path or checkpoint_path(spec.name, p, root)
    return path.exists() and _spec_change(spec, p, path, cfg or train_config(spec, p), per_class) is None


def load_task_for(spec: NetSpec, preset, root=None, per_class=None):
    p = get_preset(preset)
    data = load_task(_task_for(spec, p, per_class), root)
    if p.max_test_images is not None:
        data.test_images = data.test_images[: p.max_test_images]
        data.test_labels = data.test_labels[: p.max_test_images]
    return data


def train_zoo(preset="auto", only=None, root=None, progress: bool = True) -> pd.DataFrame:
    """Train every network of the zoo (or those named in ``only``) that is not trained yet.

    Networks whose checkpoint exists are skipped; networks whose dataset is absent are skipped with a message.
    An interrupted run resumes each network from its ``last.pt``. Returns one row per network: name, status,
    seconds, final train and test accuracy."""
    p = get_preset(preset)
    specs = ZOO if only is None else [ZOO_BY_NAME[n] for n in only]
    rows = []
    for spec in specs:
        path = checkpoint_path(spec.name, p, root)
        row = {"name": spec.name, "arch": spec.arch, "task": spec.task.name}
        if not available(spec, root) and not path.exists():
            msg = f"skipped: dataset '{spec.task.dataset}' is not in {data_root(root)}"
            print(f"[univenc] {spec.name}: {msg}")
            rows.append({**row, "status": msg})
            continue
        with exclusive_lock(path.parent) as mine:  # two runners never train the same network
            if not mine:
                rows.append({**row, "status": "skipped: another runner is training it"})
                continue
            rows.append({**row, **_train_zoo_network(spec, p, path, root, progress)})
    return pd.DataFrame(rows)


def _train_zoo_network(spec, p, path, root, progress) -> dict:
    if path.exists():
        change = _spec_change(spec, p, path, train_config(spec, p))
        if change is None:
            log = load_checkpoint(path)["log"][-1]
            return {"status": "exists", "seconds": 0.0, "train_acc": log["train_acc"], "test_acc": log["test_acc"]}
        _set_aside(path, change)
    t0 = time.perf_counter()
    if spec.task.dataset == "imagenet":
        ckpt = _train_image_folder(spec, p, path.parent, root, progress)
    else:
        ckpt = _train_in_memory(spec, p, train_config(spec, p), path.parent, root, progress)
    log, seconds = ckpt["log"][-1], time.perf_counter() - t0
    if progress:
        fitted = ckpt.get("train_eval_acc", float("nan"))
        print(f"[univenc] {spec.name}: trained in {seconds:.0f}s, train acc {fitted:.3f} (eval mode, no "
              f"augmentation), test acc {log['test_acc']:.3f}")
    return {"status": "trained", "seconds": seconds, "train_acc": log["train_acc"], "test_acc": log["test_acc"]}


def _train_in_memory(spec, p, cfg, out_dir, root, progress, per_class=None, name=None):
    data = load_task_for(spec, p, root, per_class)
    model = build_model(spec, p, data.num_classes, root=root)
    meta = {"name": name or spec.name, "spec": asdict(spec), "preset": asdict(p), "num_classes": data.num_classes,
            "model": model.config, "train_images": len(data.train_labels)}
    return train(model, data, cfg, out_dir, meta=meta, progress=progress)


def zoo_table(preset, root=None) -> pd.DataFrame:
    """One row per trained network of the preset, read from its final checkpoint: preset, name, arch, task,
    labels, train_images, epochs, lr, schedule, precision, train_acc (its own training images, eval mode, no
    augmentation), test_acc, seconds (sum of the epochs' wall times), and how far it moved from its initial
    weights (``epoch_000.pt``; :mod:`univenc.travel`): travel_mean, travel_min over its conv layers, top5_mean of its
    k x k layers past the first beside top5_isotropic (5 / k^2). Notebook 01 writes it to zoo.csv (through
    ``univenc.experiments.zoo_table``, which records it in the results file)."""
    p = get_preset(preset)
    rows = []
    for spec in ZOO:
        path = checkpoint_path(spec.name, p, root)
        if not path.exists():
            continue
        ckpt = load_checkpoint(path)
        cfg, log = ckpt["config"], ckpt["log"]
        rows.append(dict(preset=p.name, name=spec.name, arch=spec.arch, task=spec.task.name,
                         labels=f"random {spec.task.random_labels}" if spec.task.random_labels else "true",
                         train_images=cfg.get("train_images"), epochs=cfg["train"]["epochs"],
                         lr=cfg["train"]["lr"], schedule=cfg["train"].get("schedule", "step"),
                         precision=cfg["train"].get("precision", "fp32"),
                         train_acc=ckpt.get("train_eval_acc", float("nan")), test_acc=log[-1]["test_acc"],
                         seconds=round(sum(r["seconds"] for r in log), 1), **_travel_of(path, spec)))
    return pd.DataFrame(rows)


def _travel_of(final: Path, spec: NetSpec) -> dict:
    """travel_mean, travel_min, top5_mean, top5_isotropic of a trained network (:mod:`univenc.travel`), from its
    final checkpoint and the initial weights beside it (``epoch_000.pt``); NaN without them."""
    from .spatial import spatial_report
    from .travel import travel_summary

    init = final.parent / "epoch_000.pt"
    if not init.exists():
        return dict(travel_mean=np.nan, travel_min=np.nan, top5_mean=np.nan, top5_isotropic=np.nan)
    return travel_summary(spatial_report(load_checkpoint_model(final)[0], spec.task.input_size, init=init))


# --------------------------------------------------------------------------- training-dynamics sweep (Fig. 7)

def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())


def ablation_config(ab: Ablation, spec: NetSpec, preset) -> TrainConfig:
    """The recipe of ``spec`` in the sweep's setting ``ab``: its zoo recipe (for the random-label partner, with the
    preset's ``ablation_random_epochs``) with the setting's epochs, lr or optimizer."""
    p = get_preset(preset)
    cfg = train_config(spec, p)
    if spec.task.random_labels and p.ablation_random_epochs is not None:
        cfg = replace(cfg, epochs=p.ablation_random_epochs)
    epochs = max(1, round(cfg.epochs * ab.epochs))
    cfg = replace(cfg, epochs=epochs, lr_step=max(1, epochs // 3), checkpoint_epochs=(), lr=cfg.lr * ab.lr)
    if ab.optimizer == "adamw":
        cfg = replace(cfg, optimizer="adamw", lr=ab.adamw_lr, weight_decay=0.01)
    return cfg


def sweep_per_class(spec: NetSpec, p: Preset):
    """Training images per class of a network of the sweep: ``ablation_per_class``, never more than the zoo's."""
    zoo = _task_for(spec, p).per_class
    if p.ablation_per_class is None:
        return zoo
    return p.ablation_per_class if zoo is None else min(p.ablation_per_class, zoo)


def ablation_checkpoint(ab: Ablation, role: str, preset, root=None) -> Path:
    """final.pt of one network of the sweep. A baseline network trained as in the zoo (its images, its epochs) is
    the zoo's own."""
    p = get_preset(preset)
    name = ABLATION_NETS[role]
    spec = ZOO_BY_NAME[name]
    own_epochs = not spec.task.random_labels or p.ablation_random_epochs is None
    if ab.kind == "baseline" and sweep_per_class(spec, p) == _task_for(spec, p).per_class and own_epochs:
        return checkpoint_path(name, p, root)
    return zoo_dir(p, root) / "ablations" / _slug(ab.name) / name / "final.pt"


def train_ablation(ab: Ablation, role: str, preset, root=None, progress: bool = True) -> dict:
    """Train one network of the sweep unless it exists (resumable; under its lock). Returns {status, seconds}."""
    p = get_preset(preset)
    name = ABLATION_NETS[role]
    spec, path = ZOO_BY_NAME[name], ablation_checkpoint(ab, role, p, root)
    cfg, per_class = ablation_config(ab, spec, p), sweep_per_class(spec, p)
    if is_trained(spec, p, root, per_class, cfg, path):
        return {"status": "exists", "seconds": 0.0}
    if not available(spec, root):
        return {"status": f"skipped: dataset '{spec.task.dataset}' is not in {data_root(root)}"}
    with exclusive_lock(path.parent) as mine:
        if not mine:
            return {"status": "skipped: another runner is training it"}
        if path.exists():
            change = _spec_change(spec, p, path, cfg, per_class)
            if change is None:
                return {"status": "exists", "seconds": 0.0}
            _set_aside(path, change)
        t0 = time.perf_counter()
        _train_in_memory(spec, p, cfg, path.parent, root, progress, per_class, f"{name} ({ab.name})")
        return {"status": "trained", "seconds": time.perf_counter() - t0}


def train_ablations(preset="auto", root=None, progress: bool = True) -> pd.DataFrame:
    """Train every network of the sweep that is not trained yet, in this process. Returns one row per
    network: setting, role, name, status, seconds."""
    return pd.DataFrame([dict(setting=ab.name, role=role, name=name, **train_ablation(ab, role, preset, root, progress))
                         for ab in ABLATIONS for role, name in ABLATION_NETS.items()])


def _train_image_folder(spec, p, out_dir, root, progress):
    """ImageNet at 224x224: streamed from <data root>/imagenet/{train,val} through a DataLoader."""
    from torch.utils.data import DataLoader

    from .data import image_folder
    from .training import fit, resolve_device, to_float

    cfg = train_config(spec, p)
    device = resolve_device(cfg.device)
    train_set = image_folder(data_root(root) / "imagenet" / "train", train=True)
    val_set = image_folder(data_root(root) / "imagenet" / "val", train=False)
    model = build_model(spec, p, len(train_set.classes))

    def batches(dataset, shuffle, generator=None):
        loader = DataLoader(dataset, cfg.batch_size, shuffle=shuffle, generator=generator,
                            num_workers=min(8, os.cpu_count() or 1),
                            pin_memory=device.type == "cuda")
        return ((to_float(x.to(device)), y.to(device)) for x, y in loader)

    meta = {"name": spec.name, "spec": asdict(spec), "preset": asdict(p), "num_classes": len(train_set.classes),
            "model": model.config}
    return fit(model, lambda epoch, gen: batches(train_set, True, gen), lambda: batches(val_set, False), cfg,
               out_dir, meta=meta, progress=progress)


def load_net(name: str, preset="auto", root=None, checkpoint: str = "final.pt") -> VGG:
    """A trained network of the zoo, in eval mode."""
    p = get_preset(preset)
    path = zoo_dir(p, root) / name / checkpoint
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train it with univenc.zoo.train_zoo({p.name!r}, "
                                f"only=[{name!r}]) or `make reproduce PRESET={p.name}`")
    model = load_checkpoint_model(path)[0]
    spec = ZOO_BY_NAME.get(name)
    model.input_size = spec.task.input_size if spec is not None else (3, 32, 32)
    return model.eval()


def zoo_checkpoints(name: str, preset, root=None) -> list[Path]:
    """The checkpoints of a zoo network in epoch order: ``epoch_XXX.pt`` files, then ``final.pt``."""
    folder = zoo_dir(preset, root) / name
    paths = sorted(folder.glob("epoch_*.pt")) + [folder / "final.pt"]
    if not paths[-1].exists():
        raise FileNotFoundError(f"{paths[-1]} does not exist: train {name!r} first "
                                f"(univenc.zoo.train_zoo(..., only=[{name!r}]))")
    return paths
