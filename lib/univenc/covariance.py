"""Channel weight covariances (Sec. 3.1): C = W^T W / Cout, eigenvalue shrinkage (eq. 3), effective rank (eq. 4).

A layer's weight is read as Cout neurons w in R^d: d = Cin for a 1x1 conv or a linear layer, d = Cin*k^2 for a
k x k conv (input-channel-major: index c*k^2 + pixel). Covariances are normalised by the variance of PyTorch's
default (Kaiming-uniform) initialisation, 1 / (3 fan_in), so that an untrained layer has C ~ I and eq. 3 applies;
a layer initialised otherwise says so with an ``init_variance`` attribute (:func:`noise_variance`; the package's
``resnet18`` sets torchvision's Kaiming-normal fan-out variance on its convs).
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["fold_batchnorm_scale", "weight_matrix", "init_variance", "noise_variance", "channel_covariance",
           "shrink_eigenvalues", "effective_rank", "WeightSpectrum", "weight_spectrum", "layer_spectrum",
           "rotate_spectrum", "truncate_weight", "truncate_layer"]


def weight_matrix(weight) -> np.ndarray:
    """A conv (Cout, Cin, k, k) or linear (Cout, Cin) weight as a float64 (Cout, d) matrix."""
    w = weight.detach().cpu().double().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight, float)
    if w.ndim not in (2, 4):
        raise ValueError(f"expected a linear (Cout, Cin) or conv (Cout, Cin, k, k) weight, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("the weight has non-finite entries (NaN or inf): was training diverging?")
    return w.reshape(w.shape[0], -1)


def init_variance(d: int) -> float:
    """Variance of PyTorch's default init for fan-in d: U(-1/sqrt(d), 1/sqrt(d)) has variance 1/(3d)."""
    return 1.0 / (3.0 * d)


def noise_variance(layer: nn.Module) -> float:
    """The variance of ``layer``'s initial weights, which eq. 3 treats as the noise: its ``init_variance``
    attribute when it has one, else PyTorch's default :func:`init_variance` of its fan-in."""
    own = getattr(layer, "init_variance", None)
    return float(own) if own is not None else init_variance(_fan_in(layer.weight))


def channel_covariance(weight, normalise: bool = True) -> np.ndarray:
    """C = W^T W / Cout, (d, d) float64, divided by the init variance when ``normalise``."""
    w = weight_matrix(weight)
    c = w.T @ w / w.shape[0]
    return c / init_variance(w.shape[1]) if normalise else c


def shrink_eigenvalues(eigenvalues, gamma: float) -> np.ndarray:
    """Eq. 3, spiked-model shrinkage (Donoho, Gavish & Johnstone 2018) for noise variance 1.

    lambda -> (lambda - 1 - gamma)/2 + sqrt(((lambda + 1 - gamma)/2)^2 - lambda)  if lambda > (1 + sqrt(gamma))^2
              0                                                                    otherwise,
    with gamma = d / Cout (dimensions per sample). The result is the spike's strength above the noise floor:
    a population eigenvalue 1 + s comes back as about s."""
    lam = np.asarray(eigenvalues, dtype=float)
    if gamma <= 0:
        raise ValueError(f"gamma = d / Cout must be positive, got {gamma}")
    above = lam > (1 + np.sqrt(gamma)) ** 2
    disc = np.maximum(((lam + 1 - gamma) / 2) ** 2 - lam, 0.0)
    return np.where(above, (lam - 1 - gamma) / 2 + np.sqrt(disc), 0.0)


def effective_rank(eigenvalues) -> float:
    """Eq. 4: r_eff = sum_k k lambda_k / sum_k lambda_k over eigenvalues sorted descending (k = 1..d).

    0 when every eigenvalue is 0 (nothing above the noise)."""
    lam = np.sort(np.asarray(eigenvalues, dtype=float))[::-1]
    total = lam.sum()
    return float((lam * np.arange(1, len(lam) + 1)).sum() / total) if total > 0 else 0.0


