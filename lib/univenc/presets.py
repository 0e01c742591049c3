"""Presets: the scale of a run (width, data, epochs, probe images) as plain dataclasses, their variants and dry runs.

``PRESETS`` holds ``smoke`` (CI), ``cpu`` (two cores) and ``paper`` (the paper's recipe, for a GPU). A variant
(:func:`variant`, named ``<preset>-w<width>-n<images per class>``) changes the width or the training images of
every network, random-label ones included: the scaling study of notebook 11 runs the zoo at such points. A dry run
(:func:`dry_run`, ``<preset>-steps<N>``) keeps widths and data and stops every training after N optimiser steps,
so that the whole path can be walked on any machine. Every such name is understood wherever a preset name is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

__all__ = ["Preset", "PRESETS", "get_preset", "variant", "is_variant", "dry_run", "PresetError"]


class PresetError(ValueError):
    """A preset name that is not known; the message lists the valid ones."""


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
    # Epochs of the sweep's random-label partner at its baseline (None: its zoo recipe's); each setting scales them.
    ablation_random_epochs: int | None = None
    precision: str = "auto"       # "bf16": bfloat16 autocast; "auto": where measured to pay (univenc.training)
    max_steps: int | None = None  # stop every training after this many optimiser steps (a dry run; None: off)
    # The scaling study (notebook 11): training images per class for the factorized twins and their random-label
    # partners, and for the standard networks; channel multipliers for the twins at ``scale_width_per_class``.
    scale_per_class_factorized: tuple = ()
    scale_per_class_standard: tuple = ()
    scale_widths: tuple = ()
    scale_width_per_class: int | None = None
    notes: str = ""


PRESETS = {
    "paper": Preset("paper", width=1.0, epochs=90, lr=0.005, fig1b_lr=0.02, per_class=None,
                    random_per_class=None, checkpoint_epochs=(1, 5, 10, 30, 60), analysis_images=10000,
                    scale_per_class_factorized=(500, 2500), scale_per_class_standard=(500, 2500),
                    scale_widths=(0.25, 0.5), scale_width_per_class=5000,
                    notes="The paper's widths, epochs and full datasets (B.3). For a GPU."),
    "cpu": Preset("cpu", width=0.25, epochs=15, lr=0.02, fig1b_lr=0.002, per_class=1000, random_per_class=1000,
                  max_train_images=10000, checkpoint_epochs=(1, 2, 3, 5, 8, 11), eval_every=5, analysis_images=2000,
                  fig1b_init="kaiming_relu", ablation_per_class=250, ablation_random_epochs=60,
                  scale_per_class_factorized=(250, 1000, 5000), scale_per_class_standard=(250, 1000, 2500),
                  scale_widths=(0.125, 0.5), scale_width_per_class=1000,
                  random_label_recipes={  # the true-label partners' images, until they fit (docs/recipes.md)
                      "random_fig1b": dict(per_class=1000, epochs=60, lr=0.005, schedule="onecycle", eval_every=20),
                      "random_fig34": dict(per_class=1000, epochs=120, lr=0.02, schedule="onecycle", eval_every=40),
                      "random_noaug": dict(per_class=1000, epochs=30, lr=0.02, schedule="onecycle", eval_every=10)},
                  notes="Quarter width, at most 10,000 training images per network (1000 per class), 15 epochs, "
                        "lr 0.02 (docs/recipes.md: at this budget lr 0.005 leaves the weights within 0.5x of their "
                        "init). Random-label networks train on their partners' images until they fit (>= 0.9): "
                        "one-cycle schedules, 60 epochs without BN (He init), 120 with BN and augmentation, 30 for "
                        "the ResNet-18 without augmentation (docs/recipes.md). The sweep of notebook 08 trains on "
                        "250 images per class."),
    "smoke": Preset("smoke", width=0.0625, epochs=2, lr=0.02, fig1b_lr=0.002, per_class=40, random_per_class=40,
                    max_train_images=400,
                    max_test_images=500, checkpoint_epochs=(1,), analysis_images=256, n_draws=2, null_seeds=2,
                    fig1b_init="kaiming_relu", ablation_per_class=20,
                    scale_per_class_factorized=(20, 40), scale_per_class_standard=(20, 40), scale_widths=(0.09375,),
                    scale_width_per_class=40,
                    random_label_recipes={
                        "random_fig1b": dict(per_class=40, epochs=20, lr=0.005, schedule="onecycle", eval_every=10),
                        "random_fig34": dict(per_class=40, epochs=20, lr=0.02, schedule="onecycle", eval_every=10),
                        "random_noaug": dict(per_class=40, epochs=10, lr=0.02, schedule="onecycle", eval_every=10)},
                    notes="Everything end to end in a few minutes, for CI. Numbers are not meaningful."),
}

# A dry run measures accuracy on this many test and training images: after a few steps it means nothing, and
# at full width the full sets would cost more than the steps.
DRY_RUN_EVAL_IMAGES = 1000
# ... and aligns networks on this many probe images, at full width all the same: the cross moments, rotations and
# SVDs keep their paper sizes (and the memory they need), while the passes over the probes, linear in their
# number, take a tenth of the paper's 10,000 (at paper width on 2 CPU cores, 38 s per 250 probes for 5 factorized
# pairs: 25 minutes per 5 pairs with 10,000 probes).
DRY_RUN_PROBE_IMAGES = 1000
_NAME = re.compile(r"^(?P<base>[a-z]+)(-w(?P<width>[0-9.]+))?(-n(?P<per_class>[0-9]+))?(-steps(?P<steps>[0-9]+))?$")


def _number(x: float) -> str:
    return f"{x:g}"


def variant(preset, width: float | None = None, per_class: int | None = None) -> Preset:
    """``preset`` with every network at channel multiplier ``width`` and/or trained on ``per_class`` images per
    class: true-label and random-label networks alike, on the same images (at most ``10 per_class`` per network,
    the same data budget for 5, 10 or 100 classes, as the presets do). Everything else (epochs, recipes, probe
    images) stays. Named ``<preset>-w<width>-n<per_class>``; the preset itself where nothing changes."""
    p = get_preset(preset)
    if p.max_steps is not None or "-w" in p.name or "-n" in p.name:
        raise PresetError(f"{p.name} is a variant already: derive it from {p.name.split('-')[0]!r}")
    changes, name = {}, p.name
    if width is not None and width != p.width:
        if not width > 0:
            raise PresetError(f"width must be positive, got {width!r}")
        changes["width"], name = width, f"{name}-w{_number(width)}"
    if per_class is not None and per_class != p.per_class:
        if not isinstance(per_class, int) or per_class < 1:
            raise PresetError(f"per_class must be a whole number >= 1, got {per_class!r}")
        recipes = {r: {**v, "per_class": per_class} for r, v in p.random_label_recipes.items()}
        changes.update(per_class=per_class, random_per_class=per_class, random_label_recipes=recipes,
                       max_train_images=10 * per_class)
        name = f"{name}-n{per_class}"
    return replace(p, name=name, **changes) if changes else p


def dry_run(preset, max_steps: int) -> Preset:
    """``preset`` (a name or a :class:`Preset`) walked end to end in ``max_steps`` optimiser steps per network:
    the same widths, data, networks and analysis, every training stopped after ``max_steps`` steps, accuracies
    on ``DRY_RUN_EVAL_IMAGES`` images, alignments on at most ``DRY_RUN_PROBE_IMAGES`` probe images. Its name,
    ``<preset>-steps<N>``, keeps its checkpoints, results and figures apart from the real preset's."""
    if not isinstance(max_steps, int) or max_steps < 1:
        raise PresetError(f"max_steps must be a whole number >= 1, got {max_steps!r}")
    p = get_preset(preset)
    if p.max_steps is not None:
        raise PresetError(f"{p.name} is a dry run already")
    return replace(p, name=f"{p.name}-steps{max_steps}", max_steps=max_steps, max_test_images=DRY_RUN_EVAL_IMAGES,
                   analysis_images=min(p.analysis_images, DRY_RUN_PROBE_IMAGES),
                   notes=f"Dry run of {p.name}: every network stops after {max_steps} optimiser steps and is aligned "
                         f"on {min(p.analysis_images, DRY_RUN_PROBE_IMAGES)} probe images; numbers mean nothing. "
                         f"{p.notes}")


