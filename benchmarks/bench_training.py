"""Training throughput, in one run on real CIFAR-10 batches at the cpu preset's width:
- factorized VGG-11 with the fast block (compiled CPU kernels; and without them, when it computes what the naive
  block computes) vs the naive block (Appendix B.2 literally) vs the standard VGG-11, taking turns batch by batch,
  median step time;
- the in-memory tensor pipeline vs torchvision's DataLoader + PIL transforms, one epoch on the same model.

    python benchmarks/bench_training.py [--width 0.25] [--images 5000] [--device cuda] [--workers 0 2]

On a GPU the compiled kernels do not apply and the fast block runs the naive computation; steps are timed with
synchronisation.
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

DEVICE = torch.device("cpu")

try:
    import resource

    def minor_page_faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
except ImportError:  # Windows has no resource module
    def minor_page_faults():
        return float("nan")


def train_step(model, opt, x, y, channels_last):
    x, y = x.to(DEVICE, non_blocking=True), y.to(DEVICE, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def interleaved_images_per_second(builders, batches, channels_last, rounds=3):
    """Median images/s and median minor page faults per step of each model, training on the same batches; the
    models take turns batch by batch so that a slower or busier moment of the machine falls on all of them
    alike. (Page faults: memory that the allocator returned to the OS and takes back, at ~9x the cost of
    writing to memory already mapped, on the 2-core VM measured.)"""
    models = {}
    for label, (build, use_kernels) in builders.items():
        torch.manual_seed(0)
        m = build().to(DEVICE)
        m = m.to(memory_format=torch.channels_last) if channels_last else m
        models[label] = (m, torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9),
                         use_kernels)
    seconds, faults = {label: [] for label in models}, {label: [] for label in models}
    for r in range(rounds):
        for i, (x, y) in enumerate(batches):
            for label, (m, opt, use_kernels) in models.items():
                with contextlib.nullcontext() if use_kernels else kernels.disabled():
                    sync()
                    f, t = minor_page_faults(), time.perf_counter()
                    train_step(m, opt, x, y, channels_last)
                    sync()
                    if r > 0 or i >= 2:  # warm-up
                        seconds[label].append(time.perf_counter() - t)
                        faults[label].append(minor_page_faults() - f)
    return ({label: len(batches[0][1]) / statistics.median(s) for label, s in seconds.items()},
            {label: statistics.median(v) for label, v in faults.items()})


def epoch_seconds(model, batches, channels_last=True):
    model.train().to(DEVICE)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    sync()
    t = time.perf_counter()
    for x, y in batches:
        train_step(model, opt, x, y, channels_last)
    sync()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to compare")
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    x, y = load_dataset("cifar10", train=True)
    x, y = x[: args.images].to(DEVICE), y[: args.images].to(DEVICE)  # the pipeline keeps the data on the device

    def batches():
        return list(tensor_batches(x, y, 128, True, torch.Generator().manual_seed(0), DEVICE))

    on_cpu = DEVICE.type == "cpu"
    print(f"width {args.width}, {args.images} CIFAR-10 images, batch 128, device {DEVICE}, "
          f"{torch.get_num_threads()} threads; compiled kernels: "
          + ("yes" if on_cpu and kernels.load(torch.float32) else
             "no (not on CPU, no C compiler, or UNIVENC_NO_KERNELS set)"))
    builders = {"standard": (lambda: VGG(width=args.width), True),
                "factorized fast": (lambda: VGG(width=args.width, factorized=True), True),
                "factorized, no kernels": (lambda: VGG(width=args.width, factorized=True), False),
                "factorized naive": (lambda: VGG(width=args.width, factorized=True, naive=True), True)}
    if not on_cpu:  # the kernels are CPU-only: "fast" already runs without them
        del builders["factorized, no kernels"]
    for cl in (True, False):
        rates, faults = interleaved_images_per_second(builders, batches(), cl)
        fast = rates["factorized fast"]
        print(f"[{'channels_last' if cl else 'NCHW'}] median images/s: "
              + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
              + "\n    median page faults per step: " + ", ".join(f"{k} {v:.0f}" for k, v in faults.items())
              + f"\n    fast/naive {fast / rates['factorized naive']:.2f}x"
              + (f" (no kernels {rates['factorized, no kernels'] / rates['factorized naive']:.2f}x)"
                 if on_cpu else "")
              + f" | fast is {rates['standard'] / fast:.2f}x slower than standard")

    from torchvision import datasets, transforms
    from torch.utils.data import DataLoader, Subset
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.25,) * 3)])
    ds = Subset(datasets.CIFAR10(str(data_root()), train=True, download=False, transform=tf), range(args.images))
    torch.manual_seed(0)
    t_tensor = epoch_seconds(VGG(width=args.width), tensor_batches(x, y, 128, True, torch.Generator().manual_seed(0),
                                                                   DEVICE))
    for workers in args.workers:
        torch.manual_seed(0)
        loader = DataLoader(ds, batch_size=128, shuffle=True, num_workers=workers, pin_memory=not on_cpu)
        t_loader = epoch_seconds(VGG(width=args.width), loader)
        print(f"epoch of {args.images} images, standard VGG: in-memory tensor pipeline {t_tensor:.1f}s, DataLoader+PIL "
              f"({workers} workers) {t_loader:.1f}s -> {t_loader / t_tensor:.2f}x")


if __name__ == "__main__":
    main()
