"""Training recipe of Appendix B.3, readable in one sitting.

SGD (momentum 0.9, no weight decay), lr divided by 10 every ``lr_step`` epochs, PyTorch's default init.
Ablations and the reduced random-label recipes can choose a one-cycle schedule and AdamW instead.
``precision="bf16"`` runs the forward pass and the loss under bfloat16 autocast: weights, gradients, optimizer state
and BatchNorm's running statistics stay float32 (autocast casts copies of the weights, per op). The accuracies
logged during training are measured in the training's precision (:func:`evaluate_in`); the analyses evaluate in
float32. ``precision="auto"`` (the presets') takes
bfloat16 on a CPU whose bfloat16 matrix products are measured to run at least 1.5x float32's (AVX-512 BF16, AMX:
:func:`bf16_pays`), float32 elsewhere and on GPUs, where its effect has not been measured yet. Whole runs in both,
on this CPU: ``benchmarks/bench_precision.py`` (README).
The training set lives in memory (on the GPU when there is one) as uint8 tensors; random crops (4-pixel zero
padding) and horizontal flips are done on whole batches. Every random draw of epoch e comes from a generator
seeded with (seed, e), so a run resumed from a checkpoint ends with the same weights as an uninterrupted one.

Files in ``out_dir``: ``last.pt`` (resume point, every epoch), ``epoch_000.pt`` (the initial weights),
``epoch_XXX.pt`` (the requested intermediate checkpoints), ``final.pt`` (when done; with the train accuracy
measured in eval mode without augmentation) and ``log.csv`` (one row per epoch). All written atomically.
"""
from __future__ import annotations

import csv
import functools
import io
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .storage import atomic_write, git_commit, load_checkpoint, save_torch

__all__ = ["TrainConfig", "fit", "train", "tensor_batches", "to_float", "evaluate", "evaluate_in", "resolve_device",
           "bf16_pays", "resolve_precision"]

# Inputs are scaled to roughly zero mean and unit variance with fixed constants (the same for every dataset,
# so that networks trained on different data see comparable input statistics).
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


@dataclass
class TrainConfig:
    epochs: int = 90
    lr: float = 0.005
    lr_step: int = 30                  # schedule "step": lr /= 10 every lr_step epochs (B.3)
    schedule: str = "step"             # or "onecycle": linear warm-up to lr over the first quarter, then to 0
    optimizer: str = "sgd"             # "sgd" (with momentum, B.3) or "adamw"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128
    augment: bool = True               # random crop (pad 4) + horizontal flip
    seed: int = 0                      # data order and augmentation (the init seed belongs to the model)
    checkpoint_epochs: tuple = ()      # epochs after which epoch_XXX.pt is kept (learning trajectories)
    channels_last: bool | None = None  # None: on CPU only (faster there; slower on a GPU in float32, README)
    precision: str = "fp32"            # "bf16": forward and loss under bfloat16 autocast; "auto": where it pays
    device: str = "auto"
    eval_batch_size: int = 256         # on a CPU 1.5-1.6x faster than 1000 for the VGGs (bench_eval_batch.py)
    eval_every: int = 1                # test accuracy every n epochs (and always after the last one)
    max_steps: int | None = None       # stop after this many optimiser steps in all (a dry run; None: the epochs)
    train_eval_images: int | None = None  # the final fit is measured on at most this many training images
    extra: dict = field(default_factory=dict)  # free-form metadata stored with the checkpoint

    def __post_init__(self):
        if self.schedule not in ("step", "onecycle"):
            raise ValueError(f"schedule must be 'step' or 'onecycle', got {self.schedule!r}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be 'fp32', 'bf16' (bfloat16 autocast) or 'auto', got {self.precision!r}")

    def lr_at(self, epoch: int) -> float:
        if self.schedule == "step":
            return self.lr * 0.1 ** (epoch // self.lr_step)
        t, warm = (epoch + 0.5) / self.epochs, 0.25  # the middle of the epoch, in [0, 1]
        return self.lr * (t / warm if t < warm else (1 - t) / (1 - warm))

    def make_optimizer(self, params):
        if self.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)


BF16_MIN_SPEEDUP = 1.5


def _gemm_rate(dtype: torch.dtype, n: int = 512, repeats: int = 8) -> float:
    """Multiply-adds per second of an n x n matrix product in ``dtype`` on this process's threads (best of
    ``repeats``)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return n ** 3 / best


def bf16_pays(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 autocast should train on ``device``: on a CPU, when a bfloat16 matrix product is measured to
    run at least ``BF16_MIN_SPEEDUP`` x float32's (CPUs without bfloat16 units emulate it, slower than float32);
    never on a GPU (not measured there yet). The measurement is made once per machine and kept in
    ``<univenc cache>/precision.json``, so that every job of a run takes the same decision."""
    if torch.device(device).type != "cpu":
        return False
    return _cpu_bf16_decision()["bf16"]