@dataclass
class WeightSpectrum:
    """Eigen-decomposition of a layer's normalised channel covariance, computed from the SVD of W.

    eigenvalues : (m,) raw eigenvalues of C, descending (m = min(Cout, d); the other d - m are 0).
    vectors : (d, m) eigenvectors (columns).
    shrunk : (m,) eq. 3 applied to ``eigenvalues``.
    cout, d : sizes; gamma = d / cout.
    """
    eigenvalues: np.ndarray
    vectors: np.ndarray
    shrunk: np.ndarray
    cout: int
    d: int

    @property
    def gamma(self) -> float:
        return self.d / self.cout

    @property
    def rank(self) -> int:
        """Number of eigenvalues retained by the shrinkage."""
        return int((self.shrunk > 0).sum())

    @property
    def effective_rank(self) -> float:
        return effective_rank(self.shrunk)

    def retained(self):
        """(shrunk eigenvalues, eigenvectors) of the retained (non-zero) part: the shrunk covariance is
        vectors @ diag(values) @ vectors.T exactly."""
        keep = self.shrunk > 0
        return self.shrunk[keep], self.vectors[:, keep]


def weight_spectrum(weight, rotation: np.ndarray | None = None, noise: float | None = None) -> WeightSpectrum:
    """:class:`WeightSpectrum` of a layer; O(Cout d min(Cout, d)) through the SVD of W, never a d x d eigh.

    rotation : optional (d', Cin) alignment A applied to the input channels (w -> A w); for a k x k conv it
    acts on the channel axis of each pixel (A kron I_{k^2}), giving a (Cout, d' k^2) weight.
    noise : the variance the covariance is normalised by (default: PyTorch's default init, :func:`init_variance`)."""
    w = weight_matrix(weight)
    if rotation is not None:
        w = rotate_inputs(w, weight, rotation)
    cout, d = w.shape
    noise = init_variance(_fan_in(weight)) if noise is None else noise
    lam, vectors = covariance_eigenpairs(w / np.sqrt(cout * noise))
    return WeightSpectrum(lam, vectors, shrink_eigenvalues(lam, d / cout), cout, d)


# Below this ratio to the largest eigenvalue, W^T u / s loses digits: the SVD itself is used instead.
GRAM_MIN_RATIO = 1e-8


