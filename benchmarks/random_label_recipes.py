"""Which reduced recipe makes the random-label networks fit their labels? (README, "Random labels").

Trains candidate recipes of the two random-label networks on real CIFAR-10 with random labels and prints, for
each, the accuracy on its own training images in eval mode without augmentation (the zoo table's
``train_acc``), the time, and the test accuracy (chance). Nothing is cached.

    .venv/bin/python benchmarks/random_label_recipes.py                 # every candidate
    .venv/bin/python benchmarks/random_label_recipes.py --only fig1b    # the BN-free network only
    .venv/bin/python benchmarks/random_label_recipes.py --candidates 3 6  # by index in CANDIDATES
"""
import argparse
import dataclasses
import time

import torch

from univenc.catalogue import ZOO_BY_NAME
from univenc import zoo as Z
from univenc.data import load_task
from univenc.training import train

# (network, images per class, epochs, schedule, lr): the recipe that the cpu preset uses is marked in README.
CANDIDATES = [
    ("vgg_k3_cifar10_random", 100, 60, "onecycle", 0.002),
    ("vgg_k3_cifar10_random", 100, 60, "onecycle", 0.005),
    ("vgg_k3_cifar10_random", 200, 60, "onecycle", 0.005),   # the cpu preset's Fig. 1b recipe
    ("vgg_k3_cifar10_random", 200, 60, "step", 0.005),       # same, B.3's step schedule
    ("fac_cifar10_random_a", 100, 120, "onecycle", 0.02),    # the cpu preset's Fig. 3-4 recipe
    ("fac_cifar10_random_a", 100, 120, "onecycle", 0.05),
    ("fac_cifar10_random_a", 100, 120, "step", 0.02),        # same, B.3's step schedule
    ("fac_cifar10_random_a", 100, 60, "onecycle", 0.02),     # half the epochs
]


def run(name, per_class, epochs, schedule, lr, preset="cpu"):
    spec = ZOO_BY_NAME[name]
    data = load_task(dataclasses.replace(spec.task, per_class=per_class))
    model = Z.build_model(spec, preset, data.num_classes)
    base = Z.train_config(spec, preset)
    cfg = dataclasses.replace(base, epochs=epochs, schedule=schedule, lr=lr, checkpoint_epochs=(),
                              eval_every=epochs)
    t0 = time.perf_counter()
    out = train(model, data, cfg, progress=False)
    return dict(net=name, images=len(data.train_labels), epochs=epochs, schedule=schedule, lr=lr,
                augment=cfg.augment, train_acc=out["train_eval_acc"], last_epoch_acc=out["log"][-1]["train_acc"],
                test_acc=out["log"][-1]["test_acc"], seconds=time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["fig1b", "fig34"])
    ap.add_argument("--candidates", type=int, nargs="*", help="indices in CANDIDATES (default: all)")
    args = ap.parse_args()
    for i, c in enumerate(CANDIDATES):
        if args.only and (c[0].startswith("vgg") != (args.only == "fig1b")):
            continue
        if args.candidates is not None and i not in args.candidates:
            continue
        r = run(*c)
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()), flush=True)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