@functools.lru_cache(maxsize=1)
def _cpu_bf16_decision() -> dict:
    import json
    import platform

    from .kernels import cache_dir
    path = cache_dir().parent / "precision.json"
    key = f"{platform.node()} {platform.machine()} {platform.processor()} torch {torch.__version__}"
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if key not in known:
        ratio = _gemm_rate(torch.bfloat16) / _gemm_rate(torch.float32)
        known[key] = {"bf16": ratio >= BF16_MIN_SPEEDUP, "bf16_over_fp32": round(ratio, 2)}
        try:
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(known, indent=1)))
        except OSError:  # a read-only cache: decide again in each process
            pass
    return known[key]


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16": ``precision`` itself, or for "auto" what :func:`bf16_pays` decides on ``device``."""
    if precision == "auto":
        return "bf16" if bf16_pays(device) else "fp32"
    return precision


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, 3, H, W) -> normalised float32."""
    return (images.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop with ``pad``-pixel zero padding and random horizontal flip, on a uint8 batch (B, C, H, W)."""
    B, C, H, W = images.shape
    dev = images.device
    shifts = torch.randint(0, 2 * pad + 1, (2, B), generator=generator).to(dev)
    flips = (torch.rand(B, generator=generator) < 0.5).to(dev)
    rows = shifts[0][:, None] + torch.arange(H, device=dev)  # (B, H)
    cols = shifts[1][:, None] + torch.arange(W, device=dev)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(-1), cols)
    # one gather along the flattened padded image, the same for every channel: 3.6-4.6x faster on a CPU than
    # indexing with four broadcast index tensors (benchmarks/bench_step_parts.py)
    pixels = (rows[:, :, None] * (W + 2 * pad) + cols[:, None, :]).view(B, 1, H * W)
    padded = F.pad(images, (pad, pad, pad, pad)).flatten(2)
    return padded.gather(2, pixels.expand(B, C, H * W)).view(B, C, H, W)


def tensor_batches(images, labels, batch_size: int, augment: bool, generator: torch.Generator | None,
                   device: torch.device, shuffle: bool = True):
    """Yield (float images, labels) batches from uint8 tensors, shuffled and augmented with ``generator``."""
    n = len(labels)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size].to(images.device)
        x = images[idx]
        if augment:
            x = augment_batch(x, generator)
        yield to_float(x.to(device, non_blocking=True)), labels[idx].to(device, non_blocking=True)


@torch.no_grad()
def evaluate(model, batches) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over an iterable of (x, y) batches."""
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    for x, y in batches:
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
        count += len(y)
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no batches: the evaluation data is empty")
    return loss / count, correct / count


def autocast_in(precision: str, device: torch.device):
    """The autocast context of a training's precision on ``device``: bfloat16 for "bf16", off for "fp32"."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def evaluate_in(precision: str, model, batches) -> tuple[float, float]:
    """:func:`evaluate` in a training's precision ("fp32" or "bf16"): a network trained under bfloat16 autocast is
    tested under it too, about 1.6x faster on a CPU with bfloat16 units (``benchmarks/bench_eval_precision.py``)."""
    with autocast_in(precision, next(model.parameters()).device):
        return evaluate(model, batches)


def _log_csv(rows) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _resume(model, opt, out_dir) -> tuple[list, int]:
    """Load ``out_dir/last.pt`` into ``model`` and ``opt`` when it exists; returns its log and epoch ([], 0 if not)."""
    if out_dir is None or not (out_dir / "last.pt").exists():
        return [], 0
    ckpt = load_checkpoint(out_dir / "last.pt")
    model.load_state_dict(ckpt["state_dict"])
    opt.load_state_dict(ckpt["optimizer"])
    return ckpt["log"], ckpt["epoch"]


def _train_epoch(model, opt, batches, precision, device, channels_last, steps_left) -> tuple[float, int, int, int]:
    """One pass over ``batches``, of at most ``steps_left`` optimiser steps (None: all of them). Returns the loss
    summed over the images, the number classified correctly, the number of images and the steps taken."""
    model.train()
    # Running sums stay on the device: reading them every step would make the CPU wait for the GPU.
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = steps = 0
    for x, y in batches:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_in(precision, device):
            out = model(x)
            loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * len(y)
        correct += (out.argmax(1) == y).sum()
        count += len(y)
        steps += 1
        if steps_left is not None and steps >= steps_left:
            break
    if count == 0:
        raise ValueError("the training data yielded no batch: is the training set empty?")
    return loss_sum.item(), correct.item(), count, steps


def _check_finite(model, loss_sum: float, epoch: int):
    """Raise FloatingPointError when the epoch's loss or any weight is NaN or inf."""
    if not math.isfinite(loss_sum):
        raise FloatingPointError(f"training loss became {loss_sum} at epoch {epoch}: lower the lr")
    not_finite = [name for name, q in model.named_parameters() if not torch.isfinite(q).all()]
    if not_finite:  # a finite loss does not prove finite weights: taps that see only padding never reach it
        raise FloatingPointError(f"weights of {', '.join(not_finite[:3])} became NaN or inf at epoch {epoch}, "
                                 f"with a finite loss: a wrong gradient (another precision may avoid it)")


