"""Parts of a CPU training step, the way before against the way now, each pair timed in turn in one run:

- a convolution's backward under bfloat16 (batch 128, channels-last, 1 thread) at the zoo's layer shapes: oneDNN's
  ``convolution_backward`` for both gradients, against oneDNN's input gradient plus the weight gradient as one GEMM
  over the unfolded input (``univenc.models.conv_gemm_weight_grad``, which ``univenc.models.Conv2d`` takes under CPU
  autocast on output maps of at most ``GEMM_WEIGHT_GRAD_MAX_POSITIONS`` positions);
- the training augmentation (random crop with 4 pixels of padding, horizontal flip) of 128 real CIFAR-10 images:
  indexing with four broadcast index tensors (the earlier ``augment_batch``, kept here) against one gather
  (``univenc.training.augment_batch``), checked to give the same images;
- the standard VGG-11's 2x2 max-pooling (width 1/4, batch 128, float32 and bfloat16), forward and backward on the
  inputs and output gradients of one real training step: ``F.max_pool2d`` against ``univenc.models.MaxPool2d``
  (the compiled kernels), checked to give the same outputs and gradients.

    python benchmarks/bench_step_parts.py [--repeats 20] [--parts conv augmentation pool]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from univenc.data import load_dataset
from univenc.models import GEMM_WEIGHT_GRAD_MAX_POSITIONS, unfold_windows
from univenc.training import augment_batch, tensor_batches

# (Cin, Cout, input map, kernel, stride): the width-1/4 VGG-11's layers on 8x8, 4x4 and 2x2 maps, the ResNet-18's
# on 8x8 (layer1), 4x4 and 2x2 (layer2, layer3, their stride-2 and 1x1 convs), a 5x5 kernel on 4x4 maps
SHAPES = [(32, 64, 8, 3, 1), (64, 64, 8, 3, 1), (64, 128, 4, 3, 1), (128, 128, 4, 3, 1), (128, 128, 2, 3, 1),
          (64, 128, 8, 3, 2), (128, 128, 4, 3, 1), (128, 256, 4, 3, 2), (256, 256, 2, 3, 1), (64, 128, 8, 1, 2),
          (128, 128, 4, 5, 1)]


def median_ms(fns: dict, repeats: int) -> dict:
    """Median milliseconds of each function, the functions called in turn."""
    times = {k: [] for k in fns}
    for i in range(repeats + 2):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            if i >= 2:
                times[k].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def conv_backwards(repeats: int):
    print("convolution backward, bfloat16, batch 128, 1 thread: oneDNN for both gradients vs oneDNN's input "
          "gradient + the weight gradient as one GEMM")
    for cin, cout, size, k, stride in SHAPES:
        pad = k // 2
        x = torch.randn(128, cin, size, size).bfloat16().contiguous(memory_format=torch.channels_last)
        w = torch.randn(cout, cin, k, k).bfloat16().contiguous(memory_format=torch.channels_last)
        dy = torch.randn_like(F.conv2d(x, w, None, stride, pad)).contiguous(memory_format=torch.channels_last)
        args = (dy, x, w, None, (stride,) * 2, (pad,) * 2, (1, 1), False, (0, 0), 1)

        def onednn():
            return torch.ops.aten.convolution_backward(*args, (True, True, False))

        def gemm():
            dx = torch.ops.aten.convolution_backward(*args, (True, False, False))[0]
            return dx, dy.permute(0, 2, 3, 1).reshape(-1, cout).t() @ unfold_windows(x, (k, k), (stride,) * 2,
                                                                                     (pad,) * 2)
        ms = median_ms({"onednn": onednn, "gemm": gemm}, repeats)
        positions = dy.shape[-1] * dy.shape[-2]
        taken = "GEMM" if positions <= GEMM_WEIGHT_GRAD_MAX_POSITIONS else "oneDNN"
        print(f"  Cin {cin:3d} -> Cout {cout:3d}, {size}x{size} maps, {k}x{k} stride {stride}: oneDNN "
              f"{ms['onednn']:6.2f} ms, with the GEMM {ms['gemm']:6.2f} ms: {ms['onednn'] / ms['gemm']:.2f}x "
              f"({positions} output positions: Conv2d takes {taken})")


def augment_by_four_indices(images, generator, pad=4):
    """The augmentation as it was before: the same draws, indexing with four broadcast index tensors."""
    B, C, H, W = images.shape
    shifts = torch.randint(0, 2 * pad + 1, (2, B), generator=generator)
    flips = torch.rand(B, generator=generator) < 0.5
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (shifts[0][:, None] + torch.arange(H))[:, None, :, None]
    cols = (shifts[1][:, None] + torch.arange(W))[:, None, None, :]
    cols = torch.where(flips[:, None, None, None], cols.flip(-1), cols)
    return padded[torch.arange(B)[:, None, None, None], torch.arange(C)[None, :, None, None], rows, cols]


def augmentation(repeats: int):
    x, _ = load_dataset("cifar10", train=True)
    batch = x[:128]
    for seed in range(5):
        assert torch.equal(augment_by_four_indices(batch, torch.Generator().manual_seed(seed)),
                           augment_batch(batch, torch.Generator().manual_seed(seed)))
    gens = {k: torch.Generator().manual_seed(0) for k in ("four", "gather")}
    ms = median_ms({"four": lambda: augment_by_four_indices(batch, gens["four"]),
                    "gather": lambda: augment_batch(batch, gens["gather"])}, repeats)
    print(f"augmentation of 128 CIFAR-10 images, 1 thread (the same images): four index tensors {ms['four']:.2f} ms, "
          f"one gather {ms['gather']:.2f} ms: {ms['four'] / ms['gather']:.2f}x")


def pool_calls(dtype) -> list:
    """[(x, dy)] of the standard VGG-11's (width 1/4) max-pool layers in one training step on 128 real CIFAR-10
    images (float32, or bfloat16 autocast): each layer's input and its output's gradient."""
    from univenc.models import vgg11
    x, y = load_dataset("cifar10", train=True)
    torch.manual_seed(0)
    net = vgg11(width=0.25).to(memory_format=torch.channels_last).train()
    seen = {}
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    for i, m in enumerate(pools):
        m.register_forward_pre_hook(lambda m, a, i=i: seen.setdefault(i, [a[0].detach().clone()]) and None)
        m.register_full_backward_hook(lambda m, gi, go, i=i: seen[i].append(go[0].detach().clone()) and None)
    xb, yb = next(iter(tensor_batches(x[:128], y[:128], 128, True, torch.Generator().manual_seed(0), "cpu")))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        loss = F.cross_entropy(net(xb.contiguous(memory_format=torch.channels_last)), yb)
    loss.backward()
    return [tuple(seen[i]) for i in range(len(pools))]


def max_pooling(repeats: int):
    from univenc.models import MaxPool2d
    pools = {"torch": lambda a: F.max_pool2d(a, 2), "kernels": MaxPool2d(2)}
    for dtype in (torch.float32, torch.bfloat16):
        total = {"torch": 0.0, "kernels": 0.0}
        for x, dy in pool_calls(dtype):
            def step(pool):
                a = x.detach().requires_grad_()
                y = pool(a)
                y.backward(dy)
                return y.detach(), a.grad
            torch_out, kernels_out = (step(pool) for pool in pools.values())
            assert all(torch.equal(u, v) for u, v in zip(torch_out, kernels_out))
            ms = median_ms({label: lambda pool=pool: step(pool) for label, pool in pools.items()}, repeats)
            for k in total:
                total[k] += ms[k]
            print(f"max-pool {str(dtype)[6:]:8s} {'x'.join(map(str, x.shape[1:])):10s} forward and backward: "
                  f"F.max_pool2d {ms['torch']:.2f} ms, univenc.models.MaxPool2d {ms['kernels']:.2f} ms: "
                  f"{ms['torch'] / ms['kernels']:.2f}x")
        print(f"max-pool {str(dtype)[6:]}, the 5 layers: {total['torch']:.2f} ms against {total['kernels']:.2f} ms: "
              f"{total['torch'] / total['kernels']:.2f}x")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20, help="timed calls of each (median)")
    ap.add_argument("--parts", nargs="+", default=["conv", "augmentation", "pool"],
                    choices=["conv", "augmentation", "pool"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    for part, run in (("conv", conv_backwards), ("augmentation", augmentation), ("pool", max_pooling)):
        if part in args.parts:
            run(args.repeats)


if __name__ == "__main__":
    main()
