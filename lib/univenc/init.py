"""Networks drawn from learned weight covariances: rainbow networks (:func:`sample_like`) and a universal
initialisation from a small covariance file (:func:`universal_init`), with a learning-free closed form of its spatial
part (:func:`closed_form_encoding`).

The rainbow model (Guth, Ménard, Rochette & Mallat 2024; ``../shared/docs/rainbow.md``) reads a trained layer's
neurons as i.i.d. draws from one covariance, in coordinates that an orthogonal rotation of its input activations
aligns with a reference network's. Covariances are those the package compares: a layer's weight rows over Cin k^2
inputs (``univenc.covariance``), normalised by the initialisation's variance, with eq. 3's shrinkage keeping the
spikes above the noise and the noise part (the identity) put back: C = I + V diag(shrunk) V^T.

- :func:`sample_like` draws a new network of the source's architecture (or width: the alignment is then a
  semi-orthogonal Procrustes rotation), layer after layer: the new network's input activations of a layer are
  aligned to the source's on the given images, the source's covariance is expressed in the new coordinates, Cout
  rows are drawn from it, and BatchNorm statistics are recomputed on the images. ``layers=L`` samples the first L
  layers and keeps the others (the first kept one rotated into the new coordinates).
- Without the source network nothing aligns channels, so a covariance file (:func:`encode`) keeps what is
  basis-free: each layer's spatial covariance (k^2 x k^2: pixels are the same in every network), its channel
  spectrum (eq. 3's shrunk eigenvalues over Cin, the rows being the Cout k^2 (neuron, tap) pairs), and the first
  layer's whole covariance (its input, the image, is shared). :func:`universal_init` draws a layer from
  spatial (x) channel covariances with Haar-random channel eigenvectors, at the target's own widths (the spectrum
  truncated or padded with noise-level directions), with each layer's total variance that of its init.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .alignment import accumulate_pair_statistics, procrustes
from .covariance import layer_spectrum, noise_variance, rotate_inputs, shrink_eigenvalues, weight_matrix
from .spatial import spatial_covariance

__all__ = ["LayerEncoding", "encode", "average_encodings", "closed_form_encoding", "save_encoding", "load_encoding",
           "universal_init", "sample_like", "rainbow_depths", "probe_accuracy", "sampled_layers",
           "recompute_batchnorm", "input_alignment", "closed_form_spatial", "InitError"]


class InitError(ValueError):
    """An encoding that does not fit a network, or a covariance that is not one; the message says which layer."""


def sampled_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers an init draws: every trainable conv that mixes channels (groups = 1), in module order (for the
    factorized VGG, its 1x1 convs; its spatial filters are frozen and copied)."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.weight.requires_grad]


@dataclass
class LayerEncoding:
    """What a covariance file keeps of one layer (shapes in the docstrings of :func:`encode`)."""
    name: str
    k: int
    cin: int
    cout: int
    spatial: np.ndarray | None    # (k^2, k^2), trace k^2; None for a 1x1 conv
    channel: np.ndarray           # (r,) eq. 3's shrunk channel eigenvalues above the noise (noise = 1), descending
    full: np.ndarray | None       # (Cin k^2, Cin k^2) normalised covariance, I + shrunk spikes (first layer only)
    scale: float                  # mean squared weight over the init variance: how far training grew the layer


def _psd_check(c: np.ndarray, what: str) -> np.ndarray:
    c = np.asarray(c, float)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.all(np.isfinite(c)):
        raise InitError(f"{what}: expected a finite square matrix, got shape {c.shape}")
    c = (c + c.T) / 2
    vals = np.linalg.eigvalsh(c)
    if vals.min() < -1e-6 * max(vals.max(), 1e-12):
        raise InitError(f"{what} is not positive semi-definite (smallest eigenvalue {vals.min():.3g}, largest "
                        f"{vals.max():.3g}): it is not a covariance")
    return c


def _shrunk_covariance(m: nn.Module) -> np.ndarray:
    """I + V diag(shrunk) V^T of a layer's normalised covariance over its Cin k^2 inputs
    (:func:`univenc.covariance.layer_spectrum`): eq. 3's spikes above the noise, the noise put back."""
    spectrum = layer_spectrum(m)
    values, vectors = spectrum.retained()
    return np.eye(spectrum.d) + (vectors * values) @ vectors.T