def fit(model, train_batches, eval_batches, cfg: TrainConfig, out_dir=None, meta: dict | None = None,
        progress: bool = True, stop_after: int | None = None, train_eval_batches=None) -> dict:
    """Train ``model`` in place; resume from ``out_dir/last.pt`` when it exists.

    train_batches : callable(epoch, generator) -> iterable of (x, y) batches on the model's device.
    eval_batches : callable() -> iterable of (x, y) test batches.
    stop_after : stop after this many epochs of this call (used to test interruption and resume).
    cfg.max_steps : end the whole training after this many optimiser steps, within an epoch if need be (a dry run).
    train_eval_batches : callable() -> the training images without augmentation; the final checkpoint then
        holds ``train_eval_acc``, the accuracy on them in eval mode (how well the labels were fitted).
    Returns the final checkpoint dict (``state_dict``, ``config``, ``log``, ``commit``, ...).
    """
    device = resolve_device(cfg.device)
    model.to(device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cpu"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = cfg.make_optimizer(params)
    out_dir = Path(out_dir) if out_dir is not None else None
    log, start = _resume(model, opt, out_dir)
    precision = resolve_precision(cfg.precision, device)
    config = {"train": {**asdict(cfg), "precision": precision}, **(meta or {})}
    if hasattr(model, "config"):  # univenc's models describe themselves: the checkpoint rebuilds them
        config.setdefault("model", model.config)

    def checkpoint(epoch):
        return {"state_dict": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "log": log,
                "config": config, "commit": git_commit(), "torch": torch.__version__}

    if out_dir is not None and start == 0:
        save_torch(checkpoint(0), out_dir / "epoch_000.pt")  # the initial weights: epoch 0 of a trajectory
    bar = tqdm(range(start, cfg.epochs), initial=start, total=cfg.epochs, disable=not progress,
               desc=(meta or {}).get("name", "train"), leave=False)
    steps = sum(r.get("steps", 0) for r in log)
    last = cfg.epochs
    for epoch in bar:
        if cfg.max_steps is not None and steps >= cfg.max_steps:  # resumed after its last step
            last = epoch
            break
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(epoch)
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        steps_left = None if cfg.max_steps is None else cfg.max_steps - steps
        loss_sum, correct, count, taken = _train_epoch(model, opt, train_batches(epoch, gen), precision, device,
                                                       channels_last, steps_left)
        steps += taken
        if steps_left is not None and taken >= steps_left:
            last = epoch + 1
        _check_finite(model, loss_sum, epoch + 1)
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == last:
            test_loss, test_acc = evaluate_in(precision, model, eval_batches())
        else:
            test_loss = test_acc = float("nan")
        log.append({"epoch": epoch + 1, "lr": cfg.lr_at(epoch), "loss": loss_sum / count,
                    "train_acc": correct / count, "test_loss": test_loss, "test_acc": test_acc,
                    "seconds": time.perf_counter() - t0, "steps": steps})
        bar.set_postfix(loss=f"{loss_sum / count:.3f}", train=f"{correct / count:.3f}")
        if out_dir is not None:
            ckpt = checkpoint(epoch + 1)
            if epoch + 1 in cfg.checkpoint_epochs:
                save_torch(ckpt, out_dir / f"epoch_{epoch + 1:03d}.pt")
            save_torch(ckpt, out_dir / "last.pt")
            atomic_write(out_dir / "log.csv", lambda tmp: Path(tmp).write_text(_log_csv(log)))
        if epoch + 1 == last:
            break
        if stop_after is not None and epoch + 1 - start >= stop_after:
            return checkpoint(epoch + 1)
    final = checkpoint(last)
    if train_eval_batches is not None:
        final["train_eval_acc"] = evaluate_in(precision, model, train_eval_batches())[1]
    if out_dir is not None:
        save_torch(final, out_dir / "final.pt")
    return final


def train(model, data, cfg: TrainConfig, out_dir=None, meta=None, progress=True, stop_after=None) -> dict:
    """Train on an in-memory :class:`univenc.data.TaskData` (uint8 tensors moved to the training device once)."""
    device = resolve_device(cfg.device)
    xtr, ytr = data.train_images.to(device), data.train_labels.to(device)
    xte, yte = data.test_images.to(device), data.test_labels.to(device)

    def train_batches(epoch, gen):
        return tensor_batches(xtr, ytr, cfg.batch_size, cfg.augment, gen, device)

    def eval_batches():
        return tensor_batches(xte, yte, cfg.eval_batch_size, False, None, device, shuffle=False)

    def train_eval_batches():
        n = cfg.train_eval_images
        return tensor_batches(xtr[:n], ytr[:n], cfg.eval_batch_size, False, None, device, shuffle=False)

    return fit(model, train_batches, eval_batches, cfg, out_dir, meta, progress, stop_after, train_eval_batches)
