"""The network zoo behind Figs. 1-5, the presets that scale it, and ``train_zoo``.

Every network has its own initialisation seed: two networks built with the same seed start from identical
conv weights, which would inflate every similarity between them. ``PAIRS`` lists the comparisons the figures
make; ``tests/test_zoo.py`` checks that no pair shares a seed.

Checkpoints: ``<data root>/zoo/<preset>/<name>/final.pt`` (plus ``last.pt``, ``epoch_XXX.pt``, ``log.csv``).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd
import torch

from .data import Task, data_root, load_task, task_available
from .models import VGG, canonical_spatial_filters, resnet18
from .storage import exclusive_lock, load_checkpoint
from .training import TrainConfig, train

__all__ = ["NetSpec", "Preset", "PRESETS", "ZOO", "PAIRS", "NON_NATURAL", "NATURAL_NETS", "NON_NATURAL_NETS",
           "RESNET_PAIRS", "get_preset", "build_model", "train_config", "train_images",
           "train_zoo", "load_net", "checkpoint_path", "zoo_dir", "available", "zoo_table",
           "Ablation", "ABLATIONS", "ablation_checkpoint", "train_ablation", "train_ablations"]


@dataclass(frozen=True)
class NetSpec:
    """One network of the zoo.

    arch : "vgg" (standard, Appendix B.1), "factorized" (B.2) or "resnet18" (torchvision's, unchanged).
    recipe : "standard"; "random_fig1b" (random labels, no BN, no augmentation, 2x epochs, lr ``fig1b_lr``);
             "random_fig34" (random labels, BN and augmentation kept, 4x epochs).
    match_steps : a small dataset (``univenc.data.TRAIN_CLASS_COUNTS``): it trains on all its training images
             (up to the preset's cap) for as many epochs as give the gradient steps of a CIFAR-10 network of
             the preset (:func:`train_images`).
    figures : the figures that use it.
    """
    name: str
    arch: str
    task: Task
    init_seed: int
    kernel_size: int = 3
    recipe: str = "standard"
    head: str = "linear"
    figures: tuple = ()
    match_steps: bool = False


@dataclass
class Preset:
    """Scale of a run. Plain data: print it, copy it, edit it (``dataclasses.replace``)."""
    name: str
    width: float                  # channel multiplier of VGG-11 (1.0: 64..512 channels)
    epochs: int                   # epochs of the standard recipe (lr / 10 at 1/3 and 2/3)
    lr: float                     # standard and random_fig34 recipes
    fig1b_lr: float               # random-label recipe of Fig. 1b
    per_class: int | None         # training images per class (None: all)
    random_per_class: int | None  # same, for the random-label networks
    max_train_images: int | None = None  # at most this many training images per network (None: no cap)
    batch_size: int = 128
    max_test_images: int | None = None
    eval_every: int = 1           # epochs between test-set evaluations (the last epoch is always evaluated)
    checkpoint_epochs: tuple = ()
    analysis_images: int = 2000   # probe images for the alignment (CIFAR-10 test set)
    n_draws: int = 5              # floor/ceiling draws of eq. 6
    null_seeds: int = 5           # random-init networks for the nulls
    fig1b_init: str = "default"   # init of the BN-free random-label network ("default" or "kaiming_relu")
    # Reduced recipes of the random-label networks, {recipe: {per_class, and any TrainConfig field}}; a recipe not
    # listed follows B.3 (2x / 4x the epochs, ``fig1b_lr`` / ``lr``, step schedule, ``random_per_class``).
    random_label_recipes: dict = field(default_factory=dict)
    ablation_per_class: int | None = None  # training images per class of the sweep (None: the zoo's)
    precision: str = "fp32"       # "bf16": train under bfloat16 autocast (univenc.training; for a GPU)
    notes: str = ""


PRESETS = {
    "paper": Preset("paper", width=1.0, epochs=90, lr=0.005, fig1b_lr=0.02, per_class=None,
                    random_per_class=None, checkpoint_epochs=(1, 5, 10, 30, 60), analysis_images=10000,
                    notes="The paper's widths, epochs and full datasets (B.3). For a GPU."),
    "cpu": Preset("cpu", width=0.25, epochs=15, lr=0.02, fig1b_lr=0.002, per_class=1000, random_per_class=500,
                  max_train_images=10000, checkpoint_epochs=(1, 2, 3, 5, 8, 11), eval_every=5, analysis_images=2000,
                  fig1b_init="kaiming_relu", ablation_per_class=250,
                  random_label_recipes={
                      "random_fig1b": dict(per_class=200, epochs=60, lr=0.005, schedule="onecycle", eval_every=20),
                      "random_fig34": dict(per_class=100, epochs=60, lr=0.02, schedule="onecycle", eval_every=20)},
                  notes="Quarter width, at most 10,000 training images per network (1000 per class), 15 epochs, "
                        "lr 0.02 (see README: at this budget lr 0.005 leaves the weights within 0.5x of their "
                        "init). Random-label networks fit their labels with fewer images, more epochs and a "
                        "one-cycle schedule; the BN-free one gets He init (docs/recipes.md). The sweep of "
                        "notebook 08 trains on 250 images per class."),
    "smoke": Preset("smoke", width=0.125, epochs=2, lr=0.02, fig1b_lr=0.002, per_class=40, random_per_class=40,
                    max_train_images=400,
                    max_test_images=500, checkpoint_epochs=(1,), analysis_images=256, n_draws=2, null_seeds=2,
                    fig1b_init="kaiming_relu", ablation_per_class=20,
                    random_label_recipes={
                        "random_fig1b": dict(per_class=20, epochs=20, lr=0.005, schedule="onecycle", eval_every=10),
                        "random_fig34": dict(per_class=20, epochs=20, lr=0.02, schedule="onecycle", eval_every=10)},
                    notes="Everything end to end in a few minutes, for CI. Numbers are not meaningful."),
}


def get_preset(preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset == "auto":
        preset = "paper" if torch.cuda.is_available() else "cpu"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)} or 'auto'")
    return PRESETS[preset]


def _t(name, **kw):
    return Task(name, **kw)


NON_NATURAL = ("pneumoniamnist", "breastmnist", "retinamnist", "fsdd")


ZOO = [
    # Fig. 1a, 1c, 2: standard VGG-11 on CIFAR-10, k = 3, 5, 7 (MLP head, as in the paper's Fig. 1a/b).
    NetSpec("vgg_k3_cifar10", "vgg", _t("cifar10"), 101, 3, head="mlp", figures=("1a", "1c", "2", "5")),
    NetSpec("vgg_k5_cifar10", "vgg", _t("cifar10"), 102, 5, head="mlp", figures=("1a",)),
    NetSpec("vgg_k7_cifar10", "vgg", _t("cifar10"), 103, 7, head="mlp", figures=("1a", "5")),
    NetSpec("vgg_k3_cifar10_bis", "vgg", _t("cifar10"), 104, 3, head="mlp", figures=("2",)),
    # Fig. 1b: random labels (no BN, no augmentation, 2x epochs).
    NetSpec("vgg_k3_cifar10_random", "vgg", _t("cifar10", random_labels="a"), 105, 3, "random_fig1b", "mlp",
            figures=("1b",)),
    # Fig. 1c: other datasets at 32x32.
    NetSpec("vgg_k3_cifar5", "vgg", _t("cifar5"), 106, 3, head="mlp", figures=("1c",)),
    NetSpec("vgg_k3_cifar100", "vgg", _t("cifar100"), 107, 3, head="mlp", figures=("1c",)),
    NetSpec("vgg_k3_mnist", "vgg", _t("mnist"), 108, 3, head="mlp", figures=("1c",)),
    NetSpec("vgg_k3_imagenet32", "vgg", _t("imagenet32"), 109, 3, head="mlp", figures=("1c",)),
    # The paper's own Fig. 1a / Fig. 5 setting, for users with ImageNet (<data root>/imagenet/{train,val}).
    NetSpec("vgg_k7_imagenet", "vgg", _t("imagenet"), 110, 7, head="mlp", figures=("1a", "5")),
    # Figs. 3-4: factorized VGG-11.
    NetSpec("fac_cifar10", "factorized", _t("cifar10"), 201, figures=("3", "4")),
    NetSpec("fac_cifar10_bis", "factorized", _t("cifar10"), 202, figures=("3", "4")),
    NetSpec("fac_cifar10_random_a", "factorized", _t("cifar10", random_labels="a"), 203, recipe="random_fig34",
            figures=("3", "4")),
    NetSpec("fac_cifar10_random_b", "factorized", _t("cifar10", random_labels="b"), 204, recipe="random_fig34",
            figures=("3", "4")),
    NetSpec("fac_cifar5", "factorized", _t("cifar5"), 205, figures=("3", "4")),
    NetSpec("fac_cifar10a", "factorized", _t("cifar10a"), 206, figures=("3", "4")),
    NetSpec("fac_cifar10b", "factorized", _t("cifar10b"), 207, figures=("3", "4")),
    NetSpec("fac_cifar100", "factorized", _t("cifar100"), 208, figures=("3", "4")),
    NetSpec("fac_cifar100a", "factorized", _t("cifar100a"), 209, figures=("3", "4")),
    NetSpec("fac_cifar100b", "factorized", _t("cifar100b"), 210, figures=("3", "4")),
    NetSpec("fac_mnist", "factorized", _t("mnist"), 211, figures=("3", "4")),
    NetSpec("fac_imagenet32", "factorized", _t("imagenet32"), 212, figures=("3", "4")),
    NetSpec("fac_imagenet32_bis", "factorized", _t("imagenet32"), 213, figures=("3", "4")),
    # Non-natural controls (notebook 10): X-rays, ultrasound, retinal photographs, speech spectrograms.
    *[NetSpec(f"{prefix}_{ds}", arch, _t(ds), seed, head=head, figures=figs, match_steps=True)
      for i, ds in enumerate(NON_NATURAL)
      for prefix, arch, seed, head, figs in [("vgg_k3", "vgg", 111 + i, "mlp", ("1c", "9")),
                                             ("fac", "factorized", 214 + i, "linear", ("9",))]],
    # ResNet-18 (notebook 09): skip connections and affine BatchNorm.
    NetSpec("resnet18_cifar10", "resnet18", _t("cifar10"), 301, figures=("8",)),
    NetSpec("resnet18_cifar10_bis", "resnet18", _t("cifar10"), 302, figures=("8",)),
    NetSpec("resnet18_cifar100", "resnet18", _t("cifar100"), 303, figures=("8",)),
    NetSpec("resnet18_cifar10_random", "resnet18", _t("cifar10", random_labels="a"), 304, recipe="random_fig34",
            figures=("8",)),
]
ZOO_BY_NAME = {s.name: s for s in ZOO}

# The comparisons of Figs. 2-4: (network a, network b, group).
_DATASET_NETS = ["fac_cifar5", "fac_cifar10", "fac_cifar10a", "fac_cifar10b", "fac_cifar100", "fac_cifar100a",
                 "fac_cifar100b", "fac_imagenet32", "fac_mnist"]
NATURAL_NETS = [n for n in _DATASET_NETS if n != "fac_mnist"]
NON_NATURAL_NETS = [f"fac_{ds}" for ds in NON_NATURAL]
RESNET_PAIRS = [("resnet18_cifar10", "resnet18_cifar10_bis", "seeds"),
                ("resnet18_cifar10", "resnet18_cifar100", "datasets"),
                ("resnet18_cifar10", "resnet18_cifar10_random", "true vs random")]
PAIRS = [
    ("vgg_k3_cifar10", "vgg_k3_cifar10_bis", "seeds"),
    ("fac_cifar10", "fac_cifar10_bis", "labels"),
    ("fac_cifar10", "fac_cifar10_random_a", "labels"),
    ("fac_cifar10", "fac_cifar10_random_b", "labels"),
    ("fac_cifar10_random_a", "fac_cifar10_random_b", "labels"),
    ("fac_imagenet32", "fac_imagenet32_bis", "labels"),
] + [(a, b, "datasets") for i, a in enumerate(_DATASET_NETS) for b in _DATASET_NETS[i + 1:]] \
  + [(a, b, "non-natural") for a in NON_NATURAL_NETS for b in NATURAL_NETS]


def zoo_dir(preset, root=None) -> Path:
    return data_root(root) / "zoo" / get_preset(preset).name


def checkpoint_path(name: str, preset, root=None) -> Path:
    return zoo_dir(preset, root) / name / "final.pt"


def available(spec: NetSpec, root=None) -> bool:
    """True when the dataset the network trains on is in the data root."""
    return task_available(spec.task, root)


def build_model(spec: NetSpec, preset, num_classes: int, filters=None) -> torch.nn.Module:
    """A freshly initialised network of ``spec`` at the preset's width (seeded by ``spec.init_seed``); a
    ResNet-18 is torchvision's at its own width."""
    p = get_preset(preset)
    torch.manual_seed(spec.init_seed)
    if spec.arch == "resnet18":
        model = resnet18(num_classes)
        model.input_size = spec.task.input_size
        return model
    factorized = spec.arch == "factorized"
    if factorized and filters is None:
        filters = canonical_spatial_filters()
    model = VGG(num_classes=num_classes, kernel_size=spec.kernel_size, width=p.width,
                batchnorm=spec.recipe != "random_fig1b", head=spec.head, factorized=factorized,
                filters=filters, init=p.fig1b_init if spec.recipe == "random_fig1b" else "default")
    model.input_size = spec.task.input_size  # map sizes of its layers (univenc.spatial.spatial_report)
    return model


def train_config(spec: NetSpec, preset) -> TrainConfig:
    """The B.3 recipe of ``spec`` at the preset's scale (with the preset's reduced random-label recipe)."""
    p = get_preset(preset)
    mult = {"standard": 1, "random_fig1b": 2, "random_fig34": 4}[spec.recipe]
    override = {k: v for k, v in p.random_label_recipes.get(spec.recipe, {}).items() if k != "per_class"}
    epochs = override.get("epochs", p.epochs * mult)
    if spec.match_steps:  # as many gradient steps as a CIFAR-10 network: more epochs over fewer images
        epochs = max(epochs, round(epochs * train_images(ZOO_BY_NAME["fac_cifar10"], p) / train_images(spec, p)))
    # The preset's epochs and their multiples: a random-label run shares epochs with a true-label one.
    ckpts = tuple(sorted({e for e in p.checkpoint_epochs} | {e * mult for e in p.checkpoint_epochs}))
    # Intermediate checkpoints feed the learning trajectories of the VGGs; a ResNet-18's are 90 MB each.
    keep = spec.arch != "resnet18" and not spec.match_steps
    cfg = TrainConfig(epochs=epochs, lr=p.fig1b_lr if spec.recipe == "random_fig1b" else p.lr,
                      lr_step=max(1, epochs // 3), batch_size=p.batch_size,
                      augment=spec.recipe != "random_fig1b", seed=spec.init_seed,
                      checkpoint_epochs=tuple(e for e in ckpts if e < epochs and keep), eval_every=p.eval_every,
                      precision=p.precision)
    return replace(cfg, **override)


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
        log = load_checkpoint(path)["log"][-1]
        return {"status": "exists", "seconds": 0.0, "train_acc": log["train_acc"], "test_acc": log["test_acc"]}
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
    model = build_model(spec, p, data.num_classes)
    meta = {"name": name or spec.name, "spec": asdict(spec), "preset": asdict(p), "num_classes": data.num_classes,
            "model": model.config, "train_images": len(data.train_labels)}
    return train(model, data, cfg, out_dir, meta=meta, progress=progress)


def zoo_table(preset, root=None) -> pd.DataFrame:
    """One row per trained network of the preset, read from its final checkpoint: preset, name, arch, task,
    labels, train_images, epochs, lr, schedule, train_acc (its own training images, eval mode, no
    augmentation), test_acc and seconds (sum of the epochs' wall times). Notebook 01 writes it to zoo.csv (through
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
                         train_acc=ckpt.get("train_eval_acc", float("nan")), test_acc=log[-1]["test_acc"],
                         seconds=round(sum(r["seconds"] for r in log), 1)))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- training-dynamics sweep (Fig. 7)

@dataclass(frozen=True)
class Ablation:
    """One setting of the sweep of notebook 08, applied to the factorized CIFAR-10 twins and their random-label
    partner (``ABLATION_NETS``). ``epochs`` and ``lr`` multiply each network's own recipe; AdamW takes the
    absolute ``adamw_lr`` (SGD's lr does not carry over) and its default weight decay 0.01."""
    name: str
    kind: str                 # "baseline", "duration", "lr" or "optimizer"
    epochs: float = 1.0
    lr: float = 1.0
    optimizer: str = "sgd"
    adamw_lr: float = 1e-3


ABLATIONS = [
    Ablation("baseline", "baseline"),
    Ablation("epochs x1/3", "duration", epochs=1 / 3),
    Ablation("epochs x3", "duration", epochs=3),
    Ablation("lr x1/3", "lr", lr=1 / 3),
    Ablation("lr x3", "lr", lr=3),
    Ablation("AdamW", "optimizer", optimizer="adamw"),
]
ABLATION_NETS = {"twin_a": "fac_cifar10", "twin_b": "fac_cifar10_bis", "random": "fac_cifar10_random_a"}


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower())


def ablation_config(ab: Ablation, spec: NetSpec, preset) -> TrainConfig:
    cfg = train_config(spec, preset)
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
    """final.pt of one network of the sweep. A baseline network trained on the zoo's images is the zoo's own."""
    p = get_preset(preset)
    name = ABLATION_NETS[role]
    spec = ZOO_BY_NAME[name]
    if ab.kind == "baseline" and sweep_per_class(spec, p) == _task_for(spec, p).per_class:
        return checkpoint_path(name, p, root)
    return zoo_dir(p, root) / "ablations" / _slug(ab.name) / name / "final.pt"


def train_ablation(ab: Ablation, role: str, preset, root=None, progress: bool = True) -> dict:
    """Train one network of the sweep unless it exists (resumable; under its lock). Returns {status, seconds}."""
    p = get_preset(preset)
    name = ABLATION_NETS[role]
    spec, path = ZOO_BY_NAME[name], ablation_checkpoint(ab, role, p, root)
    if path.exists():
        return {"status": "exists", "seconds": 0.0}
    if not available(spec, root):
        return {"status": f"skipped: dataset '{spec.task.dataset}' is not in {data_root(root)}"}
    with exclusive_lock(path.parent) as mine:
        if not mine:
            return {"status": "skipped: another runner is training it"}
        if path.exists():
            return {"status": "exists", "seconds": 0.0}
        t0 = time.perf_counter()
        _train_in_memory(spec, p, ablation_config(ab, spec, p), path.parent, root, progress,
                         sweep_per_class(spec, p), f"{name} ({ab.name})")
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
    from .trajectories import load_checkpoint_model

    model = load_checkpoint_model(path)[0]
    spec = ZOO_BY_NAME.get(name)
    model.input_size = spec.task.input_size if spec is not None else (3, 32, 32)
    return model.eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train what is missing of the zoo and of the sweep of notebook 08: "
                                 "in this process, or as jobs (--jobs) on this machine or a Slurm cluster.")
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--only", nargs="*", help="zoo networks to train (default: all, and the sweep)")
    ap.add_argument("--root")
    ap.add_argument("--jobs", type=int, help="run each network as a job, at most JOBS at once (univenc.runner)")
    ap.add_argument("--executor", choices=["local", "slurm"], default="local")
    ap.add_argument("--threads", type=int, help="torch threads per job (default: cores // jobs)")
    ap.add_argument("--partition", help="Slurm partition")
    ap.add_argument("--time", type=int, default=240, help="time limit per job, minutes")
    ap.add_argument("--gpus", type=int, default=0, help="GPUs per job (Slurm)")
    ap.add_argument("--mem", type=float, help="memory per job, GB (Slurm)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    if args.jobs is None and args.executor == "local":
        print(train_zoo(args.preset, args.only, args.root).to_string())
        if args.only is None:
            print(train_ablations(args.preset, args.root).to_string())
    else:
        from .runner import JobOptions, run_zoo
        options = JobOptions(args.executor, args.jobs or 1, args.threads, args.partition, args.time, args.gpus,
                             args.mem)
        print(run_zoo(args.preset, args.root, options, args.only).to_string())
    print(f"total wall time {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