def encode(model: nn.Module, source: str = "") -> dict:
    """The covariance file of ``model``: {"source", "layers": [LayerEncoding per :func:`sampled_layers`]}.

    Per layer, with W its weight over the noise standard deviation (so that an untrained layer has unit variance):
    ``spatial`` the k^2 x k^2 spatial covariance of its filters (:func:`univenc.spatial.spatial_covariance`),
    scaled to trace k^2; ``channel`` eq. 3's shrunk eigenvalues of its channel covariance, each of its Cout k^2
    (neuron, tap) rows a sample over Cin; ``full`` for the first layer, the whole normalised covariance over its
    Cin k^2 inputs, I + shrunk spikes; ``scale`` the mean of W^2."""
    layers = []
    for i, (name, m) in enumerate(sampled_layers(model)):
        w = m.weight.detach().double() / np.sqrt(noise_variance(m))
        cout, cin, k = w.shape[0], w.shape[1], w.shape[-1]
        taps = w.permute(0, 2, 3, 1).reshape(-1, cin).numpy()  # (Cout k^2, Cin)
        _, s, _ = np.linalg.svd(taps / np.sqrt(len(taps)), full_matrices=False)
        channel = shrink_eigenvalues(s ** 2, cin / len(taps))
        spatial = None
        if k > 1:
            spatial = spatial_covariance(w)
            spatial = spatial * (k * k / np.trace(spatial))
        full = _shrunk_covariance(m) if i == 0 else None
        layers.append(LayerEncoding(name, k, cin, cout, spatial, channel[channel > 0], full,
                                    float((w ** 2).mean())))
    if not layers:
        raise InitError(f"{type(model).__name__} has no trainable conv layer that mixes channels: nothing to encode")
    return {"source": source, "layers": layers}


def average_encodings(encodings: list[dict], source: str = "average") -> dict:
    """One encoding from several of one architecture family (a zoo): per layer, the mean spatial covariance,
    the mean channel spectrum (shorter spectra padded with zeros), the mean first-layer covariance and scale."""
    depth = {len(e["layers"]) for e in encodings}
    if len(depth) != 1:
        raise InitError(f"encodings of different depths ({sorted(depth)} layers) cannot be averaged")
    layers = []
    for group in zip(*(e["layers"] for e in encodings)):
        first = group[0]
        if any(g.k != first.k for g in group):
            raise InitError(f"layer {first.name}: kernel sizes differ across the encodings ({[g.k for g in group]})")
        r = max(len(g.channel) for g in group)
        channel = np.mean([np.pad(g.channel, (0, r - len(g.channel))) for g in group], axis=0)
        spatial = np.mean([g.spatial for g in group], axis=0) if first.spatial is not None else None
        fulls = [g.full for g in group if g.full is not None]
        full = np.mean(fulls, axis=0) if len(fulls) == len(group) and len({f.shape for f in fulls}) == 1 else None
        layers.append(LayerEncoding(first.name, first.k, first.cin, first.cout, spatial, channel, full,
                                    float(np.mean([g.scale for g in group]))))
    return {"source": source, "layers": layers}


def closed_form_spatial(k: int = 3) -> np.ndarray:
    """A learning-free k^2 x k^2 spatial covariance: univenc's canonical eigenvectors f1..f5 (resampled to k x k,
    completed by an orthonormal basis of their complement) with a geometric spectrum a r^(i-1) fitted to the
    canonical set's shipped eigenvalues. Trace k^2."""
    from .models import CANONICAL_FILTERS_FILE
    from .spatial import to_common_grid

    with np.load(CANONICAL_FILTERS_FILE) as f:
        filters, shipped = f["filters"][:5].astype(float), f["eigenvalues"].astype(float)
    vecs = to_common_grid(filters, k).reshape(5, -1).T  # (k^2, 5)
    basis = np.linalg.qr(np.concatenate([vecs, np.eye(k * k)], axis=1))[0]  # f1..f5 first, then their complement
    slope, intercept = np.polyfit(np.arange(len(shipped)), np.log(shipped), 1)  # log a + i log r
    spectrum = np.exp(intercept + slope * np.arange(k * k))
    cov = (basis * spectrum) @ basis.T
    return cov * (k * k / np.trace(cov))