def covariance_eigenpairs(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (m,), descending, and eigenvectors (d, m) of w^T w for w (n, d), m = min(n, d): the squared
    singular values and right singular vectors of w. Through the eigh of the smaller Gram matrix (10-20x faster
    than the SVD of a (512, 4608) layer here); through the SVD where an eigenvalue is below ``GRAM_MIN_RATIO``
    times the largest, so that every vector keeps its accuracy."""
    n, d = w.shape
    if d <= n:
        lam, v = np.linalg.eigh(w.T @ w)
        return np.clip(lam[::-1], 0, None), v[:, ::-1]
    lam, u = np.linalg.eigh(w @ w.T)
    lam, u = lam[::-1], u[:, ::-1]
    if not lam[-1] > GRAM_MIN_RATIO * lam[0]:
        _, s, vt = np.linalg.svd(w, full_matrices=False)
        return s ** 2, vt.T
    return lam, (w.T @ u) / np.sqrt(lam)


def layer_spectrum(layer: nn.Module, rotation: np.ndarray | None = None) -> WeightSpectrum:
    """:func:`weight_spectrum` of a conv or linear module, normalised by its :func:`noise_variance`."""
    return weight_spectrum(layer.weight, rotation, noise_variance(layer))


def _fan_in(weight) -> int:
    shape = tuple(weight.shape)
    return int(np.prod(shape[1:]))


def rotate_inputs(w: np.ndarray, weight, rotation: np.ndarray) -> np.ndarray:
    """w (n, Cin*k^2) -> (n, d'*k^2) with the channel axis multiplied by ``rotation`` (d', Cin); ``weight`` gives
    Cin and k (its neurons, or any n vectors of its input space, e.g. its right singular vectors)."""
    shape = tuple(weight.shape)
    cin = shape[1]
    kk = int(np.prod(shape[2:])) if len(shape) == 4 else 1
    rotation = np.asarray(rotation, float)
    if rotation.shape[1] != cin:
        raise ValueError(f"rotation has shape {rotation.shape}; its second axis must match Cin = {cin}")
    rotated = np.tensordot(rotation, w.reshape(w.shape[0], cin, kk), axes=(1, 1))  # (d', n, k^2), one GEMM
    return rotated.transpose(1, 0, 2).reshape(w.shape[0], -1)


def rotate_spectrum(spectrum: WeightSpectrum, weight, rotation: np.ndarray) -> WeightSpectrum:
    """The :class:`WeightSpectrum` of ``weight`` with its inputs rotated by an orthogonal (Cin, Cin) ``rotation``,
    from its unrotated ``spectrum``, without a new SVD: W (R kron I)^T keeps W's singular values, and its right
    singular vectors are (R kron I) v. Equals ``weight_spectrum(weight, rotation)`` up to rounding."""
    rotation = np.asarray(rotation, float)
    if rotation.shape[0] != rotation.shape[1] or not np.allclose(rotation @ rotation.T, np.eye(len(rotation)),
                                                                  atol=1e-8):
        raise ValueError(f"rotate_spectrum needs an orthogonal (Cin, Cin) rotation, got shape {rotation.shape}; "
                         f"use weight_spectrum(weight, rotation) for any other alignment")
    return dataclasses.replace(spectrum, vectors=rotate_inputs(spectrum.vectors.T, weight, rotation).T)


def truncate_weight(weight: torch.Tensor, rank: int) -> torch.Tensor:
    """Project each neuron of ``weight`` on the top-``rank`` eigenvectors of its channel covariance
    (W -> W U_r U_r^T), the low-rank approximation of Fig. 2. Same shape and dtype as ``weight``."""
    spec = weight_spectrum(weight)
    u = spec.vectors[:, :rank]
    w = weight_matrix(weight)
    return torch.as_tensor((w @ u) @ u.T, dtype=weight.dtype).reshape(weight.shape)


def truncate_layer(model: nn.Module, layer: str, rank: int) -> nn.Module:
    """A copy of ``model`` whose module ``layer`` has its weight truncated to ``rank``."""
    out = copy.deepcopy(model)
    module = out.get_submodule(layer)
    with torch.no_grad():
        module.weight.copy_(truncate_weight(module.weight, rank))
    return out


def fold_batchnorm_scale(model: nn.Module, input_size=(3, 32, 32)) -> tuple[nn.Module, list]:
    """A copy of ``model`` whose conv weights carry the per-channel scale gamma / sqrt(running_var + eps) of the
    affine BatchNorm that directly follows them (the BatchNorm's input is the conv's output, found in one forward
    pass of a zero probe of ``input_size``): the weights that the network effectively applies, up to a shift.
    Each folded conv's ``init_variance`` (eq. 3's noise level) is scaled by the mean squared scale, so that a
    fold by one common factor leaves r_eff and S unchanged.
    Returns (model copy, [(conv name, batchnorm name), ...]). BatchNorms without affine scale are left alone."""
    model = copy.deepcopy(model).eval()
    outputs, pairs = {}, []
    modules = dict(model.named_modules())

    def conv_hook(name):
        def hook(module, args, output):
            outputs[id(output)] = name
        return hook

    def bn_hook(name):
        def hook(module, args):
            if id(args[0]) in outputs and module.affine:
                pairs.append((outputs[id(args[0])], name))
        return hook
    hooks = [m.register_forward_hook(conv_hook(n)) for n, m in modules.items() if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_pre_hook(bn_hook(n)) for n, m in modules.items() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for conv, bn in pairs:
            c, b = modules[conv], modules[bn]
            scale = b.weight / torch.sqrt(b.running_var + b.eps)
            # Eq. 3's noise is the init weights, scaled by the fold as well: rows of variance v * scale_c^2.
            c.init_variance = noise_variance(c) * float(scale.pow(2).mean())
            c.weight.mul_(scale.reshape(-1, *[1] * (c.weight.dim() - 1)))
    return model, pairs
