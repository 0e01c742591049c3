"""Test-set evaluation of the trained zoo in float32 and under bfloat16 autocast, in one run: the seconds of each,
their ratio, and what bfloat16 does to the test accuracy. Training logs its accuracies in the training's precision
(``univenc.training.evaluate_in``); this is the measurement behind that choice.

    python benchmarks/bench_eval_precision.py [--preset cpu] [--nets fac_cifar10 vgg_k3_cifar10 ...] [--rounds 2]

Only networks that trained under bfloat16 are listed (the others are evaluated in float32 either way). One thread,
the real test set of each network's task, the zoo's evaluation batch size. Each precision takes turns, round after
round; the best time of each is kept.
"""
import argparse
import time

import torch
from univenc.catalogue import ZOO_BY_NAME
from univenc.storage import load_checkpoint
from univenc.training import TrainConfig, evaluate_in, tensor_batches
from univenc.zoo import checkpoint_path, load_net, load_task_for


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--root", default=None, help="data root (default: $UNIVENC_DATA or <repo>/data)")
    ap.add_argument("--nets", nargs="+", default=None, help="zoo networks (default: every trained one)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    names = args.nets or [n for n in ZOO_BY_NAME if checkpoint_path(n, args.preset, args.root).exists()]
    batch = TrainConfig().eval_batch_size
    print(f"preset {args.preset}, 1 thread, batch {batch}, best of {args.rounds} rounds")
    print(f"{'network':32s} {'fp32 s':>7s} {'bf16 s':>7s} {'ratio':>6s} {'fp32 acc':>9s} {'bf16 acc':>9s} {'diff':>8s}")
    totals, diffs = [0.0, 0.0], []
    for name in names:
        path = checkpoint_path(name, args.preset, args.root)
        if load_checkpoint(path, mmap=True)["config"]["train"]["precision"] != "bf16":
            continue
        net, data = load_net(name, args.preset, args.root), load_task_for(ZOO_BY_NAME[name], args.preset, args.root)
        net = net.to(memory_format=torch.channels_last)
        best, acc = {"fp32": float("inf"), "bf16": float("inf")}, {}
        for _ in range(args.rounds):
            for precision in best:
                t0 = time.perf_counter()
                acc[precision] = evaluate_in(precision, net, tensor_batches(
                    data.test_images, data.test_labels, batch, False, None, torch.device("cpu"), shuffle=False))[1]
                best[precision] = min(best[precision], time.perf_counter() - t0)
        totals = [totals[0] + best["fp32"], totals[1] + best["bf16"]]
        diffs.append(acc["bf16"] - acc["fp32"])
        print(f"{name:32s} {best['fp32']:7.2f} {best['bf16']:7.2f} {best['fp32'] / best['bf16']:5.2f}x "
              f"{acc['fp32']:9.4f} {acc['bf16']:9.4f} {diffs[-1]:+8.4f}", flush=True)
    if diffs:
        print(f"{len(diffs)} networks: {totals[0]:.0f} s in float32, {totals[1]:.0f} s in bfloat16 "
              f"({totals[0] / totals[1]:.2f}x); accuracy bf16 - fp32: mean {sum(diffs) / len(diffs):+.4f}, "
              f"largest |diff| {max(map(abs, diffs)):.4f}")


if __name__ == "__main__":
    main()