def closed_form_encoding(model: nn.Module) -> dict:
    """The learning-free baseline: every k x k layer of ``model`` with :func:`closed_form_spatial`, and no channel
    structure (identity channel covariance)."""
    layers = [LayerEncoding(name, m.weight.shape[-1], m.in_channels, m.out_channels,
                            closed_form_spatial(m.weight.shape[-1]) if m.weight.shape[-1] > 1 else None,
                            np.zeros(0), None, 1.0) for name, m in sampled_layers(model)]
    return {"source": "closed form (canonical eigenvectors, geometric spectrum)", "layers": layers}


def save_encoding(encoding: dict, path) -> None:
    """Write a covariance file (a few kB to MB: no weights), atomically."""
    from .storage import save_torch
    save_torch({"univenc_encoding": 1, "source": encoding["source"],
                "layers": [asdict(layer) for layer in encoding["layers"]]}, path)


def load_encoding(path) -> dict:
    """Read a covariance file written by :func:`save_encoding`, checking each covariance."""
    from .storage import load_checkpoint
    obj = load_checkpoint(path)
    if not isinstance(obj, dict) or obj.get("univenc_encoding") != 1:
        raise InitError(f"{path} is not a univenc covariance file (write one with univenc init)")
    layers = [LayerEncoding(**layer) for layer in obj["layers"]]
    for layer in layers:
        if layer.spatial is not None:
            _psd_check(layer.spatial, f"{path}: the spatial covariance of {layer.name}")
        if layer.full is not None:
            _psd_check(layer.full, f"{path}: the covariance of {layer.name}")
        if np.any(np.asarray(layer.channel) < 0):
            raise InitError(f"{path}: the channel spectrum of {layer.name} has negative eigenvalues")
    return {"source": obj["source"], "layers": layers}


def _haar(d: int, r: int, g: torch.Generator) -> np.ndarray:
    q, rr = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(rr))).numpy()


def _channel_covariance(spectrum: np.ndarray, cin: int, g: torch.Generator) -> np.ndarray:
    """I + V diag(spectrum) V^T over ``cin`` channels, V Haar-random: the source's spikes in random directions, the
    spectrum truncated to ``cin`` or padded with noise-level (0) spikes."""
    spikes = np.asarray(spectrum, float)[:cin]
    v = _haar(cin, len(spikes), g) if len(spikes) else np.zeros((cin, 0))
    return np.eye(cin) + (v * spikes) @ v.T


def _root(cov: np.ndarray) -> np.ndarray:
    """A square root R (R R^T = cov) of a PSD matrix, negative rounding clipped."""
    vals, vecs = np.linalg.eigh(cov)
    return vecs * np.sqrt(np.clip(vals, 0, None))


def _draw(cov: np.ndarray, n: int, g: torch.Generator) -> np.ndarray:
    """n rows from N(0, cov)."""
    return torch.randn(n, len(cov), generator=g, dtype=torch.float64).numpy() @ _root(cov).T


def _draw_kron(channel: np.ndarray, spatial: np.ndarray, n: int, g: torch.Generator) -> np.ndarray:
    """n rows from N(0, channel (x) spatial) over Cin k^2 inputs, channel-major (index c k^2 + pixel), as matrix
    normal draws R_c Z R_s^T: two small square roots instead of one of the (Cin k^2)^2 matrix."""
    rc, rs = _root(channel), _root(spatial)
    z = torch.randn(n, len(channel), len(spatial), generator=g, dtype=torch.float64).numpy()
    return (rc @ z @ rs.T).reshape(n, -1)