def is_variant(name: str, base: str) -> bool:
    """Whether preset name ``name`` is a :func:`variant` of preset ``base`` (width and/or images per class)."""
    match = _NAME.match(name)
    return bool(match) and match["base"] == base and not match["steps"] and bool(match["width"] or match["per_class"])


def get_preset(preset, max_steps: int | None = None) -> Preset:
    """The :class:`Preset` of a name ("smoke", "cpu", "paper", "auto": paper with a CUDA GPU, cpu otherwise, or a
    dry run's "<name>-steps<N>"), or ``preset`` itself when it is one; with ``max_steps``, its :func:`dry_run`."""
    if max_steps is not None:
        return dry_run(preset, max_steps)
    if isinstance(preset, Preset):
        return preset
    if preset == "auto":
        import torch
        preset = "paper" if torch.cuda.is_available() else "cpu"
    if preset in PRESETS:
        return PRESETS[preset]
    match = _NAME.match(str(preset))
    if match is None or match["base"] not in PRESETS or match.group(0) == match["base"]:
        raise PresetError(f"unknown preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}, 'auto', a variant "
                          f"such as 'cpu-w0.5-n250' or a dry run such as 'paper-steps20'")
    try:
        width = float(match["width"]) if match["width"] else None
    except ValueError:
        raise PresetError(f"unknown preset {preset!r}: its width is not a number") from None
    p = variant(match["base"], width, int(match["per_class"]) if match["per_class"] else None)
    p = dry_run(p, int(match["steps"])) if match["steps"] else p
    if p.name != preset:  # e.g. "cpu-n1000": the variant is the preset itself, whose name must be used
        raise PresetError(f"unknown preset {preset!r}: it is {p.name!r}")
    return p
