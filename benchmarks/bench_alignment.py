"""Streaming alignment: peak memory with 10k vs 50k images, and time against plain forward passes over the
same data, in one run (real CIFAR-10 training images, the preset's trained fac_cifar10 / fac_cifar10_bis).

    python benchmarks/bench_alignment.py [--preset cpu]

Each measurement runs in a fresh subprocess so that its peak resident memory (ru_maxrss) is its own. The
50k CIFAR-10 images are loaded in both cases, so the difference is what the accumulation itself holds.
"""
import argparse
import json
import resource
import subprocess
import sys
import time


def child(preset, n, mode, net_a, net_b):
    import torch
    from univenc.alignment import accumulate_input_statistics
    from univenc.data import load_dataset
    from univenc.training import tensor_batches
    from univenc.zoo import load_net
    x, y = load_dataset("cifar10", train=True)
    a, b = load_net(net_a, preset), load_net(net_b, preset)
    batches = (bx for bx, _ in tensor_batches(x[:n], y[:n], 500, False, None, torch.device("cpu"), shuffle=False))
    t = time.perf_counter()
    if mode == "forward":
        with torch.no_grad():
            for bx in batches:
                a(bx), b(bx)
    else:
        accumulate_input_statistics(a, b, batches, progress=False)
    seconds = time.perf_counter() - t
    print(json.dumps({"seconds": seconds, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(preset, n, mode, nets):
    out = subprocess.run([sys.executable, __file__, "--child", preset, str(n), mode, *nets], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--nets", nargs=2, default=["fac_cifar10", "fac_cifar10_bis"])
    ap.add_argument("--time-only", action="store_true", help="skip the 50k-image memory runs")
    args = ap.parse_args()
    print(f"networks {args.nets[0]} / {args.nets[1]} ({args.preset} preset)")
    f10 = run(args.preset, 10_000, "forward", args.nets)
    r10 = run(args.preset, 10_000, "align", args.nets)
    print(f"time on 10k images: plain forward passes of both networks {f10['seconds']:.1f}s, streaming alignment "
          f"{r10['seconds']:.1f}s -> ratio {r10['seconds'] / f10['seconds']:.2f}x")
    if args.time_only:
        return
    base = run(args.preset, 0, "forward", args.nets)["maxrss_mb"]   # data + networks loaded, no image processed
    r50 = run(args.preset, 50_000, "align", args.nets)
    print(f"peak RSS: nothing processed {base:.0f} MB, 10k images {r10['maxrss_mb']:.0f} MB, "
          f"50k images {r50['maxrss_mb']:.0f} MB -> ratio 50k/10k {r50['maxrss_mb'] / r10['maxrss_mb']:.3f}")
    print(f"time on 50k images: streaming alignment {r50['seconds']:.1f}s")


if __name__ == "__main__":
    main()
