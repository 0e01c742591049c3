"""Training throughput, in one run on real CIFAR-10 batches at the cpu preset's width:
- factorized VGG-11 with the fast block vs the naive block (Appendix B.2 literally) vs the standard VGG-11;
- the in-memory tensor pipeline vs torchvision's DataLoader + PIL transforms, one epoch on the same model.

    python benchmarks/bench_training.py [--width 0.25] [--images 5000]
"""
import argparse
import time

import torch
import torch.nn.functional as F

from univenc.data import data_root, load_dataset
from univenc.models import VGG
from univenc.training import tensor_batches


def steps_per_second(model, batches, channels_last):
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    n = 0
    for i, (x, y) in enumerate(batches):
        if i == 2:  # warm-up
            t, n = time.perf_counter(), 0
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(y)
    return n / (time.perf_counter() - t)


def epoch_seconds(model, batches, channels_last=True):
    t = time.perf_counter()
    steps_per_second(model, batches, channels_last)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--images", type=int, default=5000)
    args = ap.parse_args()
    x, y = load_dataset("cifar10", train=True)
    x, y = x[: args.images], y[: args.images]

    def batches():
        return list(tensor_batches(x, y, 128, True, torch.Generator().manual_seed(0), torch.device("cpu")))

    print(f"width {args.width}, {args.images} CIFAR-10 images, batch 128, {torch.get_num_threads()} threads")
    for cl in (True, False):
        rates = {}
        for label, kw in (("standard", {}), ("factorized fast", {"factorized": True}),
                          ("factorized naive", {"factorized": True, "naive": True})):
            torch.manual_seed(0)
            rates[label] = steps_per_second(VGG(width=args.width, **kw), batches(), cl)
        print(f"[{'channels_last' if cl else 'NCHW'}] images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + f" | fast/naive {rates['factorized fast'] / rates['factorized naive']:.2f}x"
              + f" | standard/fast {rates['standard'] / rates['factorized fast']:.2f}x slower")

    from torchvision import datasets, transforms
    from torch.utils.data import DataLoader, Subset
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    ds = Subset(datasets.CIFAR10(str(data_root()), train=True, download=False, transform=tf), range(args.images))
    torch.manual_seed(0)
    t_tensor = epoch_seconds(VGG(width=args.width), tensor_batches(x, y, 128, True, torch.Generator().manual_seed(0),
                                                                   torch.device("cpu")))
    for workers in (0, 2):
        torch.manual_seed(0)
        loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers)
        t_loader = epoch_seconds(VGG(width=args.width), loader)
        print(f"epoch of {args.images} images, standard VGG: in-memory tensor pipeline {t_tensor:.1f}s, DataLoader+PIL "
              f"({workers} workers) {t_loader:.1f}s -> {t_loader / t_tensor:.2f}x")


if __name__ == "__main__":
    main()
