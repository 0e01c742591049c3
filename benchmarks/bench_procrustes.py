"""The Procrustes rotation's SVD at the paper's sizes: NumPy's LAPACK (OpenBLAS) against PyTorch's (MKL on x86
wheels), float64, on the cross-covariance of two factorized VGG-11s' inputs to their last block on real CIFAR-10
images, in one run:

    python benchmarks/bench_procrustes.py [--width 1.0] [--images 2000]

At width 1 (the paper's) the input of that block's 1x1 conv has d = 5120 dimensions; notebook 04 of the `paper`
preset computes three such rotations per factorized pair. The networks are at PyTorch's initialisation (no trained
paper-width network is needed to time an SVD); the matrix is a real cross-covariance of real images all the same.
"""
import argparse
import time

import numpy as np
import torch

from univenc.alignment import accumulate_input_statistics, analysed_layers
from univenc.data import load_dataset
from univenc.models import VGG
from univenc.training import to_float


def rotation_numpy(cross):
    u, _, vt = np.linalg.svd(cross, full_matrices=False)
    return u @ vt


def rotation_torch(cross):
    u, _, vt = torch.linalg.svd(torch.from_numpy(cross), full_matrices=False)
    return (u @ vt).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--images", type=int, default=2000, help="CIFAR-10 test images (4 samples each at the last block)")
    args = ap.parse_args()
    x, _ = load_dataset("cifar10", train=False)
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(VGG(width=args.width, factorized=True).eval())
    pairs = [(analysed_layers(nets[0])[-1], analysed_layers(nets[1])[-1])]  # the last block's 1x1 conv
    batches = to_float(x[: args.images]).split(250)
    stats = accumulate_input_statistics(nets[0], nets[1], batches, pairs, progress=False)[0]
    cross = stats.cross / stats.count
    print(f"{torch.get_num_threads()} threads; cross-covariance {cross.shape[0]} x {cross.shape[1]} from "
          f"{stats.count} samples of {args.images} CIFAR-10 test images (two factorized VGG-11s at init, width "
          f"{args.width}, input of the last block's 1x1 conv)")
    seconds, rotations = {}, {}
    for _ in range(2):  # in turn, twice: a busier moment of the shared machine falls on both
        for label, fn in (("numpy (OpenBLAS)", rotation_numpy), ("torch (MKL)", rotation_torch)):
            t = time.perf_counter()
            rotations[label] = fn(cross)
            seconds.setdefault(label, []).append(time.perf_counter() - t)
    (la, a), (lb, b) = rotations.items()
    objective = {label: float(np.sum(r * cross)) for label, r in rotations.items()}
    for label, s in seconds.items():
        print(f"  {label}: {min(s):.1f} s (runs: {', '.join(f'{v:.1f}' for v in s)}), tr(A^T cross) "
              f"{objective[label]:.10g}")
    print(f"  {la} / {lb}: {min(seconds[la]) / min(seconds[lb]):.2f}x; rotations differ by at most "
          f"{np.abs(a - b).max():.2e}; orthogonality error of {lb}: "
          f"{np.abs(b.T @ b - np.eye(b.shape[1])).max():.2e}")


if __name__ == "__main__":
    main()