def universal_init(model: nn.Module, encoding: dict, seed: int = 0, keep_variance: bool = True) -> nn.Module:
    """Draw every :func:`sampled_layers` layer of ``model`` (in place; returned) from an encoding: the first
    layer's whole covariance where its input size matches, elsewhere channel (x) spatial covariances with
    Haar-random channel eigenvectors at the model's own widths. With ``keep_variance`` each layer's mean weight
    variance is its init's (the encoding's shape, not its trained scale). Raises :class:`InitError` where the model's
    layers do not match the encoding's (depth, kernel sizes)."""
    layers = sampled_layers(model)
    codes = encoding["layers"]
    if len(layers) != len(codes):
        raise InitError(f"{type(model).__name__} has {len(layers)} layers to draw, the encoding "
                        f"({encoding['source']}) {len(codes)}: they are not of one architecture family")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for (name, m), code in zip(layers, codes):
            k, cin = m.weight.shape[-1], m.in_channels
            if k != code.k:
                raise InitError(f"layer {name} is {k}x{k}, the encoding's {code.name} {code.k}x{code.k}")
            if code.full is not None and code.full.shape[0] == cin * k * k:
                cov = _psd_check(code.full, f"the covariance of {code.name}")
                w = _draw(cov, m.out_channels, g) / np.sqrt(np.trace(cov) / len(cov))
            else:
                channel = _channel_covariance(code.channel, cin, g)
                spatial = code.spatial if code.spatial is not None else np.ones((1, 1))
                mean_variance = np.trace(channel) * np.trace(spatial) / (cin * len(spatial))
                w = _draw_kron(channel, spatial, m.out_channels, g) / np.sqrt(mean_variance)
            w = w * np.sqrt(noise_variance(m) * (1.0 if keep_variance else code.scale))
            m.weight.copy_(torch.as_tensor(w, dtype=m.weight.dtype).reshape(m.weight.shape))
    return model


# --------------------------------------------------------------------------- rainbow networks

def recompute_batchnorm(model: nn.Module, batches) -> nn.Module:
    """Reset every BatchNorm's running statistics and recompute them on ``batches`` (a cumulative average over
    the images, in training mode, no gradient). Returns ``model`` in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch counts the same
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x[0] if isinstance(x, (tuple, list)) else x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    return model.eval()


def _source_covariance(m: nn.Module, shrink: bool) -> np.ndarray:
    """The source layer's normalised covariance over its Cin k^2 inputs: I + shrunk spikes, or W^T W / Cout."""
    if shrink:
        return _shrunk_covariance(m)
    w = weight_matrix(m.weight) / np.sqrt(noise_variance(m))
    return w.T @ w / len(w)


def _rotated(cov: np.ndarray, rotation: np.ndarray, k: int) -> np.ndarray:
    """A^T C A with A = rotation (d_src, d_new) acting on the channel axis of each of the k^2 taps: C in the new
    network's coordinates (Cin_new k^2)."""
    a = np.kron(rotation, np.eye(k * k))  # (d_src k^2, d_new k^2), channel-major as the weights' inputs are
    return a.T @ cov @ a


def input_alignment(new: nn.Module, layer_new: nn.Module, source: nn.Module, layer_source: nn.Module,
                    batches) -> np.ndarray:
    """The Procrustes rotation A (Cin_source, Cin_new) that maps the new network's input activations of a layer
    onto the source's on ``batches`` (A phi_new ~ phi_source): the identity for two identical networks."""
    stats = accumulate_pair_statistics({"new": new, "src": source},
                                       {("new", "src"): [(("new", layer_new), ("source", layer_source))]},
                                       batches, progress=False)
    return procrustes(stats[("new", "src")][0].cross)


def sample_like(source: nn.Module, batches, layers: int | None = None, aligned: bool = True, shrink: bool = True,
                seed: int = 0, target: nn.Module | None = None) -> nn.Module:
    """A rainbow network of ``source``: a copy of it (or ``target``, a network of the same family at other widths)
    whose first ``layers`` :func:`sampled_layers` (default: all) are drawn from the source's covariances, one
    after another, the others kept.

    batches : input images (N, C, H, W), preprocessed as in training: the alignment's and BatchNorm's data (use
        images the network will see, or a neutral probe set, and say which).
    aligned : align each layer's input activations to the source's by Procrustes before expressing the source's
        covariance in the new coordinates (False: the source's covariance as it is, the "unaligned" control).
    shrink : draw from I + eq. 3's shrunk spikes (False: from the raw covariance W^T W / Cout).
    The trained scale is kept (a rainbow network stands for the trained one). BatchNorm statistics are recomputed
    on ``batches`` after each layer; the first kept layer gets its inputs rotated into the new coordinates.
    Raises :class:`InitError` when ``target`` is not of the source's family."""
    n = len(sampled_layers(source))
    count = n if layers is None else layers
    if count == 0:
        return copy.deepcopy(target if target is not None else source).eval()
    for depth, net in rainbow_depths(source, batches, aligned, shrink, seed, target, last=count):
        if depth == count:
            return net
    raise InitError(f"layers must be between 0 and {n}, got {layers}")


