"""Eq. 5 + eq. 6 (cos_bw, floor and ceiling with their default draws): the package's path (retained
eigenpairs, O(d r^2)) against the dense reference (full d x d eigendecompositions), in one run.

    python benchmarks/bench_similarity.py [--preset cpu]

1. Real trained layers: the widest factorized layer pair of the preset's zoo (fac_cifar10 vs fac_cifar10_bis,
   aligned), values and times of both paths.
2. The paper's widest factorized layer, d = 10 x 512 = 5120 inputs, Cout = 512: no network of that width is
   trained on a CPU-only machine, so the weights are PyTorch's default init of that real layer, and the
   fast path is given all 512 eigenpairs of the raw covariance (its worst case; trained layers retain fewer).
"""
import argparse
import time

import numpy as np
import torch

from univenc import experiments as ex
from univenc.alignment import accumulate_input_statistics, pair_layers, procrustes
from univenc.covariance import shrink_eigenvalues, weight_spectrum
from univenc.similarity import _psd_root, bw_cosine_dense, haar_frame, normalised_similarity, resample
from univenc.zoo import checkpoint_path, load_net


def dense_reference(v1, u1, v2, u2, cout, n_draws, seed):
    """Eq. 5 and 6 with dense d x d matrices and the same random draws as the package's path."""
    c1 = (u1 * v1) @ u1.T
    root1 = _psd_root(c1)
    cos = bw_cosine_dense(c1, (u2 * v2) @ u2.T, root1)
    rng = np.random.default_rng(seed)
    d, r = u1.shape
    floor = [bw_cosine_dense(c1, (q * v1) @ q.T, root1) for q in (haar_frame(d, r, rng) for _ in range(n_draws))]
    rng = np.random.default_rng(seed + 1)
    ceiling = []
    for _ in range(n_draws):
        x = resample(v1, u1, cout, rng)
        lam, vec = np.linalg.eigh(x.T @ x / cout)                 # full d x d eigendecomposition
        shrunk = shrink_eigenvalues(lam, d / cout)
        ceiling.append(bw_cosine_dense(c1, (vec * shrunk) @ vec.T, root1))
    f, c = np.mean(floor), np.mean(ceiling)
    return cos, (cos - f) / (c - f)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench(label, v1, u1, v2, u2, cout, n_draws=5, seed=0):
    fast, t_fast = timed(lambda: normalised_similarity(v1, u1, v2, u2, cout, n_draws, seed))
    (cos_d, s_d), t_dense = timed(lambda: dense_reference(v1, u1, v2, u2, cout, n_draws, seed))
    print(f"{label}: d={u1.shape[0]} Cout={cout} r={len(v1)}/{len(v2)} | cos_bw {fast.cos:.9f} vs dense {cos_d:.9f} "
          f"(|diff| {abs(fast.cos - cos_d):.1e}) | S {fast.value:.9f} vs dense {s_d:.9f} (|diff| {abs(fast.value - s_d):.1e})"
          f" | package {t_fast:.2f}s, dense {t_dense:.1f}s, ratio {t_dense / t_fast:.0f}x", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--skip-paper-size", action="store_true")
    args = ap.parse_args()

    if all(checkpoint_path(n, args.preset).exists() for n in ("fac_cifar10", "fac_cifar10_bis")):
        res = ex.compare_pair("fac_cifar10", "fac_cifar10_bis", args.preset)
        a, b = load_net("fac_cifar10", args.preset), load_net("fac_cifar10_bis", args.preset)
        layer = res["table"].sort_values("d").iloc[-1]
        pairs = [p for p in pair_layers(a, b) if p[0][0] == layer.layer_a]
        stats = accumulate_input_statistics(a, b, ex.probe_batches(args.preset), pairs, progress=False)
        sa = weight_spectrum(pairs[0][0][1].weight, rotation=procrustes(stats[0].cross))
        sb = weight_spectrum(pairs[0][1][1].weight)
        bench(f"real trained layer {layer.layer_a} ({args.preset} preset, aligned)", *sa.retained(), *sb.retained(),
              sa.cout)
    else:
        print(f"(no trained fac_cifar10 pair in preset {args.preset}: real-layer comparison skipped)")

    if not args.skip_paper_size:
        torch.manual_seed(0)
        wa = torch.nn.Conv2d(5120, 512, 1, bias=False).weight
        wb = torch.nn.Conv2d(5120, 512, 1, bias=False).weight
        sa, sb = weight_spectrum(wa), weight_spectrum(wb)
        bench("paper-size layer (PyTorch init, all eigenpairs)", sa.eigenvalues, sa.vectors, sb.eigenvalues,
              sb.vectors, 512)


if __name__ == "__main__":
    main()
