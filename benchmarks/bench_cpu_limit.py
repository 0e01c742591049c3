"""How close CPU training runs to this machine's limit: attainable GEMM and convolution throughput, each zoo
architecture's FLOPs per training image, and its images/s per path with the fraction of the attainable peak.

    python benchmarks/bench_cpu_limit.py                # 1 and 2 threads for the peaks, 1 thread for training
    python benchmarks/bench_cpu_limit.py --steps 30     # longer timing (median step)

Paths, measured in turn in this one run (ratios are what to read; machines differ):
- "fp32": float32, channels-last, the factorized block's compiled float32 kernels (the path before bf16 training);
- "bf16": bfloat16 autocast (with the factorized block's bfloat16 kernels) where
  :func:`univenc.training.bf16_pays` measures it to pay on this machine; else the same as fp32. The presets'
  ``precision="auto"`` takes it for the architectures of ``univenc.zoo.BF16_MEASURED``.
FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one training step (forward and backward;
the factorized VGG on its naive form, whose depthwise convolution the compiled kernels fuse). The fraction of
peak divides the achieved FLOP rate by the attainable peak of the path's dtype on one thread: the higher of the
GEMM and the convolution rates. "in conv/GEMM" is the
share of the step's time in convolution and matrix-product ops (torch.profiler), and "their rate" the FLOP rate
they reach: what is left of the step is memory-bound work (BatchNorm, ReLU, pooling, the factorized kernels).
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from univenc.models import VGG, convnext_atto, resnet18, vit_tiny32
from univenc.training import bf16_pays

ARCHS = {
    "standard VGG-11 (k=3, MLP head)": lambda naive=False: VGG(10, 3, 0.25, head="mlp"),
    "factorized VGG-11": lambda naive=False: VGG(10, 3, 0.25, factorized=True, naive=naive),
    "ResNet-18 (torchvision)": lambda naive=False: resnet18(10),
    "ConvNeXt-atto (timm, 2x2 stem)": lambda naive=False: convnext_atto(10),
    "ViT (timm, patch 4, width 96)": lambda naive=False: vit_tiny32(10),
}
GEMM_OPS = ("conv", "mm", "addmm", "linear")


def gemm_rate(dtype, threads, n=2048, repeats=5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best


def conv_rate(dtype, threads, repeats=5) -> float:
    """A 3x3 convolution of 128 channels on 16x16 maps, batch 128, channels-last: a mid-network VGG layer."""
    torch.set_num_threads(threads)
    x = torch.randn(128, 128, 16, 16).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(128, 128, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    F.conv2d(x, w, padding=1)
    best = min(_timed(lambda: F.conv2d(x, w, padding=1)) for _ in range(repeats))
    return 2 * 128 * 128 * 128 * 9 * 16 * 16 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def batch(n=128):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last), \
        torch.randint(0, 10, (n,), generator=g)


def flops_per_image(make) -> float:
    x, y = batch()
    model = make(naive=True).train()
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / len(y)


def training_step(make, bf16):
    torch.manual_seed(0)
    model = make().to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    x, y = batch()

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def images_per_second(step, steps) -> float:
    for _ in range(3):
        step()
    times = sorted(_timed(step) for _ in range(steps))
    return 128 / times[len(times) // 2]


def gemm_share(step, steps=5) -> tuple[float, float]:
    """(share of the step's self time in conv/GEMM ops, their seconds per step)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    gemm = sum(e.self_cpu_time_total for e in events
               if any(op in e.key.lower() for op in GEMM_OPS) and not e.key.startswith("autograd"))
    return gemm / total, gemm / steps / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=15, help="timed training steps per path (median)")
    args = ap.parse_args()
    bf16_here = bf16_pays("cpu")
    print(f"torch {torch.__version__}; bfloat16 autocast pays here (univenc.training.bf16_pays): {bf16_here}\n")
    print("attainable throughput (GFLOP/s):")
    peak = {}
    for threads in (1, 2):
        for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
            g, c = gemm_rate(dtype, threads), conv_rate(dtype, threads)
            peak[(name, threads)] = max(g, c)
            print(f"  {threads} thread{'s' * (threads > 1)}, {name}: GEMM 2048^2 {g / 1e9:6.1f}, conv 3x3 128ch "
                  f"{c / 1e9:6.1f}")
    torch.set_num_threads(1)
    print("\ntraining at `cpu` width, batch 128, one thread (median step):")
    header = f"  {'network':33s} {'MFLOP/img':>9s} {'path':>5s} {'images/s':>9s} {'% of peak':>9s} " \
             f"{'in conv/GEMM':>12s} {'their rate':>11s}"
    print(header)
    for name, make in ARCHS.items():
        flops = flops_per_image(make)
        rates = {}
        for path in ("fp32", "bf16"):
            bf16 = path == "bf16" and bf16_here
            step = training_step(make, bf16)
            rates[path] = images_per_second(step, args.steps)
            share, gemm_s = gemm_share(step)
            dtype = "bf16" if bf16 else "fp32"
            frac = rates[path] * flops / peak[(dtype, 1)]  # the higher of the GEMM and conv rates
            gemm_rate_ = flops * 128 / gemm_s / 1e9 if gemm_s else float("nan")  # nearly all FLOPs are theirs
            print(f"  {name:33s} {flops / 1e6:9.1f} {path:>5s} {rates[path]:9.0f} {100 * frac:8.0f}% "
                  f"{100 * share:11.0f}% {gemm_rate_:7.0f} GF/s")
        print(f"  {'':33s} {'':9s} bf16 / fp32: {rates['bf16'] / rates['fp32']:.2f}x")


if __name__ == "__main__":
    main()
