"""The catalogue of networks: every network of the zoo, the sweep's settings and the comparisons the figures make.

Plain data, no code that trains. Every network has its own initialisation seed: two networks built with the same
seed start from identical conv weights, which would inflate every similarity between them. ``PAIRS`` lists the
comparisons of Figs. 2-4; ``tests/test_zoo.py`` checks that no pair shares a seed.
"""
from __future__ import annotations

from dataclasses import dataclass

from .data import Task

__all__ = ["NetSpec", "ZOO", "ZOO_BY_NAME", "PAIRS", "NON_NATURAL", "DATASET_NETS", "NATURAL_NETS",
           "NON_NATURAL_NETS", "RESNET_PAIRS", "ARCHITECTURE_PAIRS", "Ablation", "ABLATIONS", "ABLATION_NETS"]


@dataclass(frozen=True)
class NetSpec:
    """One network of the zoo.

    arch : "vgg" (standard, Appendix B.1), "factorized" (B.2), "resnet18" (torchvision's, unchanged), "convnext"
           (timm's smallest) or "vit" (a small ViT): ``univenc.models.ARCHITECTURES``.
    recipe : "standard"; "random_fig1b" (random labels, no BN, no augmentation, 2x epochs, lr ``fig1b_lr``);
             "random_fig34" (random labels, BN and augmentation kept, 4x epochs); "random_noaug" (random labels, the
             network's own BN, no augmentation, 2x epochs: the ResNet-18, whose BatchNorm stays).
    match_steps : a small dataset (``univenc.data.TRAIN_CLASS_COUNTS``): it trains on all its training images
             (up to the preset's cap) for as many epochs as give the gradient steps of a CIFAR-10 network of
             the preset (``univenc.zoo.train_images``).
    figures : the figures that use it.
    init : "default" (PyTorch's, B.3), "closed_form" (univenc.init's learning-free spatial covariance) or
           "cov:<zoo network>" (drawn from that trained network's covariance file, ``univenc.init.universal_init``).
    curve : evaluate the test accuracy after every epoch (accuracy against steps, notebook 13).
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
    init: str = "default"
    curve: bool = False

    @property
    def init_source(self) -> str | None:
        """The zoo network whose covariances initialise it, if any (it must be trained first)."""
        return self.init.split(":", 1)[1] if self.init.startswith("cov:") else None


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
    NetSpec("resnet18_cifar10_random", "resnet18", _t("cifar10", random_labels="a"), 304, recipe="random_noaug",
            figures=("8",)),
    # Across architectures (notebook 12): timm's smallest ConvNeXt and a small ViT, two seeds each.
    NetSpec("convnext_cifar10", "convnext", _t("cifar10"), 401, figures=("11",)),
    NetSpec("convnext_cifar10_bis", "convnext", _t("cifar10"), 402, figures=("11",)),
    NetSpec("vit_cifar10", "vit", _t("cifar10"), 403, figures=("11",)),
    NetSpec("vit_cifar10_bis", "vit", _t("cifar10"), 404, figures=("11",)),
    # Universal initialisation (notebook 13): a standard VGG-11 (k = 3, MLP head, as vgg_k3_cifar10) on CIFAR-10 and
    # on chest X-rays from PyTorch's init, the closed form, or another network's covariances; two seeds each.
    *[NetSpec(f"init_{label}_{target}_{seed}", "vgg", _t(target), 501 + 2 * i + j, head="mlp", figures=("12",),
              match_steps=target != "cifar10", init=init, curve=True)
      for i, (label, target, init) in enumerate([
          ("default", "cifar10", "default"), ("closedform", "cifar10", "closed_form"),
          ("cifar100", "cifar10", "cov:vgg_k3_cifar100"), ("mnist", "cifar10", "cov:vgg_k3_mnist"),
          ("own", "cifar10", "cov:vgg_k3_cifar10"), ("default", "pneumoniamnist", "default"),
          ("cifar10", "pneumoniamnist", "cov:vgg_k3_cifar10")])
      for j, seed in enumerate("ab")],
]
ZOO_BY_NAME = {s.name: s for s in ZOO}

# The comparisons of Figs. 2-4: (network a, network b, group).
DATASET_NETS = ["fac_cifar5", "fac_cifar10", "fac_cifar10a", "fac_cifar10b", "fac_cifar100", "fac_cifar100a",
                "fac_cifar100b", "fac_imagenet32", "fac_mnist"]
NATURAL_NETS = [n for n in DATASET_NETS if n != "fac_mnist"]
NON_NATURAL_NETS = [f"fac_{ds}" for ds in NON_NATURAL]
# Fig. 11 (b): channel S by depth within and across architectures (two architectures: layers paired by input map).
ARCHITECTURE_PAIRS = [("vgg_k3_cifar10", "vgg_k3_cifar10_bis", "VGG vs VGG"),
                      ("vgg_k3_cifar10", "resnet18_cifar10", "VGG vs ResNet"),
                      ("resnet18_cifar10", "convnext_cifar10", "ResNet vs ConvNeXt"),
                      ("convnext_cifar10", "convnext_cifar10_bis", "ConvNeXt vs ConvNeXt"),
                      ("vit_cifar10", "vit_cifar10_bis", "ViT vs ViT")]
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
] + [(a, b, "datasets") for i, a in enumerate(DATASET_NETS) for b in DATASET_NETS[i + 1:]] \
  + [(a, b, "non-natural") for a in NON_NATURAL_NETS for b in NATURAL_NETS]


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
