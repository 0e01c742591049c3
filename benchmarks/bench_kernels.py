"""A zoo network's training step with this checkout's ``univenc.models`` against another git revision's: for the
factorized VGG-11 its whole factorized block (``univenc.models`` and the compiled kernels of ``univenc.kernels``, its
C source built with its own compiler flags), for the others their convolutions (``univenc.models.Conv2d``), on the
same real CIFAR-10 batches, the two taking turns step by step in one run, float32 and under bfloat16 autocast:

    python benchmarks/bench_kernels.py [--against 0acb256~1] [--arch factorized] [--width 0.25] [--steps 30]

``--arch``: factorized, vgg (both at ``--width``), resnet18, convnext or vit.

Prints the median images/s of each version and their ratio. The data, seeds and optimisers are the same; the
revision's ``lib/univenc`` is imported from a temporary copy, as the package ``univenc_then``.
"""
import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from univenc import models
from univenc.data import load_dataset
from univenc.training import tensor_batches

REPO = Path(__file__).resolve().parents[1]


def models_of(revision: str, into: Path):
    """``univenc.models`` as it was at ``revision``, from a copy of its ``lib/univenc`` imported as the package
    ``univenc_then``, its kernels built into ``into``."""
    archive = subprocess.run(["git", "archive", revision, "lib/univenc"], cwd=REPO, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "lib" / "univenc").rename(into / "univenc_then")
    sys.path.insert(0, str(into))
    kernels = importlib.import_module("univenc_then.kernels")
    kernels.cache_dir = lambda: into / "build"
    return importlib.import_module("univenc_then.models")


def network(module, arch: str, width: float):
    if arch in ("factorized", "vgg"):
        return module.VGG(width=width, factorized=arch == "factorized")
    return module.ARCHITECTURES[arch](10)


def step_seconds(model, opt, x, y, bf16):
    t = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="0acb256~1", help="the git revision whose univenc.models to compare with")
    ap.add_argument("--arch", default="factorized", choices=["factorized", "vgg", *models.ARCHITECTURES])
    ap.add_argument("--width", type=float, default=0.25, help="of the VGG-11s")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per version and precision (median)")
    args = ap.parse_args()
    x, y = load_dataset("cifar10", train=True)
    batches = list(tensor_batches(x[:128 * 8], y[:128 * 8], 128, True, torch.Generator().manual_seed(0), "cpu"))
    batches = [(b.contiguous(memory_format=torch.channels_last), t) for b, t in batches]
    with tempfile.TemporaryDirectory() as tmp:
        versions = {args.against: models_of(args.against, Path(tmp)), "this checkout": models}
        print(f"{torch.get_num_threads()} threads, {args.arch}, batch 128, real CIFAR-10 batches; "
              f"univenc.models of {args.against} vs this checkout, steps taken in turn")
        for bf16 in (False, True):
            nets = {}
            for label, module in versions.items():
                torch.manual_seed(0)
                m = network(module, args.arch, args.width).to(memory_format=torch.channels_last).train()
                nets[label] = (m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01,
                                                  momentum=0.9))
            seconds = {label: [] for label in versions}
            for i in range(args.steps + 3):
                xb, yb = batches[i % len(batches)]
                for label, (m, opt) in nets.items():
                    s = step_seconds(m, opt, xb, yb, bf16)
                    if i >= 3:  # warm-up: building the libraries, the buffers
                        seconds[label].append(s)
            rates = {label: 128 / statistics.median(s) for label, s in seconds.items()}
            old, new = rates[args.against], rates["this checkout"]
            print(f"  {'bf16' if bf16 else 'fp32'}: {args.against} {old:.0f} images/s, this checkout {new:.0f}: "
                  f"{new / old:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
