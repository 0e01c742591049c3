"""Activation-based alignment of two networks (Sec. 3.1): orthogonal Procrustes on the layers' inputs.

For a pair of layers, A = argmin_{A^T A = I} E ||A phi_a(x) - phi_b(x)||^2 = U V^T with U S V^T the SVD of the
cross-covariance E[phi_b phi_a^T]. It is accumulated over a data loader in one pass for all layers (forward
pre-hooks; for a conv input every spatial position of every image is a sample), in O(d_a d_b) memory per layer
whatever the number of images. A neuron w of network a is then compared with network b's as A w.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

__all__ = ["analysed_layers", "pair_layers", "InputStatistics", "accumulate_input_statistics",
           "accumulate_pair_statistics", "procrustes", "LayerPairingError"]


class LayerPairingError(ValueError):
    """The layers of two networks cannot be paired."""


def analysed_layers(model: nn.Module, include_linear: bool = False):
    """(name, module) of the layers whose weights are compared, in module order: every nn.Conv2d with
    groups == 1 (depthwise and grouped convs have no Cin x Cin channel covariance), plus nn.Linear layers
    when ``include_linear``."""
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    layers = [(n, m) for n, m in model.named_modules()
              if isinstance(m, kinds) and getattr(m, "groups", 1) == 1]
    if not layers:
        raise LayerPairingError(f"{type(model).__name__} has no nn.Conv2d layer (with groups=1) to analyse")
    return layers


def pair_layers(net_a: nn.Module, net_b: nn.Module, include_linear: bool = False, pairs=None, by: str = "auto",
                input_size=None):
    """Pair the analysed layers of two networks: a list of ((name_a, module_a), (name_b, module_b)).

    pairs : explicit [(name_a, name_b), ...].
    by : "name" (two networks of one architecture), "order" (the same number of layers), "map" (two architectures:
        the conv layers of each input map size, a stage, paired at the same relative depth within it, as many as
        the shorter stage has; layers of a map size the other network does not have stay unpaired), or "auto":
        name when both networks have the same layer names, else order when they have as many layers of the same
        kinds and kernel sizes, else map.
    input_size : (C, H, W) of both networks' input, for "map" (default: each network's own, as
        :func:`univenc.spatial.default_input_size` knows it, else 3 x 32 x 32).
    Raises :class:`LayerPairingError` when names are unknown, when "order" meets layers of different kinds, or when
    no pair can be formed."""
    la, lb = analysed_layers(net_a, include_linear), analysed_layers(net_b, include_linear)
    if by not in ("auto", "name", "order", "map"):
        raise ValueError(f"by must be 'auto', 'name', 'order' or 'map', got {by!r}")
    if pairs is not None:
        da, db = dict(la), dict(lb)
        unknown = [f"{a} (network a)" for a, _ in pairs if a not in da] + \
                  [f"{b} (network b)" for _, b in pairs if b not in db]
        if unknown:
            raise LayerPairingError(f"cannot pair: no analysed layer named {', '.join(unknown)}; the analysed "
                                    f"layers are a: {', '.join(da)}; b: {', '.join(db)}")
        return [((a, da[a]), (b, db[b])) for a, b in pairs]
    same_kinds = len(la) == len(lb) and all(_kind(ma) == _kind(mb) for (_, ma), (_, mb) in zip(la, lb))
    if by == "name" or (by == "auto" and {n for n, _ in la} == {n for n, _ in lb}):
        db = dict(lb)
        missing = [n for n, _ in la if n not in db]
        if missing:
            raise LayerPairingError(f"cannot pair by name: network b has no layer {', '.join(missing)}")
        return [((n, m), (n, db[n])) for n, m in la]
    if by == "order" or (by == "auto" and same_kinds):
        if len(la) != len(lb):
            raise LayerPairingError(
                f"cannot pair layers: network a has {len(la)} analysed layers ({', '.join(n for n, _ in la)}) and "
                f"network b has {len(lb)} ({', '.join(n for n, _ in lb)}). Compare networks of the same depth, pass "
                f"pairs=[(name_a, name_b), ...] (--pairs a=b,...), or pair by input map size (by='map').")
        for (na, ma), (nb, mb) in zip(la, lb):
            if _kind(ma) != _kind(mb):
                raise LayerPairingError(f"cannot pair layer {na} ({ma}) of network a with {nb} ({mb}) of network "
                                        f"b: layer types or kernel sizes differ")
        return list(zip(la, lb))
    return _pair_by_map(net_a, net_b, la, lb, input_size)


def _kind(m: nn.Module):
    return type(m), getattr(m, "kernel_size", None)


def _stages(net: nn.Module, layers, input_size) -> dict:
    """{input map size: [(name, module), ...] in module order} of the conv layers among ``layers``."""
    from .spatial import default_input_size, layer_input_sizes

    sizes = layer_input_sizes(net, input_size or default_input_size(net) or (3, 32, 32))
    stages = {}
    for name, m in layers:
        if isinstance(m, nn.Conv2d) and name in sizes:
            stages.setdefault(sizes[name], []).append((name, m))
    return stages


def _pair_by_map(net_a, net_b, la, lb, input_size):
    sa, sb = _stages(net_a, la, input_size), _stages(net_b, lb, input_size)
    paired = []
    for size in sorted(set(sa) & set(sb), key=lambda hw: -hw[0] * hw[1]):  # from the largest maps down
        a, b = sa[size], sb[size]
        short, long_, flip = (a, b, False) if len(a) <= len(b) else (b, a, True)
        for i, layer in enumerate(short):  # the same relative depth within the stage (the last ones meet)
            j = round((i + 1) * len(long_) / len(short)) - 1
            paired.append((long_[j], layer) if flip else (layer, long_[j]))
    if not paired:
        raise LayerPairingError(f"cannot pair layers: the two networks' conv layers share no input map size (a: "
                                f"{sorted(sa)}, b: {sorted(sb)}). Pass pairs=[(name_a, name_b), ...] (--pairs).")
    return paired


@dataclass
class InputStatistics:
    """Second moments of the inputs of one pair of layers, summed over ``count`` samples (float64).

    cross : (d_b, d_a) sum of phi_b phi_a^T.
    sq_a, sq_b : sums of |phi_a|^2 and |phi_b|^2 (for the alignment residual).
    cov_a, cov_b : (d_a, d_a), (d_b, d_b) sums of phi phi^T, only with ``full=True``.
    """
    cross: np.ndarray
    count: int = 0
    sq_a: float = 0.0
    sq_b: float = 0.0
    cov_a: np.ndarray | None = None
    cov_b: np.ndarray | None = None
    names: tuple = field(default=("", ""))

    def residual(self, rotation: np.ndarray) -> float:
        """E||A phi_a - phi_b||^2 / (E|phi_a|^2 + E|phi_b|^2) for a (semi-)orthogonal A: 1 for orthogonal
        inputs, 0 for a perfect match. (Exact for A^T A = I; an upper bound on the norm term otherwise.)"""
        num = self.sq_a + self.sq_b - 2 * float(np.sum(rotation * self.cross))
        return num / (self.sq_a + self.sq_b)


def _samples(x: torch.Tensor) -> torch.Tensor:
    """Layer input -> (samples, channels): a conv input (N, C, H, W) gives N*H*W samples."""
    if x.dim() == 4:
        return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    return x.reshape(-1, x.shape[-1])


def accumulate_input_statistics(net_a, net_b, batches, pairs=None, full: bool = False,
                                max_batches: int | None = None, progress: bool = True):
    """One pass over ``batches`` (tensors x, or tuples whose first item is x) through both networks, in eval
    mode, accumulating an :class:`InputStatistics` per layer pair (``pairs``: default :func:`pair_layers`).
    Products are formed in the activations' dtype, on network a's device, and summed in float64."""
    pairs = pair_layers(net_a, net_b) if pairs is None else pairs
    return accumulate_pair_statistics({"a": net_a, "b": net_b}, {("a", "b"): pairs}, batches, full, max_batches,
                                      progress)[("a", "b")]


def _sum_of_squares(p: torch.Tensor) -> float:
    """|p|^2 summed over all entries of p (samples, d), as a Python float: per-column sums in p's dtype (torch's
    cascade summation), added up in float64: within about 1e-8 of summing a float64 copy of p, without writing one
    (the copy cost 8% of a pass of 28 pairs, ``benchmarks/bench_pair_pass.py``)."""
    return float(p.square().sum(0).double().sum())


def _add_batch(stats: dict, layer_pairs: dict, captured: dict, full: bool):
    """Add one batch's layer inputs ``captured`` ({id(module): (samples, d)}) to the sums ``stats`` of every layer
    pair (:func:`accumulate_pair_statistics`)."""
    squares = {key: _sum_of_squares(p) for key, p in captured.items()}
    for pair, layers in layer_pairs.items():
        for i, ((na, ma), (nb, mb)) in enumerate(layers):
            pa = captured[id(ma)]
            pb = captured[id(mb)].to(pa.device)
            if len(pa) != len(pb):
                raise LayerPairingError(
                    f"layers {na} and {nb} cannot be aligned: their inputs hold {len(pa)} and {len(pb)} samples "
                    f"per batch (input maps of other sizes, or tokens against pixels). Pair layers that see inputs "
                    f"of the same size.")
            s = stats[pair][i]
            if s is None:
                s = stats[pair][i] = InputStatistics(np.zeros((pb.shape[1], pa.shape[1])), names=(na, nb))
            s.cross += (pb.T @ pa).double().cpu().numpy()
            s.count += len(pa)
            s.sq_a += squares[id(ma)]
            s.sq_b += squares[id(mb)]
            if full:
                ca, cb = (pa.T @ pa).double().cpu().numpy(), (pb.T @ pb).double().cpu().numpy()
                s.cov_a = ca if s.cov_a is None else s.cov_a + ca
                s.cov_b = cb if s.cov_b is None else s.cov_b + cb


@torch.no_grad()
def accumulate_pair_statistics(nets: dict, layer_pairs: dict, batches, full: bool = False,
                               max_batches: int | None = None, progress: bool = True) -> dict:
    """:func:`accumulate_input_statistics` of several pairs of networks in one pass over ``batches``: each
    network runs once per batch however many pairs it belongs to (n networks compared pairwise cost n forward
    passes per batch, not n (n - 1)), with the same sums as pair by pair.

    nets : {key: network}.
    layer_pairs : {(key_a, key_b): [((name_a, module_a), (name_b, module_b)), ...]} (:func:`pair_layers`).
    Returns {(key_a, key_b): [InputStatistics per layer pair]}. Memory: one batch's inputs of every paired layer
    of every network; smaller batches use less.
    """
    modules = {id(m): m for layers in layer_pairs.values() for (_, ma), (_, mb) in layers for m in (ma, mb)}
    used = {id(nets[k]): nets[k] for pair in layer_pairs for k in pair}  # a network given twice runs once
    captured = {}

    def hook(key):
        def fn(module, inputs):
            captured[key] = _samples(inputs[0])
        return fn

    handles = [m.register_forward_pre_hook(hook(key)) for key, m in modules.items()]
    modes = {key: net.training for key, net in used.items()}
    for net in used.values():
        net.eval()
    stats = {pair: [None] * len(layers) for pair, layers in layer_pairs.items()}
    seen = 0
    try:
        for step, batch in enumerate(tqdm(batches, disable=not progress, desc="alignment", leave=False)):
            if max_batches is not None and step >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            for net in used.values():
                net(x.to(next(net.parameters()).device))
            seen += 1
            _add_batch(stats, layer_pairs, captured, full)
            captured.clear()
    finally:
        for h in handles:
            h.remove()
        for key, net in used.items():
            net.train(modes[key])
    if seen == 0:
        raise ValueError("the data loader yielded no batch: alignment needs input images")
    return stats


# From this size on, the SVD runs on a CUDA GPU when there is one: at the paper's widths a factorized layer's input
# has d = 5120 dimensions, and one 5120 x 5120 SVD takes about 50 s on a 2-core CPU.
GPU_SVD_FROM = 1024


def procrustes(cross: np.ndarray) -> np.ndarray:
    """Orthogonal Procrustes rotation A (d_b, d_a) from the cross-covariance E[phi_b phi_a^T] (d_b, d_a):
    A = U V^T, maximising tr(A^T cross). Semi-orthogonal when d_a != d_b (A^T A = I if d_b >= d_a). In float64;
    large ones on a CUDA GPU when there is one."""
    cross = np.asarray(cross, float)
    if not np.all(np.isfinite(cross)):
        raise ValueError("the cross-covariance has non-finite entries: do the networks produce NaN activations?")
    if min(cross.shape) >= GPU_SVD_FROM and torch.cuda.is_available():
        u, _, vt = torch.linalg.svd(torch.from_numpy(cross).cuda(), full_matrices=False)
        return (u @ vt).cpu().numpy()
    u, _, vt = np.linalg.svd(cross, full_matrices=False)
    return u @ vt
