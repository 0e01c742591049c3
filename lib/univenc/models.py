"""The paper's simplified VGG-11 (Appendix B.1) and factorized VGG-11 (Appendix B.2).

Both are registered with timm: ``timm.create_model("univenc_vgg11", num_classes=10, kernel_size=5)`` and
``timm.create_model("univenc_vgg11_factorized", num_classes=10)`` once ``univenc.models`` is imported.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import re
import sys
import weakref
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import kernels
from .storage import load_checkpoint

__all__ = ["VGG", "Conv2d", "conv_as_gemm", "conv_gemm_weight_grad", "unfold_windows", "crop_to_seen_taps",
           "conv_output_size", "sees_only_padding", "guard_padding_taps", "FactorizedBlock", "NaiveFactorizedBlock",
           "vgg11", "factorized_vgg11", "resnet18", "convnext_atto",
           "vit_tiny32", "ARCHITECTURES", "declare_kaiming_fan_out", "model_from_config", "load_checkpoint_model",
           "checkpoint_epoch", "for_inference", "canonical_spatial_filters", "VGG11_CHANNELS",
           "CANONICAL_FILTERS_FILE"]

# Configuration "A": 8 conv layers; "M" is a 2x2 max-pool.
VGG11_CHANNELS = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
CANONICAL_FILTERS_FILE = Path(__file__).resolve().parent / "resources" / "spatial_filters_k3.npz"


def canonical_spatial_filters(path=None) -> torch.Tensor:
    """The first 5 universal spatial eigenvectors f1..f5 as a (5, k, k) float32 tensor.

    Default: the 3x3 set shipped with the package (its ``provenance`` entry says which trained networks it
    was computed from). Notebook 02 writes the same format from the networks it analyses."""
    with np.load(path or CANONICAL_FILTERS_FILE) as f:
        return torch.as_tensor(f["filters"][:5], dtype=torch.float32)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with three changes under CPU autocast, where oneDNN's bfloat16 convolutions fail or crawl on
    small maps:

    - taps that see only padding (at every output position: a 7x7 kernel on 2x2 maps) are cut from the kernel
      (:func:`crop_to_seen_taps`): the same convolution, and those taps' gradient is exactly 0. oneDNN's bfloat16
      weight gradient is wrong there: measured with PyTorch 2.14.1 on 2x2 maps, 7x7 kernels and 128 channels, it
      put values up to 1e3 on those taps, and a VGG-11 with k = 7 ended with weights of 1e37 and NaN in its last
      two layers. Where the cut would need uneven padding, or leave such a tap inside the kernel, it runs in
      float32 instead;
    - where its output map is 1x1 (a ResNet-18's layer4 on 32x32 inputs), it runs as one GEMM
      (:func:`conv_as_gemm`): oneDNN's bfloat16 convs there were most of a ResNet-18's step;
    - on other output maps of at most ``GEMM_WEIGHT_GRAD_MAX_POSITIONS`` positions (4x4 and 2x2), its weight
      gradient is one GEMM over the unfolded input (:func:`conv_gemm_weight_grad`); its forward and input
      gradient stay oneDNN's.

    Training in float32 on a CPU (autocast off, gradients on) takes the same cut and the same GEMMs in float32:
    the same convolution up to float32 rounding; the ConvNeXt's float32 step 1.35x faster on one thread of an Intel
    Xeon with AMX (``benchmarks/bench_kernels.py --arch convnext``). ``benchmarks/README.md`` has the timings.
    Elsewhere (no autocast and no gradients: the analyses' passes; other devices) it is ``nn.Conv2d``."""

    def forward(self, x):
        if x.device.type != "cpu":
            return super().forward(x)
        autocast = torch.is_autocast_enabled("cpu")
        if not autocast and not (torch.is_grad_enabled() and x.dtype == torch.float32):
            return super().forward(x)
        if self.padding_mode != "zeros" or isinstance(self.padding, str) or self.dilation != (1, 1):
            pads = (self.padding,) * 2 if isinstance(self.padding, str) else self.padding  # "same", "valid": both axes
            if any(sees_only_padding(*args) for args in zip(x.shape[-2:], self.kernel_size, self.stride, pads,
                                                              self.dilation)):
                return self._in_float32(x)
            return super().forward(x)
        weight, pads = crop_to_seen_taps(self.weight, x.shape[-2:], self.stride, self.padding)
        if weight is None:
            return self._in_float32(x)
        bias = self.bias
        if autocast:
            dtype = torch.get_autocast_dtype("cpu")
            bias = None if bias is None else bias.to(dtype)
            x, weight = x.to(dtype), weight.to(dtype)
        positions = np.prod(conv_output_size(x.shape[-2:], weight.shape[-2:], self.stride, pads))
        if self.groups == 1 and positions == 1:
            return conv_as_gemm(x, weight, bias, self.stride, pads)
        if self.groups == 1 and positions <= GEMM_WEIGHT_GRAD_MAX_POSITIONS and torch.is_grad_enabled():
            return conv_gemm_weight_grad(x, weight, bias, self.stride, pads)
        return F.conv2d(x, weight, bias, self.stride, pads, 1, self.groups)

    def _in_float32(self, x):
        with torch.autocast("cpu", enabled=False):
            return super().forward(x.float())


