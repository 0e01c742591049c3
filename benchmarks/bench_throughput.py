"""Training throughput with N jobs at once on one device, and the zoo's projected wall time from it.

Each setting starts N processes together (as ``univenc.runner`` starts the zoo's jobs); each trains one network
with ``univenc.training.train`` (the zoo's training loop: in-memory real CIFAR-10 images, batch augmentation,
a test evaluation every epoch on a fifth as many test images, as at the paper's 50k/10k) for ``--epochs``
epochs. The first epoch is warm-up (cuDNN autotuning, torch.compile); the median of the others gives each
job's rate, and their sum the aggregate rate in training images per second. The projection divides the
images the preset's zoo and sweep train on (``univenc.runner.zoo_tasks``, datasets present here) by the best
aggregate rate of each architecture.

    python benchmarks/bench_throughput.py --preset paper                                # GPU: 1/2/4/8 jobs
    python benchmarks/bench_throughput.py --preset paper --precision fp32 bf16 --compile
    python benchmarks/bench_throughput.py --preset cpu --jobs 1 2 --archs vgg --images 2000   # this CPU
    python benchmarks/bench_throughput.py --preset cpu --jobs 2 --archs vit convnext --compile --images 5000
"""
import argparse
import multiprocessing as mp
import os
import queue
import statistics
from collections import defaultdict

import pandas as pd
import torch

from univenc.data import TaskData, load_dataset
from univenc.models import convnext_atto, factorized_vgg11, resnet18, vgg11, vit_tiny32
from univenc.runner import zoo_tasks
from univenc.training import TrainConfig, train
from univenc.catalogue import ZOO_BY_NAME
from univenc.presets import get_preset

ARCHS = {"vgg": lambda w: vgg11(width=w), "factorized": lambda w: factorized_vgg11(width=w),
         "resnet18": lambda w: resnet18(), "convnext": lambda w: convnext_atto(), "vit": lambda w: vit_tiny32()}


def job(arch, width, precision, compile_, images, epochs, threads, barrier, results):
    """One job: train a fresh network, report its epoch times (seconds)."""
    torch.set_num_threads(threads)
    x, y = load_dataset("cifar10", train=True)
    xt, yt = load_dataset("cifar10", train=False)
    data = TaskData(x[:images], y[:images], xt[: images // 5], yt[: images // 5], 10)
    torch.manual_seed(0)
    model = ARCHS[arch](width)
    if compile_:
        model = torch.compile(model)
    cfg = TrainConfig(epochs=epochs, lr=0.005, lr_step=epochs, precision=precision)
    barrier.wait()  # all N jobs train at the same time
    log = train(model, data, cfg, progress=False)["log"]
    results.put([r["seconds"] for r in log])


def aggregate_rate(arch, width, precision, compile_, jobs, images, epochs) -> float:
    """Training images per second of ``jobs`` jobs together (each at the median of its epochs after the first)."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked processes
    barrier, results = ctx.Barrier(jobs), ctx.Queue()
    threads = 1 if torch.cuda.is_available() else max(1, (os.cpu_count() or 1) // jobs)
    procs = [ctx.Process(target=job, args=(arch, width, precision, compile_, images, epochs, threads, barrier,
                                           results)) for _ in range(jobs)]
    for proc in procs:
        proc.start()
    times = []
    while len(times) < jobs:
        try:
            times.append(results.get(timeout=5))
        except queue.Empty:
            if any(proc.exitcode not in (None, 0) for proc in procs):  # a job died (its traceback is above)
                for proc in procs:
                    proc.kill()
                raise SystemExit(f"a job of {arch} ({precision}, {jobs} jobs) failed")
    for proc in procs:
        proc.join()
    return sum(images / statistics.median(t[1:]) for t in times)


def zoo_images(preset) -> dict:
    """{arch: training images over all epochs} of the preset's zoo and sweep (datasets present here)."""
    out = defaultdict(int)
    for task in zoo_tasks(preset, missing_only=False):
        out[ZOO_BY_NAME[task.name].arch] += task.images(preset)
    return dict(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="paper", help="its width, and the zoo whose time is projected")
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="also measure each setting under torch.compile")
    ap.add_argument("--images", type=int, default=10000, help="training images per job and epoch")
    ap.add_argument("--epochs", type=int, default=3, help="per job; the first is warm-up")
    args = ap.parse_args()
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2: the first epoch is warm-up and is not timed")
    p = get_preset(args.preset)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    rows = []
    for arch in args.archs:
        for precision in args.precision:
            for compile_ in ([False, True] if args.compile else [False]):
                for jobs in args.jobs:
                    rate = aggregate_rate(arch, p.width, precision, compile_, jobs, args.images, args.epochs)
                    rows.append(dict(arch=arch, precision=precision, compile=compile_, jobs=jobs, images_s=rate))
                    print(f"{device}: {arch} width {p.width} {precision}{' compiled' if compile_ else ''}, "
                          f"{jobs} jobs: {rate:.0f} images/s", flush=True)
    table = pd.DataFrame(rows)
    table["vs_1_job"] = table.images_s / table.groupby(["arch", "precision", "compile"]).images_s.transform("first")
    print(table.to_string(index=False, float_format="{:.2f}".format))
    best = table.loc[table.groupby("arch").images_s.idxmax()].set_index("arch")
    total = 0.0
    for arch, images in zoo_images(p).items():
        if arch not in best.index:
            print(f"{arch}: {images:,} images in the {p.name} zoo, not measured here (--archs)")
            continue
        seconds = images / best.images_s[arch]
        total += seconds
        b = best.loc[arch]
        print(f"{arch}: {images:,} images in the {p.name} zoo and sweep, at {b.images_s:.0f} images/s "
              f"({b.jobs} jobs, {b.precision}{', compiled' if b.compile else ''}): {seconds / 60:.1f} min")
    print(f"projected {p.name} zoo and sweep on this device: {total / 60:.1f} min (the architectures measured)")


if __name__ == "__main__":
    main()
