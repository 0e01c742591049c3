"""Test-set evaluation (``univenc.training.evaluate``) by batch size, in one run on the real CIFAR-10 test set:
the standard and the factorized VGG-11 at the cpu preset's width and the ResNet-18, float32, one thread.

    python benchmarks/bench_eval_batch.py [--images 10000] [--batches 1000 256 128] [--rounds 3]

The batch sizes take turns, round after round; each prints its best time and its ratio to the first one, and
the accuracies, which must agree (the same weights and images, summed in another order).
"""
import argparse
import time

import torch
from univenc.data import data_root, load_dataset
from univenc.models import VGG, resnet18
from univenc.training import evaluate, tensor_batches

ARCHS = {
    "standard VGG-11": lambda: VGG(10, 3, 0.25),
    "factorized VGG-11": lambda: VGG(10, 3, 0.25, factorized=True),
    "ResNet-18 (torchvision)": lambda: resnet18(10),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--batches", type=int, nargs="+", default=[1000, 256, 128])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = load_dataset("cifar10", train=False, root=data_root())
    images, labels = test[0][: args.images], test[1][: args.images]
    print(f"{len(labels)} CIFAR-10 test images, 1 thread, float32, channels-last models; best of {args.rounds} rounds")
    for name, make in ARCHS.items():
        torch.manual_seed(0)
        model = make().to(memory_format=torch.channels_last).eval()
        best, accs = {b: float("inf") for b in args.batches}, {}
        for _ in range(args.rounds):
            for b in args.batches:
                t0 = time.perf_counter()
                accs[b] = evaluate(model, tensor_batches(images, labels, b, False, None, torch.device("cpu"),
                                                         shuffle=False))[1]
                best[b] = min(best[b], time.perf_counter() - t0)
        base = args.batches[0]
        print(f"{name}: " + "; ".join(f"batch {b}: {best[b]:.2f} s ({best[base] / best[b]:.2f}x), acc {accs[b]:.4f}"
                                      for b in args.batches))


if __name__ == "__main__":
    main()
