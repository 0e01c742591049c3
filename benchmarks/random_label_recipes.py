"""Which recipe makes the random-label networks fit their labels? (docs/recipes.md, "Random labels").

Trains candidate recipes of the random-label networks on real CIFAR-10 with random labels and prints, for each,
the accuracy on its own training images in eval mode without augmentation (the zoo table's ``train_acc``; it fits
at >= 0.9), the last epoch's accuracy in training mode, the time, and the test accuracy (chance). The candidates
train on the images of their true-label partners (1000 per class at ``cpu``), at the preset's width or another
one (``--width``, to find the smallest width that fits). Nothing is cached.

    .venv/bin/python benchmarks/random_label_recipes.py                  # every candidate
    .venv/bin/python benchmarks/random_label_recipes.py --only fig34     # the factorized (Fig. 3-4) network only
    .venv/bin/python benchmarks/random_label_recipes.py --candidates 3 6 --threads 1
"""
import argparse
import dataclasses
import time

import torch

from univenc import zoo as Z
from univenc.catalogue import ZOO_BY_NAME
from univenc.data import load_task
from univenc.presets import variant
from univenc.training import train

# (network, images per class, epochs, schedule, lr, width[, augment]): the recipes the presets use are in
# docs/recipes.md; augment defaults to the network's recipe's.
CANDIDATES = [
    ("vgg_k3_cifar10_random", 1000, 60, "onecycle", 0.005, 0.25),    # Fig. 1b: BN-free, no augmentation
    ("vgg_k3_cifar10_random", 1000, 100, "onecycle", 0.005, 0.25),
    ("fac_cifar10_random_a", 1000, 60, "onecycle", 0.02, 0.25),     # Figs. 3-4: BN and augmentation, 4x epochs
    ("fac_cifar10_random_a", 1000, 120, "onecycle", 0.02, 0.25),
    ("fac_cifar10_random_a", 1000, 60, "onecycle", 0.02, 0.5),
    ("resnet18_cifar10_random", 1000, 15, "onecycle", 0.02, 0.25),  # ResNet-18 (its own width)
    ("resnet18_cifar10_random", 1000, 30, "onecycle", 0.02, 0.25),
    ("resnet18_cifar10_random", 1000, 60, "onecycle", 0.02, 0.25),
    ("resnet18_cifar10_random", 1000, 30, "onecycle", 0.02, 0.25, False),  # Fig. 1b's structure: no augmentation
]


def run(name, per_class, epochs, schedule, lr, width, augment=None, preset="cpu"):
    spec = ZOO_BY_NAME[name]
    data = load_task(dataclasses.replace(spec.task, per_class=per_class))
    p = variant(preset, width=width)
    model = Z.build_model(spec, p, data.num_classes)
    base = Z.train_config(spec, p)
    cfg = dataclasses.replace(base, epochs=epochs, schedule=schedule, lr=lr, checkpoint_epochs=(),
                              eval_every=epochs, augment=base.augment if augment is None else augment)
    t0 = time.perf_counter()
    out = train(model, data, cfg, progress=False)
    return dict(net=name, width=width, images=len(data.train_labels), epochs=epochs, schedule=schedule, lr=lr,
                augment=cfg.augment, precision=out["config"]["train"]["precision"], train_acc=out["train_eval_acc"],
                last_epoch_acc=out["log"][-1]["train_acc"], test_acc=out["log"][-1]["test_acc"],
                seconds=time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["fig1b", "fig34", "resnet"])
    ap.add_argument("--candidates", type=int, nargs="*", help="indices in CANDIDATES (default: all)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    kinds = {"fig1b": "vgg", "fig34": "fac", "resnet": "resnet"}
    for i, c in enumerate(CANDIDATES):
        if args.only and not c[0].startswith(kinds[args.only]):
            continue
        if args.candidates is not None and i not in args.candidates:
            continue
        r = run(*c)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
