"""The paper's simplified VGG-11 (Appendix B.1) and factorized VGG-11 (Appendix B.2).

Both are registered with timm: ``timm.create_model("univenc_vgg11", num_classes=10, kernel_size=5)`` and
``timm.create_model("univenc_vgg11_factorized", num_classes=10)`` once ``univenc.models`` is imported.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VGG", "FactorizedBlock", "NaiveFactorizedBlock", "vgg11", "factorized_vgg11",
           "canonical_spatial_filters", "VGG11_CHANNELS", "CANONICAL_FILTERS_FILE"]

# Configuration "A": 8 conv layers; "M" is a 2x2 max-pool.
VGG11_CHANNELS = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
CANONICAL_FILTERS_FILE = Path(__file__).resolve().parent / "resources" / "spatial_filters_k3.npz"


def canonical_spatial_filters(path=None) -> torch.Tensor:
    """The first 5 universal spatial eigenvectors f1..f5 as a (5, k, k) float32 tensor.

    Default: the 3x3 set shipped with the package (its ``provenance`` entry says which trained networks it
    was computed from). Notebook 02 writes the same format from the networks it analyses."""
    with np.load(path or CANONICAL_FILTERS_FILE) as f:
        return torch.as_tensor(f["filters"][:5], dtype=torch.float32)


class ConvBlock(nn.Sequential):
    """Conv (no bias, "same" padding) -> ReLU -> BatchNorm(affine=False); BatchNorm is optional."""

    def __init__(self, cin: int, cout: int, k: int, batchnorm: bool = True):
        layers = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.ReLU(inplace=True)]
        if batchnorm:
            layers.append(nn.BatchNorm2d(cout, affine=False))
        super().__init__(*layers)


class NaiveFactorizedBlock(nn.Module):
    """Appendix B.2 written literally: frozen depthwise conv with K = 10 filters (f1..f5, -f1..-f5) per input
    channel -> ReLU -> BatchNorm(affine=False) -> learned 1x1 conv (Cout x 10 Cin). Reference for tests and
    benchmarks; :class:`FactorizedBlock` computes the same function faster and has the same state dict."""

    def __init__(self, cin: int, cout: int, filters: torch.Tensor):
        super().__init__()
        n, k, _ = filters.shape
        bank = torch.cat([filters, -filters])[:, None]  # (10, 1, k, k)
        self.depthwise = nn.Conv2d(cin, 2 * n * cin, k, padding=k // 2, groups=cin, bias=False)
        self.depthwise.weight.data.copy_(bank.repeat(cin, 1, 1, 1))
        self.depthwise.weight.requires_grad_(False)
        self.bn = nn.BatchNorm2d(2 * n * cin, affine=False)
        self.pointwise = nn.Conv2d(2 * n * cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.bn(F.relu(self.depthwise(x))))


class FactorizedBlock(nn.Module):
    """Structured form of :class:`NaiveFactorizedBlock`: same outputs, gradients, running statistics and state
    dict. On a 2-core CPU it trains at 1.00-1.05x the naive block's speed (``benchmarks/bench_training.py``):
    the cost is memory traffic over the 10 Cin-channel activations, which the steps below do not remove.

    - f and -f share one convolution: z = f * x is computed for the 5 filters only, and the negative filters'
      responses are relu(-z), so the depthwise conv does half the work and its backward too.
    - The two halves, relu(z) and relu(-z) (5 Cin channels each), go through the native fused BatchNorm and a
      1x1 conv each; nothing is concatenated into a 10 Cin-channel tensor. Their running statistics are
      kept in the naive block's channel order (channel c*10 + j is filter j of f1..f5, -f1..-f5 on input c).
    Measured alternative, not used: folding BatchNorm(affine=False) into the 1x1 conv weights is exact too, but
    autograd through the batch statistics costs more full-tensor passes than the fused kernel it replaces
    (measured while developing this block: about 0.8x the naive block's speed at width 1/4).
    In eval mode it runs the naive composition (``pointwise`` called on the normalised 10 Cin-channel input) so
    that forward hooks on ``pointwise`` see its true input, as the alignment needs.
    """

    def __init__(self, cin: int, cout: int, filters: torch.Tensor):
        super().__init__()
        n, k, _ = filters.shape
        self.cin, self.cout, self.n, self.k = cin, cout, n, k
        self.register_buffer("filters", filters.clone().float())  # frozen: a buffer, never a parameter
        self.bn = nn.BatchNorm2d(2 * n * cin, affine=False)
        self.pointwise = nn.Conv2d(2 * n * cin, cout, 1, bias=False)
        order = torch.arange(2 * n * cin).reshape(cin, 2, n)
        self.register_buffer("_pos", order[:, 0].reshape(-1), persistent=False)
        self.register_buffer("_neg", order[:, 1].reshape(-1), persistent=False)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A naive block's depthwise weight is the filter bank repeated per channel.
        bank = state_dict.pop(prefix + "depthwise.weight", None)
        if bank is not None and prefix + "filters" not in state_dict:
            state_dict[prefix + "filters"] = bank[: self.n, 0]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def responses(self, x):
        """z = f_j * x_c: (N, 5 Cin, H, W), channel c*5 + j."""
        bank = self.filters[:, None].repeat(self.cin, 1, 1, 1)
        return F.conv2d(x, bank.to(x.dtype), padding=self.k // 2, groups=self.cin)

    def expand(self, z):
        """The naive block's depthwise+ReLU output (N, 10 Cin, H, W) from z."""
        N, _, H, W = z.shape
        zc = z.reshape(N, self.cin, 1, self.n, H, W)
        return torch.cat([F.relu(zc), F.relu(-zc)], dim=2).reshape(N, 2 * self.n * self.cin, H, W)

    def forward(self, x):
        z = self.responses(x)
        if not self.training or not self.bn.track_running_stats:
            return self.pointwise(self.bn(self.expand(z)))
        bn = self.bn
        halves = []
        for idx, h in ((self._pos, F.relu(z)), (self._neg, F.relu(-z))):
            mean, var = bn.running_mean[idx].clone(), bn.running_var[idx].clone()
            halves.append(F.batch_norm(h, mean, var, training=True, momentum=bn.momentum, eps=bn.eps))
            with torch.no_grad():
                bn.running_mean[idx], bn.running_var[idx] = mean, var
        bn.num_batches_tracked += 1
        w = self.pointwise.weight.reshape(self.cout, self.cin, 2, self.n)
        return (F.conv2d(halves[0], w[:, :, 0].reshape(self.cout, -1, 1, 1))
                + F.conv2d(halves[1], w[:, :, 1].reshape(self.cout, -1, 1, 1)))


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
                layers.append(nn.MaxPool2d(2))
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


_register_with_timm()
