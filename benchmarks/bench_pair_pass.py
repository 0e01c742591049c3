"""One alignment pass of many pairs (``univenc.alignment.accumulate_pair_statistics``) over the preset's probe
images: the sums of squares of the layer inputs taken from a float64 copy of each input (the version before
5 December 2026) against per-column float32 sums added up in float64 (``alignment._sum_of_squares``), passes
interleaved in one run, on the trained networks of the dataset pairs (Fig. 3's CIFAR and MNIST ones).

    python benchmarks/bench_pair_pass.py [--preset cpu] [--rounds 2] [--images 1000]

Prints each version's median seconds per pass, their ratio, and the largest relative difference of the sums.
"""
import argparse
import statistics
import time
from unittest import mock

import torch

from univenc import alignment
from univenc.catalogue import DATASET_NETS
from univenc.experiments import probe_batches, trained, zoo_net


def float64_copy(p: torch.Tensor) -> float:
    """The earlier sum of squares: a float64 copy of p, summed."""
    return float(p.square().sum(dtype=torch.float64))


def one_pass(nets, layers, batches, squares):
    with mock.patch.object(alignment, "_sum_of_squares", squares):
        t = time.perf_counter()
        stats = alignment.accumulate_pair_statistics(nets, layers, batches, progress=False)
        return time.perf_counter() - t, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--images", type=int, default=1000, help="the first probe images (batches of 250)")
    args = ap.parse_args()
    names = trained(DATASET_NETS, args.preset)
    nets = {n: zoo_net(n, args.preset) for n in names}
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    layers = {pair: alignment.pair_layers(nets[pair[0]], nets[pair[1]]) for pair in pairs}
    batches = probe_batches(args.preset)[: max(1, args.images // 250)]
    print(f"{len(nets)} networks, {len(pairs)} pairs, {sum(len(b) for b in batches)} probe images, "
          f"{torch.get_num_threads()} threads")
    times = {"float64 copy": [], "per-column": []}
    for _ in range(args.rounds):
        before, old = one_pass(nets, layers, batches, float64_copy)
        now, new = one_pass(nets, layers, batches, alignment._sum_of_squares)
        times["float64 copy"].append(before)
        times["per-column"].append(now)
    diff = max(abs(s.sq_a - o.sq_a) / o.sq_a for pair in pairs for s, o in zip(new[pair], old[pair]))
    before, now = (statistics.median(t) for t in times.values())
    print(f"one pass: float64 copy {before:.1f} s, per-column {now:.1f} s -> {before / now:.2f}x "
          f"(rounds: {', '.join(f'{a:.1f}/{b:.1f}' for a, b in zip(*times.values()))}); "
          f"largest relative difference of the sums {diff:.1e}")


if __name__ == "__main__":
    main()
