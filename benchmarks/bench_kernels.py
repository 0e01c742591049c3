"""The factorized VGG-11's training step with this checkout's compiled kernels against those of another git
revision (its C source built with its own compiler flags), on the same real CIFAR-10 batches, the two taking turns
step by step in one run, float32 and under bfloat16 autocast:

    python benchmarks/bench_kernels.py [--against c990c22~1] [--width 0.25] [--steps 30]

Prints the median images/s of each version and their ratio. The models, optimisers and data are the same; only the
compiled library that ``univenc.kernels`` loads differs.
"""
import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from univenc import kernels
from univenc.data import load_dataset
from univenc.models import VGG
from univenc.training import tensor_batches

REPO = Path(__file__).resolve().parents[1]


def kernels_of(revision: str, into: Path):
    """``univenc.kernels`` as it was at ``revision`` (module and C source), building into ``into``."""
    (into / "resources").mkdir(parents=True)
    for path in ("kernels.py", "resources/factorized_block.c"):
        text = subprocess.run(["git", "show", f"{revision}:lib/univenc/{path}"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout
        (into / path).write_text(text)
    spec = importlib.util.spec_from_file_location("kernels_then", into / "kernels.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.cache_dir = lambda: into / "build"
    return module


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
    ap.add_argument("--against", default="c990c22~1", help="the git revision whose kernels to compare with")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per version and precision (median)")
    args = ap.parse_args()
    x, y = load_dataset("cifar10", train=True)
    batches = list(tensor_batches(x[:128 * 8], y[:128 * 8], 128, True, torch.Generator().manual_seed(0), "cpu"))
    batches = [(b.contiguous(memory_format=torch.channels_last), t) for b, t in batches]
    this_load = kernels.load
    with tempfile.TemporaryDirectory() as tmp:
        then = kernels_of(args.against, Path(tmp))
        loads = {args.against: then.load, "this checkout": this_load}
        print(f"{torch.get_num_threads()} threads, width {args.width}, batch 128, real CIFAR-10 batches; "
              f"kernels of {args.against} vs this checkout, steps taken in turn")
        for bf16 in (False, True):
            models = {}
            for label in loads:
                torch.manual_seed(0)
                m = VGG(width=args.width, factorized=True).to(memory_format=torch.channels_last).train()
                models[label] = (m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01,
                                                    momentum=0.9))
            seconds = {label: [] for label in loads}
            for i in range(args.steps + 3):
                xb, yb = batches[i % len(batches)]
                for label, (m, opt) in models.items():
                    kernels.load = loads[label]  # univenc.kernels' wrappers look it up at each call
                    s = step_seconds(m, opt, xb, yb, bf16)
                    if i >= 3:  # warm-up: building the libraries, the buffers
                        seconds[label].append(s)
            kernels.load = this_load
            rates = {label: 128 / statistics.median(s) for label, s in seconds.items()}
            old, new = rates[args.against], rates["this checkout"]
            print(f"  {'bf16' if bf16 else 'fp32'}: {args.against} {old:.0f} images/s, this checkout {new:.0f}: "
                  f"{new / old:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
