"""Comparing many pairs of networks: pair by pair (``compare``: both networks' forward passes for every pair)
against one pass over the probe images (``compare_many``: each network once per batch), in one run.

    python benchmarks/bench_compare_pairs.py [--preset cpu] [--nets 4]

The networks are the first ``--nets`` factorized networks of the dataset comparisons of Figs. 3-4
(``univenc.catalogue.DATASET_NETS``), trained in the preset's zoo, all their pairs, on the preset's probe images
(real CIFAR-10 test images). Prints both wall times, their ratio and the largest difference in S.
"""
import argparse
import itertools
import time

import numpy as np

from univenc import experiments as ex
from univenc.similarity import compare, compare_many
from univenc.catalogue import DATASET_NETS
from univenc.presets import get_preset


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--nets", type=int, default=4)
    args = ap.parse_args()
    p = get_preset(args.preset)
    names = ex.trained(DATASET_NETS, p)[: args.nets]
    if len(names) < 2:
        raise SystemExit(f"fewer than 2 trained networks among {DATASET_NETS} in preset {p.name}: "
                         f"train them first (make reproduce PRESET={p.name})")
    nets = {n: ex.zoo_net(n, p) for n in names}
    pairs = list(itertools.combinations(names, 2))
    batches = ex.probe_batches(p)

    t = time.perf_counter()
    one_by_one = {(a, b): compare(nets[a], nets[b], batches, n_draws=p.n_draws, progress=False) for a, b in pairs}
    t_pairs = time.perf_counter() - t
    t = time.perf_counter()
    together = compare_many(nets, pairs, batches, n_draws=p.n_draws, progress=False)
    t_many = time.perf_counter() - t

    diff = max(float(np.nanmax(np.abs(one_by_one[k].table.S - together[k].table.S))) for k in pairs)
    print(f"{len(names)} networks ({', '.join(names)}), {len(pairs)} pairs, {p.analysis_images} probe images, "
          f"preset {p.name}: pair by pair {t_pairs:.1f} s, one pass {t_many:.1f} s: {t_pairs / t_many:.2f}x; "
          f"largest |S difference| {diff:.1e}")


if __name__ == "__main__":
    main()
