"""Wall time of a whole zoo trained as jobs, N at once, against one at a time (``univenc.runner``).

Each setting trains the preset's zoo and sweep from scratch in a fresh data root that links the real datasets
(nothing is shared or cached between settings), with submitit's local executor and cores // N threads per job.
Prints the wall time of each setting and its speed-up over the first.

    .venv/bin/python benchmarks/bench_zoo.py                        # smoke zoo, --jobs 1 vs 2
    .venv/bin/python benchmarks/bench_zoo.py --preset cpu --jobs 1 2 4
"""
import argparse
import shutil
import tempfile
import time
from pathlib import Path

from univenc.data import data_root
from univenc.runner import JobOptions, run_zoo

DATASETS = ["cifar-10-batches-py", "cifar-100-python", "MNIST"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    walls = {}
    for jobs in args.jobs:
        root = Path(tempfile.mkdtemp(prefix=f"bench_zoo_{jobs}_"))
        for d in DATASETS:
            if (data_root() / d).exists():
                (root / d).symlink_to(data_root() / d)
        t0 = time.perf_counter()
        status = run_zoo(args.preset, root, JobOptions(jobs=jobs), progress=False)
        walls[jobs] = time.perf_counter() - t0
        trained = (status.status == "trained").sum()
        print(f"--jobs {jobs} ({JobOptions(jobs=jobs).threads_per_job()} threads each): {walls[jobs]:.0f} s, "
              f"{trained} networks trained, {len(status) - trained} not", flush=True)
        shutil.rmtree(root)
    base = args.jobs[0]
    for jobs in args.jobs[1:]:
        print(f"--jobs {jobs} vs --jobs {base}: {walls[base] / walls[jobs]:.2f}x faster")


if __name__ == "__main__":
    main()