def conv_output_size(size, kernel_size, stride, padding) -> tuple:
    """(height, width) of a convolution's output (dilation 1, integer padding) on inputs of ``size``."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel_size, stride, padding))


@functools.lru_cache(maxsize=None)
def _seen_taps(size: int, k: int, stride: int, pad: int) -> tuple | None:
    """Along one axis: (first tap, taps kept, padding) of the kernel cut to the taps that see the input at some output
    position, which computes the same outputs; None where that needs uneven padding or keeps a tap that sees only
    padding."""
    out = (size + 2 * pad - k) // stride + 1
    seen = [j for j in range(k) if any(0 <= o * stride + j - pad < size for o in range(out))]
    if not seen:
        return None
    first, kept = seen[0], seen[-1] - seen[0] + 1
    if len(seen) != kept or pad - first < 0 or (size + 2 * (pad - first) - kept) // stride + 1 != out:
        return None
    return first, kept, pad - first


def crop_to_seen_taps(weight, size, stride, padding) -> tuple:
    """The kernel of a convolution (dilation 1, zero integer padding) cut to the taps that see the input at some
    output position, and its padding: (weight[..., rows, cols], (ph, pw)) computes what ``weight`` computes on
    inputs of ``size`` (H, W), with exactly 0 gradient on the taps cut away; the whole kernel and its padding where
    every tap sees the input. (None, padding) where the cut needs uneven padding or would keep a tap that sees only
    padding inside the kernel (strides above the map's size)."""
    axes = [_seen_taps(n, k, s, p) for n, k, s, p in zip(size, weight.shape[-2:], stride, padding)]
    if None in axes:
        return None, padding
    (r, kh, ph), (c, kw, pw) = axes
    return weight[:, :, r:r + kh, c:c + kw], (ph, pw)


def conv_as_gemm(x, weight, bias, stride, padding) -> torch.Tensor:
    """``F.conv2d`` whose output map is 1x1 (groups 1, dilation 1, zero integer padding) as one GEMM: the input's
    window under the taps that see it, (N, Cin * taps), times those taps' weights. The taps that see only padding
    are left out, so their gradient is exactly 0 and a 3x3 kernel on a 1x1 map costs a 1x1 one.
    x: (N, Cin, H, W); weight: (Cout, Cin, kh, kw). Returns (N, Cout, 1, 1)."""
    (ph, pw), (kh, kw) = padding, weight.shape[-2:]
    if conv_output_size(x.shape[-2:], (kh, kw), stride, padding) != (1, 1):
        raise ValueError(f"conv_as_gemm computes a 1x1 output map; inputs {tuple(x.shape[-2:])}, kernel {(kh, kw)}, "
                         f"stride {tuple(stride)} and padding {tuple(padding)} give a larger one: use F.conv2d")
    # the output's one position reads input row j - ph through tap j, for the taps j = ph .. ph + H - 1 (if any)
    rows, cols = (slice(p, max(p, min(k, p + n))) for p, k, n in zip(padding, (kh, kw), x.shape[-2:]))
    window = x[:, :, rows.start - ph:rows.stop - ph, cols.start - pw:cols.stop - pw]
    out = window.reshape(len(x), -1) @ weight[:, :, rows, cols].flatten(1).t()
    if bias is not None:
        out = out + bias.to(out.dtype)
    return out[:, :, None, None]


def sees_only_padding(size: int, k: int, stride: int, pad, dilation: int) -> bool:
    """Whether, along one axis of ``size`` inputs, some tap of a kernel of ``k`` taps meets only zero padding at
    every output position (``pad``: an int, or "same"/"valid" as nn.Conv2d takes them)."""
    if pad == "same":  # stride 1; PyTorch puts the odd one of dilation (k - 1) padded inputs on the right
        pad, out = dilation * (k - 1) // 2, size
    else:
        pad = 0 if pad == "valid" else pad
        out = (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    for j in range(k):
        first, last = j * dilation - pad, (out - 1) * stride + j * dilation - pad  # the inputs it reads, by stride
        if first < 0:
            first += (-first + stride - 1) // stride * stride  # the first of them inside the map, if any
        if first >= size or first > last:
            return True
    return False


def guard_padding_taps(net: nn.Module) -> nn.Module:
    """Give every plain ``nn.Conv2d`` of ``net`` (torchvision's, timm's) :class:`Conv2d`'s forward: under CPU
    autocast and in float32 training, a ResNet-18's 3x3 convs on 1x1 maps and a ConvNeXt's depthwise 7x7 on 2x2 and
    1x1 maps lose the taps that see only padding. Only the class changes (its forward); weights, state dict and the
    outputs of inference without autocast stay. Returns ``net``."""
    for m in net.modules():
        if type(m) is nn.Conv2d:
            m.__class__ = Conv2d
    return net


# Under CPU autocast, convolutions onto maps of at most this many positions take their weight gradient as one GEMM:
# there oneDNN's bfloat16 weight gradient ran 2-10x slower than the GEMM (4x4 and 2x2 maps, 64-256 channels, one
# thread of an Intel Xeon with AMX), while on 8x8 maps the unfolded input costs about what the GEMM saves and on
# larger maps more (benchmarks/README.md, "Weight gradients on small maps").
GEMM_WEIGHT_GRAD_MAX_POSITIONS = 16


def unfold_windows(x, kernel_size, stride, padding) -> torch.Tensor:
    """A convolution's input windows as rows (dilation 1, zero integer padding): x (N, Cin, H, W) ->
    (N * Ho * Wo, kh * kw * Cin), each row's taps in (kh, kw, Cin) order, the memory order of a channels-last
    weight (Cout, Cin, kh, kw)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    windows = F.pad(x, (pw, pw, ph, ph)).permute(0, 2, 3, 1).unfold(1, kh, sh).unfold(2, kw, sw)  # N Ho Wo Cin kh kw
    return windows.permute(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * x.shape[1])


class _ConvGemmWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = tuple(stride), tuple(padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dx = dweight = dbias = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.convolution_backward(dy, x, weight, None, ctx.stride, ctx.padding, (1, 1), False,
                                                     (0, 0), 1, (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            cout, cin, kh, kw = weight.shape
            dy_rows = dy.permute(0, 2, 3, 1).reshape(-1, cout)  # (N Ho Wo, Cout)
            windows = unfold_windows(x, (kh, kw), ctx.stride, ctx.padding)
            dweight = (dy_rows.t() @ windows).view(cout, kh, kw, cin).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[2]:
            dbias = dy.sum((0, 2, 3))
        return dx, dweight, dbias, None, None


def conv_gemm_weight_grad(x, weight, bias, stride, padding) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` (groups 1, dilation 1, zero integer padding) whose weight
    gradient is one GEMM, dy (N Ho Wo, Cout) transposed times the unfolded input (:func:`unfold_windows`). Its
    forward and its input gradient are ``F.conv2d``'s. x: (N, Cin, H, W); weight: (Cout, Cin, kh, kw)."""
    return _ConvGemmWeightGrad.apply(x, weight, bias, stride, padding)


class ConvBlock(nn.Sequential):
    """Conv (no bias, "same" padding) -> ReLU -> BatchNorm(affine=False); BatchNorm is optional."""

    def __init__(self, cin: int, cout: int, k: int, batchnorm: bool = True):
        layers = [Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.ReLU(inplace=True)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout, affine=False))
        super().__init__(*layers)


def _signed_bank(filters: torch.Tensor, cin: int) -> torch.Tensor:
    """The naive block's depthwise weight (10 Cin, 1, k, k): [f1..f5, -f1..-f5] for each input channel."""
    return torch.cat([filters, -filters])[:, None].repeat(cin, 1, 1, 1)


class NaiveFactorizedBlock(nn.Module):
    """Appendix B.2 written literally: frozen depthwise conv with K = 10 filters (f1..f5, -f1..-f5) per input
    channel -> ReLU -> BatchNorm(affine=False) -> learned 1x1 conv (Cout x 10 Cin). Reference for tests and
    benchmarks; :class:`FactorizedBlock` computes the same function faster and has the same state dict."""

    def __init__(self, cin: int, cout: int, filters: torch.Tensor):
        super().__init__()
        n, k, _ = filters.shape
        self.depthwise = nn.Conv2d(cin, 2 * n * cin, k, padding=k // 2, groups=cin, bias=False)
        self.depthwise.weight.data.copy_(_signed_bank(filters, cin))
        self.depthwise.weight.requires_grad_(False)
        self.bn = nn.BatchNorm2d(2 * n * cin, affine=False)
        self.pointwise = nn.Conv2d(2 * n * cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.bn(F.relu(self.depthwise(x))))


class _BufferPool:
    """Spare h tensors of one :class:`FactorizedBlock` for the compiled kernels to write into.

    A fresh 10 Cin-channel tensor each step is returned to the OS and page-faulted back on first write, which on
    the 2-core machine measured cost more than the kernel that fills it (README, ``benchmarks/bench_training.py``). An h comes
    back here when the autograd graph that saved it is freed, so a graph kept alive (``retain_graph``, several
    forward passes before one backward) keeps its own h. Not state: copies of the block start empty."""

    def __init__(self, keep: int = 2):
        self.keep, self.free = keep, []

    def take(self, shape, dtype) -> torch.Tensor:
        while self.free:
            t = self.free.pop()
            if t.shape == shape and t.dtype == dtype:
                return t
        return torch.empty(shape, dtype=dtype, memory_format=torch.channels_last)

    def give(self, t: torch.Tensor):
        if len(self.free) < self.keep:
            self.free.append(t)

    def __deepcopy__(self, memo):
        return _BufferPool(self.keep)

    def __getstate__(self):
        return {"keep": self.keep, "free": []}


class FactorizedBlock(nn.Module):
    """Structured form of :class:`NaiveFactorizedBlock`: same outputs, gradients, running statistics and state
    dict, trained as one autograd node (``_FactorizedTraining``) instead of four passes over 10 Cin channels.

    - f and -f share one convolution: with z = f * x (the 5 filters only), the naive block's ReLU outputs are
      h = [relu(z), relu(-z)], computed in one pass with their BatchNorm batch statistics.
    - Training-mode BatchNorm(affine=False) is folded into the 1x1 conv: with batch means m and inverse
      deviations s, the output is W' h - W' m with W' = W diag(s), one conv with a bias.
    - The backward pass writes BatchNorm's gradient in closed form, dL/dh = s (du - mean(du) - u mean(du u))
      with u = (h - m) s, where mean(du u) = (W . dL/dW) / M comes from the weight gradient: the 10 Cin
      channels are touched by the two GEMMs and by one elementwise pass fused with the transposed
      depthwise conv.
    The depthwise, ReLU, statistics and gradient passes run in small compiled CPU kernels (:mod:`univenc.kernels`,
    built on first use), which write h into tensors reused from step to step (:class:`_BufferPool`) and never hold
    the whole of G = dy W'. ``benchmarks/bench_training.py`` measures it against the naive and the standard block.
    Under CPU bfloat16 autocast, h is stored in bfloat16 and the three 1x1 GEMMs run in bfloat16; the kernels'
    arithmetic, x, dx, the statistics, BatchNorm's fold and the weight gradient stay float32 (float64 sums).

    In eval mode without autograd (the accuracy of a network) the compiled forward kernel makes h and the running
    statistics are folded into the 1x1 conv, unless hooks watch ``pointwise``.

    Elsewhere it computes what the naive block computes, pointwise(bn(relu_responses(x))): in eval mode when hooks
    watch ``pointwise``, so that they see its true input, as the alignment needs; on a GPU, where the launches
    of the structured form's many small ops cost more than the passes they save (0.35-0.39x the naive block's
    speed on an H100, README); under float16 autocast; on a CPU without a C compiler; and for filters larger than
    7 x 7 (``univenc.kernels.MAX_KERNEL_SIZE``).
    """

    def __init__(self, cin: int, cout: int, filters: torch.Tensor):
        super().__init__()
        n, k, _ = filters.shape
        self.cin, self.cout, self.n, self.k = cin, cout, n, k
        self.register_buffer("filters", filters.clone().float())  # frozen: a buffer, never a parameter
        self.bn = nn.BatchNorm2d(2 * n * cin, affine=False)
        self.pointwise = nn.Conv2d(2 * n * cin, cout, 1, bias=False)
        self._h_pool = _BufferPool()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A naive block's depthwise weight is the filter bank repeated per channel.
        bank = state_dict.pop(prefix + "depthwise.weight", None)
        if bank is not None and prefix + "filters" not in state_dict:
            state_dict[prefix + "filters"] = bank[: self.n, 0]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def relu_responses(self, x):
        """The naive block's depthwise conv + ReLU: (N, 10 Cin, H, W), channel c*10 + j for filter j of
        [f1..f5, -f1..-f5] on input channel c."""
        bank = _signed_bank(self.filters.to(x.dtype), self.cin)
        return F.relu(F.conv2d(x, bank, padding=self.k // 2, groups=self.cin))

    def _observed(self) -> bool:
        """Whether hooks watch ``pointwise`` (the alignment reads its input, BatchNorm's output, through them)."""
        from torch.nn.modules import module as m
        return bool(self.pointwise._forward_pre_hooks or self.pointwise._forward_hooks or self.bn._forward_hooks
                    or m._global_forward_pre_hooks or m._global_forward_hooks)

    def _inference(self, x, h_dtype):
        """Eval mode without autograd: h from the compiled kernel and BatchNorm's running statistics folded into the
        1x1 conv, y = W' h - W' m with W' = W diag(1 / sqrt(running_var + eps)); what the naive block computes.
        Under CPU bfloat16 autocast, as in training: h stored in bfloat16, the 1x1 conv in bfloat16."""
        bn, n, cin = self.bn, self.n, self.cin
        h, _, _ = kernels.factorized_forward(x, self.filters.to(x.dtype), h_dtype=h_dtype)

        def h_order(v):  # per channel, the naive block's order (c, s, j) -> h's (s, j, c)
            return v.view(cin, 2, n).permute(1, 2, 0).flatten()
        inv = h_order((bn.running_var + bn.eps).rsqrt()).to(x.dtype)
        w = self.pointwise.weight.view(self.cout, cin, 2, n).permute(0, 2, 3, 1).flatten(1) * inv
        bias = torch.mv(w, h_order(bn.running_mean).to(x.dtype)).neg_()
        return F.conv2d(h, w[:, :, None, None].to(h.dtype), bias.to(h.dtype))

    def forward(self, x):
        bn = self.bn
        autocast = torch.is_autocast_enabled(x.device.type)
        # under autocast (bfloat16 on a CPU) h is stored in bfloat16 and the 1x1 GEMMs run in it; x stays float32
        h_dtype = torch.get_autocast_dtype(x.device.type) if autocast else x.dtype
        x_in = x.float() if autocast else x
        if (not self.training and not torch.is_grad_enabled() and bn.track_running_stats
                and kernels.available(x_in, h_dtype, self.k) and not self._observed()):
            return self._inference(x_in, h_dtype)
        if not (self.training and bn.track_running_stats and bn.momentum is not None
                and kernels.available(x_in, h_dtype, self.k)):
            return self.pointwise(bn(self.relu_responses(x)))
        bn.num_batches_tracked += 1
        return _FactorizedTraining.apply(x_in, self.pointwise.weight, self.filters.to(x_in.dtype), bn.running_mean,
                                         bn.running_var, bn.momentum, bn.eps, self._h_pool, h_dtype)


def _naive_order(t, n, cin):
    """Along the last dim: h's channel order (s, j, c) -> the naive block's (c, s, j), i.e. s*C + j*Cin + c ->
    c*2n + s*n + j, s = 0 for +f_j and 1 for -f_j on input channel c."""
    return t.unflatten(-1, (2, n, cin)).movedim(-1, -3).flatten(-3)


class _FactorizedTraining(torch.autograd.Function):
    """Training-mode forward and backward of :class:`FactorizedBlock` (the derivation is in its docstring).

    h's channels are ordered (s, j, c), see :func:`_naive_order`. h is never normalised: the normalisation
    lives in W'."""

    @staticmethod
    @torch.autocast("cpu", enabled=False)  # the dtypes are set here: h's for the 1x1 conv, float32 elsewhere
    def forward(ctx, x, weight, filters, running_mean, running_var, momentum, eps, pool, h_dtype):
        n = filters.shape[0]
        N, cin, H, W = x.shape
        M, cout = N * H * W, weight.shape[0]
        h = pool.take((N, 2 * n * cin, H, W), h_dtype)
        weakref.finalize(ctx, pool.give, h)  # back to the pool when the autograd graph is freed
        h, mean, var = kernels.factorized_forward(x, filters, out=h)
        inv = (var + eps).rsqrt_()
        # W' = W diag(s), with h's channel order
        w = weight.view(cout, cin, 2, n).permute(0, 2, 3, 1).flatten(1) * inv  # inverse of _naive_order
        y = F.conv2d(h, w[:, :, None, None].to(h_dtype), torch.mv(w, mean).neg_().to(h_dtype))
        with torch.no_grad():  # BatchNorm's running statistics (unbiased variance), through views in h's order
            running_mean.view(cin, 2, n).permute(1, 2, 0).lerp_(mean.view(2, n, cin), momentum)
            running_var.view(cin, 2, n).permute(1, 2, 0).lerp_(var.view(2, n, cin) * (M / max(M - 1, 1)), momentum)
        ctx.save_for_backward(filters, h, w, mean, inv)
        ctx.cin = cin
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        filters, h, w, mean, inv = ctx.saved_tensors
        cin, n = ctx.cin, filters.shape[0]
        N, C2, H, Wd = h.shape
        M, cout = N * H * Wd, w.shape[0]
        need_x = ctx.needs_input_grad[0]
        dy = dy.to(h.dtype).contiguous(memory_format=torch.channels_last)
        # dy^T h as one GEMM over the channels-last (M, C) views: on a CPU with AMX about 2x faster in bfloat16 than
        # the 1x1 convolution's weight gradient (benchmarks/README.md); g = dy summed over pixels. The kernel
        # makes G = dy W' in chunks.
        dy_mc = dy.permute(0, 2, 3, 1).reshape(M, cout)
        dyh = torch.mm(dy_mc.t(), h.permute(0, 2, 3, 1).reshape(M, C2)).to(w.dtype)
        g = dy_mc.sum(0).to(w.dtype)
        dw = torch.addr(dyh.view(cout, C2), g, mean, alpha=-1).mul_(inv)  # dL/dW = dy^T u
        dweight = _naive_order(dw, n, cin)[:, :, None, None]
        dx = None
        if need_x:
            # dL/dh = s du - s mean(du) - s u mean(du u) = G + alpha + beta h, with beta = -s^2 mean(du u) and
            # alpha = -s mean(du) - beta m, where s mean(du) = (g W')/M and s mean(du u) = (W' . dL/dW)/M
            beta = torch.linalg.vecdot(w, dw, dim=0).mul_(inv).div_(-M)
            alpha = torch.addcmul(g @ w, mean, beta, value=M).div_(-M)
            dx = kernels.factorized_backward(dy, w, h, alpha, beta, filters, cin)
        return dx, dweight, None, None, None, None, None, None, None


class _MaxPool2x2(torch.autograd.Function):
    """2x2 max-pooling with stride 2 in the compiled kernels (:func:`univenc.kernels.maxpool2_forward`): PyTorch's
    values and gradients, bit for bit. Its backward writes each input position once, instead of zeroing the input's
    gradient and scattering into it: on the first layer's 16 x 32 x 32 maps PyTorch's forward, backward and zeroing
    took 5 ms of a 56 ms bfloat16 step of the standard VGG-11 (one thread, ``torch.profiler``)."""

    @staticmethod
    def forward(ctx, x):
        y, which = kernels.maxpool2_forward(x)
        ctx.save_for_backward(which)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        return kernels.maxpool2_backward(dy, *ctx.saved_tensors)


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` whose 2x2, stride-2 training passes on channels-last float32 or bfloat16 CPU tensors run in
    the compiled kernels (:class:`_MaxPool2x2`), with the same outputs and gradients; everything else (inference, other
    windows, odd sizes, GPUs) is ``nn.MaxPool2d``'s."""

    def forward(self, x):
        if (x.requires_grad and torch.is_grad_enabled() and self.kernel_size in (2, (2, 2))
                and self.stride in (2, (2, 2)) and self.padding in (0, (0, 0)) and self.dilation in (1, (1, 1))
                and not self.ceil_mode and not self.return_indices and kernels.pools(x)):
            return _MaxPool2x2.apply(x)
        return super().forward(x)


class VGG(nn.Module):
    """Simplified VGG-11: no biases, blocks Conv -> ReLU -> BN(affine=False), global average pooling and a
    single linear classifier (or a 2-layer MLP head, ``head="mlp"``, the Fig. 1a/b setting).

    Works on 32x32 and 224x224 inputs (global average pooling makes the head independent of the size).
    ``factorized=True`` replaces each conv block by a :class:`FactorizedBlock` with frozen ``filters``.
    """

    def __init__(self, num_classes: int = 10, kernel_size: int = 3, width: float = 1.0,
                 batchnorm: bool = True, head: str = "linear", factorized: bool = False,
                 filters: torch.Tensor | None = None, naive: bool = False, mlp_hidden: int | None = None,
                 in_chans: int = 3, init: str = "default", **_timm_kwargs):
        super().__init__()
        if kernel_size not in (1, 3, 5, 7) or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (3, 5 or 7), got {kernel_size}")
        if head not in ("linear", "mlp"):
            raise ValueError(f"head must be 'linear' or 'mlp', got {head!r}")
        if init not in ("default", "kaiming_relu"):
            raise ValueError(f"init must be 'default' (PyTorch's) or 'kaiming_relu', got {init!r}")
        self.config = dict(num_classes=num_classes, kernel_size=kernel_size, width=width, batchnorm=batchnorm,
                           head=head, factorized=factorized, mlp_hidden=mlp_hidden, in_chans=in_chans, init=init)
        if factorized:
            filters = canonical_spatial_filters() if filters is None else torch.as_tensor(filters).float()
        layers, cin = [], in_chans
        for c in VGG11_CHANNELS:
            if c == "M":
                layers.append(MaxPool2d(2))
                continue
            cout = max(1, int(round(c * width)))
            if factorized:
                layers.append((NaiveFactorizedBlock if naive else FactorizedBlock)(cin, cout, filters))
            else:
                layers.append(ConvBlock(cin, cout, kernel_size, batchnorm))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        if head == "linear":
            self.classifier = nn.Linear(cin, num_classes, bias=False)
        else:
            hidden = mlp_hidden or max(1, int(round(4096 * width)))
            self.classifier = nn.Sequential(nn.Linear(cin, hidden, bias=False), nn.ReLU(inplace=True),
                                            nn.Linear(hidden, num_classes, bias=False))
        if init == "kaiming_relu":
            # Without BatchNorm, PyTorch's default init (variance 1/(3 fan_in)) shrinks activations by ~sqrt(6)
            # per ReLU layer and the gradients vanish; He init keeps their scale. (Covariance normalisation
            # in univenc.covariance assumes the default init.)
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad:
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def vgg11(**kwargs) -> VGG:
    return VGG(**kwargs)


def factorized_vgg11(**kwargs) -> VGG:
    return VGG(factorized=True, **kwargs)


def resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18, unchanged: 7x7 stride-2 stem and max-pool, affine BatchNorm after every conv,
    skip connections. Each conv's ``init_variance`` (torchvision's init) is the noise level of eq. 3
    (``univenc.covariance.noise_variance``). Its ``config`` lets a univenc checkpoint rebuild it; its state dict
    is torchvision's, so ``--arch torchvision:resnet18`` loads it too. On 32x32 inputs the maps are 8x8 in
    layer1, 4x4 in layer2 and 2x2, 1x1 further down (``univenc.spatial.layer_maps``)."""
    import torchvision

    net = guard_padding_taps(declare_kaiming_fan_out(torchvision.models.resnet18(num_classes=num_classes)))
    net.config = {"arch": "resnet18", "num_classes": num_classes}
    return net


# timm initialises ConvNeXt's convs and linear layers, and a ViT's linear layers, from a normal of this standard
# deviation (trunc_normal_ with bounds far outside it): eq. 3's noise variance is its square.
TIMM_INIT_STD = 0.02


def _declare_timm_init(net: nn.Module, types: tuple) -> None:
    """Set ``init_variance`` = ``TIMM_INIT_STD``^2 on every module of ``net`` of one of ``types``."""
    for m in net.modules():
        if isinstance(m, types):
            m.init_variance = TIMM_INIT_STD ** 2


def convnext_atto(num_classes: int = 10) -> nn.Module:
    """timm's smallest ConvNeXt (``convnext_atto``: depthwise 7x7 kernels, LayerNorm, inverted bottlenecks with 1x1
    convs), unchanged but for a 2x2 patch stem for 32x32 images; timm then downsamples by 2 before stage 0, whose
    blocks see 8x8 maps (4x4, 2x2, 1x1 in stages 1-3). Its convs and linear layers declare timm's init variance."""
    import timm

    net = guard_padding_taps(timm.create_model("convnext_atto", num_classes=num_classes, patch_size=2))
    _declare_timm_init(net, (nn.Conv2d, nn.Linear))
    net.config = {"arch": "convnext", "num_classes": num_classes}
    return net


def _fused_attention_off_cpu(attention: nn.Module, inputs) -> None:
    """timm's attention computes softmax(q k^T) v explicitly on a CPU, fused (``F.scaled_dot_product_attention``)
    elsewhere. With 65 tokens of 32 dimensions, on one thread of an Intel Xeon with AMX, the fused CPU kernel's
    backward was most of a step: the explicit form trained 1.0-1.1x as fast in float32 and 2.5x under bfloat16
    autocast (benchmarks/README.md)."""
    attention.fused_attn = inputs[0].device.type != "cpu"


def vit_tiny32(num_classes: int = 10) -> nn.Module:
    """A small vision transformer for 32x32 images (timm's ``VisionTransformer``): 4x4 patches (64 tokens and a
    class token), width 96, 4 blocks of 3 heads, MLP ratio 2 (about 0.3 M weights: it trains at 330 images/s on
    one CPU thread, width 128 and 6 blocks at 156). Its linear layers (attention query/key/value and
    output, MLP) declare timm's init variance; its patch embedding keeps PyTorch's default init."""
    import timm

    net = timm.create_model("vit_tiny_patch16_224", num_classes=num_classes, img_size=32, patch_size=4,
                            embed_dim=96, depth=4, num_heads=3, mlp_ratio=2)
    _declare_timm_init(net, (nn.Linear,))
    for m in net.modules():
        if hasattr(m, "fused_attn"):
            m.register_forward_pre_hook(_fused_attention_off_cpu)
    net.config = {"arch": "vit", "num_classes": num_classes}
    return net


ARCHITECTURES = {"resnet18": resnet18, "convnext": convnext_atto, "vit": vit_tiny32}  # the zoo's non-VGG ones


def declare_kaiming_fan_out(net: nn.Module) -> nn.Module:
    """Set ``init_variance`` = 2 / (Cout k^2) on every conv of ``net``: the variance of Kaiming-normal init with
    fan-out and ReLU gain, which torchvision's ResNets use. Returns ``net``."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.init_variance = 2.0 / (m.out_channels * m.kernel_size[0] * m.kernel_size[1])
    return net


def model_from_config(config: dict, state_dict: dict | None = None) -> nn.Module:
    """A freshly built network from a univenc checkpoint's ``config["model"]`` (its weights still to load): the
    architecture ``config["arch"]`` names (``ARCHITECTURES``), else :class:`VGG` (whose frozen filters come from
    ``state_dict``)."""
    if config.get("arch") in ARCHITECTURES:
        return ARCHITECTURES[config["arch"]](config["num_classes"])
    filters = state_dict.get("features.0.filters") if config.get("factorized") and state_dict else None
    return VGG(**{**config, "filters": filters})


def checkpoint_epoch(path, ckpt: dict | None = None) -> int:
    """The epoch of a checkpoint: its ``epoch`` entry, else the number in an ``epoch_XXX`` file name."""
    if ckpt is not None and isinstance(ckpt.get("epoch"), int):
        return ckpt["epoch"]
    match = re.search(r"epoch_(\d+)", Path(path).name)
    if match is None:
        raise ValueError(f"cannot tell the epoch of {path}: it has no 'epoch' entry and its name is not "
                         f"epoch_XXX.pt; give a univenc checkpoint or name the files by epoch")
    return int(match.group(1))


def load_checkpoint_model(path, model: nn.Module | None = None) -> tuple[nn.Module, int]:
    """(network in eval mode, epoch) from a checkpoint file.

    A univenc checkpoint (from :func:`univenc.training.fit`) carries its architecture. A plain state dict, or
    a dict with a ``state_dict`` entry, is loaded into ``model`` (a network of the right architecture; its
    weights are replaced), with a strict key check."""
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict")
    cfg = ckpt.get("config", {}).get("model") if isinstance(ckpt.get("config"), dict) else None
    if cfg is not None:
        net = model_from_config(cfg, state)
    elif model is not None:
        net = model
    else:
        raise ValueError(f"{path} is a plain state dict: pass model=<a network of its architecture> to load it")
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit {type(net).__name__}: {err}") from err
    return for_inference(net), checkpoint_epoch(path, ckpt)


def for_inference(net: nn.Module) -> nn.Module:
    """``net`` in eval mode, in channels-last memory when it is on a CPU: the analysis' forward passes run 1.5-1.65x
    faster so for the zoo's VGGs (``benchmarks/bench_cpu_limit.py``); the weights' values are unchanged."""
    net.eval()
    param = next(net.parameters(), None)
    if param is not None and param.device.type == "cpu":
        net.to(memory_format=torch.channels_last)
    return net


def _register_with_timm():
    try:
        from timm.models import register_model
    except ImportError:  # timm is optional for using the library
        return

    from timm.models._registry import _model_entrypoints

    if "univenc_vgg11" in _model_entrypoints:
        return

    @register_model
    def univenc_vgg11(pretrained: bool = False, **kwargs):
        """Simplified VGG-11 of Guth & Ménard (2024), Appendix B.1."""
        return VGG(**kwargs)

    @register_model
    def univenc_vgg11_factorized(pretrained: bool = False, **kwargs):
        """Factorized VGG-11 with frozen universal spatial filters, Appendix B.2."""
        return VGG(factorized=True, **kwargs)



class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Registers univenc's VGGs with timm right after ``import timm``, wherever it happens. Importing timm here would
    cost every process that imports univenc about 2.5 s (timm imports torchvision, which imports torch._dynamo),
    most of which never create a timm model."""

    def find_spec(self, name, path=None, target=None):
        if name != "timm":
            return None
        sys.meta_path.remove(self)  # one shot: find timm's own spec through the other finders
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            exec_module = spec.loader.exec_module

            def exec_then_register(module):
                exec_module(module)
                _register_with_timm()
            spec.loader.exec_module = exec_then_register
        return spec


if "timm" in sys.modules:
    _register_with_timm()
elif not any(isinstance(f, _RegisterWhenTimmLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTimmLoads())