def rainbow_depths(source: nn.Module, batches, aligned: bool = True, shrink: bool = True, seed: int = 0,
                   target: nn.Module | None = None, last: int | None = None):
    """Yield (L, the rainbow network whose first L layers are sampled) for L = 1 .. ``last`` (default: every
    layer), from one sequential draw: the networks of :func:`sample_like` for every depth at the cost of one. A
    ``target`` of other widths than the source's has no source layer to keep: only the whole draw is yielded."""
    new = copy.deepcopy(target if target is not None else source).eval()
    src_layers, new_layers = sampled_layers(source), sampled_layers(new)
    if [m.weight.shape[-1] for _, m in src_layers] != [m.weight.shape[-1] for _, m in new_layers]:
        raise InitError(f"{type(new).__name__} is not of {type(source).__name__}'s family: its layers to draw "
                        f"({len(new_layers)}) or their kernel sizes differ from the source's ({len(src_layers)})")
    last = len(src_layers) if last is None else last
    same_widths = all(ms.weight.shape == mn.weight.shape for (_, ms), (_, mn) in zip(src_layers, new_layers))
    if last < len(src_layers) and not same_widths:
        raise InitError("a target of other widths has no source layers to keep: sample all its layers")
    source = source.eval()
    batches = list(batches)
    g = torch.Generator().manual_seed(seed)
    for i, ((_, ms), (name, mn)) in enumerate(zip(src_layers, new_layers)):
        k = ms.weight.shape[-1]
        if i == 0 or not aligned:  # the first layer sees the image in both networks
            rotation = np.eye(ms.in_channels, mn.in_channels)
        else:  # new -> source coordinates, from the two networks' inputs of this layer on the images
            rotation = input_alignment(new, mn, source, ms, batches)  # (Cin_src, Cin_new)
        if i > 0 and same_widths:  # depth i: the first i layers sampled, this one kept, in the new coordinates
            yield i, _with_kept_layer(new, name, ms, rotation, batches)
        if i == last:
            return
        with torch.no_grad():
            cov = _rotated(_source_covariance(ms, shrink), rotation, k)
            w = _draw(cov, mn.out_channels, g) * np.sqrt(noise_variance(ms))
            mn.weight.copy_(torch.as_tensor(w, dtype=mn.weight.dtype).reshape(mn.weight.shape))
        recompute_batchnorm(new, batches)
    yield len(new_layers), new


def _with_kept_layer(new: nn.Module, name: str, source_layer: nn.Module, rotation: np.ndarray, batches):
    """A copy of ``new`` whose layer ``name`` holds the source's weights with their inputs rotated into the new
    coordinates (w -> A^T w), BatchNorm recomputed."""
    out = copy.deepcopy(new)
    layer = out.get_submodule(name)
    w = rotate_inputs(weight_matrix(source_layer.weight), source_layer.weight, rotation.T)
    with torch.no_grad():
        layer.weight.copy_(torch.as_tensor(w, dtype=layer.weight.dtype).reshape(layer.weight.shape))
    return recompute_batchnorm(out, batches)


def probe_accuracy(model: nn.Module, train: tuple, test: tuple, epochs: int = 40, batch_size: int = 256,
                   seed: int = 0) -> float:
    """Test accuracy of ``model`` (a :class:`univenc.models.VGG`) with only its classifier retrained: on its
    frozen pooled features of ``train`` = (float images (N, C, H, W), labels (N,)), a fresh classifier of the
    same shape (linear or MLP head) trained by Adam (lr 1e-3, ``epochs`` passes); accuracy on ``test``."""
    def features(x):
        with torch.no_grad():
            return torch.cat([torch.flatten(model.pool(model.features(b)), 1) for b in x.split(500)])
    model.eval()
    f_train, f_test = features(train[0]), features(test[0])
    torch.manual_seed(seed)
    head = copy.deepcopy(model.classifier)
    for m in head.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    head = head.float().train()
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    f_train, y = f_train.float(), train[1]
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch_size):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(head(f_train[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((head.eval()(f_test.float()).argmax(1) == test[1]).float().mean())
