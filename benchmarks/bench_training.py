"""Training throughput, in one run on real CIFAR-10 batches at the cpu preset's width:
- factorized VGG-11 with the fast block (compiled CPU kernels, and its pure-PyTorch path) vs the naive block
  (Appendix B.2 literally) vs the standard VGG-11, taking turns batch by batch, median step time;
- the in-memory tensor pipeline vs torchvision's DataLoader + PIL transforms, one epoch on the same model.

    python benchmarks/bench_training.py [--width 0.25] [--images 5000]
"""
import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

from univenc import kernels
from univenc.data import data_root, load_dataset
from univenc.models import VGG
from univenc.training import tensor_batches

try:
    import resource

    def minor_page_faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
except ImportError:  # Windows has no resource module
    def minor_page_faults():
        return float("nan")


def train_step(model, opt, x, y, channels_last):
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def interleaved_images_per_second(builders, batches, channels_last, rounds=3):
    """Median images/s and median minor page faults per step of each model, training on the same batches; the
    models take turns batch by batch so that a slower or busier moment of the machine falls on all of them
    alike. (Page faults: memory that the allocator returned to the OS and takes back, at ~9x the cost of
    writing to memory already mapped, on the 2-core VM measured.)"""
    models = {}
    for label, (build, use_kernels) in builders.items():
        torch.manual_seed(0)
        m = build().to(memory_format=torch.channels_last) if channels_last else build()
        models[label] = (m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9),
                         use_kernels)
    seconds, faults = {label: [] for label in models}, {label: [] for label in models}
    for r in range(rounds):
        for i, (x, y) in enumerate(batches):
            for label, (m, opt, use_kernels) in models.items():
                with contextlib.nullcontext() if use_kernels else kernels.disabled():
                    f, t = minor_page_faults(), time.perf_counter()
                    train_step(m, opt, x, y, channels_last)
                    if r > 0 or i >= 2:  # warm-up
                        seconds[label].append(time.perf_counter() - t)
                        faults[label].append(minor_page_faults() - f)
    return ({label: len(batches[0][1]) / statistics.median(s) for label, s in seconds.items()},
            {label: statistics.median(v) for label, v in faults.items()})


def epoch_seconds(model, batches, channels_last=True):
    model.train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    t = time.perf_counter()
    for x, y in batches:
        train_step(model, opt, x, y, channels_last)
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

    print(f"width {args.width}, {args.images} CIFAR-10 images, batch 128, {torch.get_num_threads()} threads; "
          f"compiled kernels: {'yes' if kernels.load(torch.float32) else 'no (no C compiler, or UNIVENC_NO_KERNELS set)'}")
    builders = {"standard": (lambda: VGG(width=args.width), True),
                "factorized fast": (lambda: VGG(width=args.width, factorized=True), True),
                "factorized fast, PyTorch path": (lambda: VGG(width=args.width, factorized=True), False),
                "factorized naive": (lambda: VGG(width=args.width, factorized=True, naive=True), True)}
    for cl in (True, False):
        rates, faults = interleaved_images_per_second(builders, batches(), cl)
        fast = rates["factorized fast"]
        print(f"[{'channels_last' if cl else 'NCHW'}] median images/s: "
              + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + "\n    median page faults per step: " + ", ".join(f"{k} {v:.0f}" for k, v in faults.items())
              + f"\n    fast/naive {fast / rates['factorized naive']:.2f}x (PyTorch path "
              + f"{rates['factorized fast, PyTorch path'] / rates['factorized naive']:.2f}x)"
              + f" | fast is {rates['standard'] / fast:.2f}x slower than standard")

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
