"""A zoo network's training step with this checkout's ``univenc.models`` against another git revision's: for the
factorized VGG-11 its whole factorized block (``univenc.models`` and the compiled kernels of ``univenc.kernels``, its
C source built with its own compiler flags), for the others their convolutions (``univenc.models.Conv2d``), on the
same real CIFAR-10 batches, the two taking turns step by step in one run, float32 and under bfloat16 autocast:

    python benchmarks/bench_kernels.py [--against 0acb256~1] [--arch factorized] [--width 0.25] [--steps 30]

``--arch``: factorized, vgg (both at ``--width``), resnet18, convnext or vit.

``--per-layer`` (factorized): the block's two compiled kernels alone, layer by layer. One training step of this
checkout's network on a real batch records every call of ``univenc.kernels.factorized_forward`` and
``factorized_backward`` (its real inputs: x, dy, the folded weight, h, BatchNorm's gradient terms); each call is
then replayed with both versions' kernels in turn, their outputs checked equal bit for bit, and the median times
printed per layer.

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


def recorded_kernel_calls(width: float, batch, bf16: bool) -> list:
    """[(name, args, kwargs)] of the compiled kernels' calls in one training step of this checkout's factorized
    VGG-11 on ``batch`` (forward calls first, in layer order, then the backward ones)."""
    from univenc import kernels
    calls = []

    def recording(name):
        original = getattr(kernels, name)

        def call(*args, **kwargs):
            calls.append((name, [a.clone() if torch.is_tensor(a) else a for a in args], dict(kwargs)))
            return original(*args, **kwargs)
        return original, call

    torch.manual_seed(0)
    m = models.VGG(width=width, factorized=True).to(memory_format=torch.channels_last).train()
    originals = {}
    for name in ("factorized_forward", "factorized_backward"):
        originals[name], wrapped = recording(name)
        setattr(kernels, name, wrapped)
    try:
        xb, yb = batch
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(m(xb), yb)
        loss.backward()
    finally:
        for name, f in originals.items():
            setattr(kernels, name, f)
    return calls


def per_layer(against: str, module_then, width: float, batch, rounds: int):
    """Each recorded kernel call with this checkout's kernels and ``against``'s, in turn: median milliseconds."""
    from univenc import kernels
    then = importlib.import_module(module_then.__name__.rsplit(".", 1)[0] + ".kernels")
    for bf16 in (False, True):
        calls = recorded_kernel_calls(width, batch, bf16)
        print(f"  {'bf16' if bf16 else 'fp32'} kernels, ms per call ({against} -> this checkout):")
        total = {against: 0.0, "this checkout": 0.0}
        for name, args, kwargs in calls:
            outs, seconds = {}, {against: [], "this checkout": []}
            # each version writes h into its own buffer, reused from round to round as the network's pool is
            buffers = {label: {"out": torch.empty_like(kwargs["out"])} if "out" in kwargs else {} for label in seconds}
            for r in range(rounds + 1):
                for label, k in ((against, then), ("this checkout", kernels)):
                    t = time.perf_counter()
                    out = getattr(k, name)(*args, **{**kwargs, **buffers[label]})
                    if r:
                        seconds[label].append(time.perf_counter() - t)
                    outs[label] = out
            a, b = (outs[label] if isinstance(outs[label], tuple) else (outs[label],) for label in outs)
            same = all(torch.equal(u, v) for u, v in zip(a, b))
            ms = {label: 1e3 * statistics.median(s) for label, s in seconds.items()}
            for label in ms:
                total[label] += ms[label]
            # the block's input (cin, H, W): x's shape, or in the backward cin and h's map
            shape = "x".join(map(str, args[0].shape[1:] if name.endswith("forward") else (args[6], *args[2].shape[2:])))
            print(f"    {name.split('_')[1]:8s} {shape:12s} {ms[against]:7.2f} -> {ms['this checkout']:7.2f} "
                  f"({ms[against] / ms['this checkout']:.2f}x){'' if same else '  OUTPUTS DIFFER'}")
        print(f"    all calls {total[against]:.1f} -> {total['this checkout']:.1f} ms: "
              f"{total[against] / total['this checkout']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="0acb256~1", help="the git revision whose univenc.models to compare with")
    ap.add_argument("--arch", default="factorized", choices=["factorized", "vgg", *models.ARCHITECTURES])
    ap.add_argument("--width", type=float, default=0.25, help="of the VGG-11s")
    ap.add_argument("--steps", type=int, default=30, help="timed steps per version and precision (median)")
    ap.add_argument("--per-layer", action="store_true", help="factorized: its two kernels alone, call by call")
    args = ap.parse_args()
    if args.per_layer and args.arch != "factorized":
        ap.error("--per-layer times the factorized block's kernels: give --arch factorized")
    x, y = load_dataset("cifar10", train=True)
    batches = list(tensor_batches(x[:128 * 8], y[:128 * 8], 128, True, torch.Generator().manual_seed(0), "cpu"))
    batches = [(b.contiguous(memory_format=torch.channels_last), t) for b, t in batches]
    with tempfile.TemporaryDirectory() as tmp:
        versions = {args.against: models_of(args.against, Path(tmp)), "this checkout": models}
        if args.per_layer:
            print(f"{torch.get_num_threads()} threads, the factorized VGG-11's kernels, width {args.width}, "
                  f"batch 128 (one real CIFAR-10 batch), {args.steps} rounds, calls in turn")
            return per_layer(args.against, versions[args.against], args.width, batches[0], args.steps)
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
