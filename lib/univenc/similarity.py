"""Comparing channel weight covariances of two networks (Sec. 3.2-3.3, Fig. 2-4).

- eigenvector cosine matrices |<u_i, v_j>| (chance level 1/sqrt(d));
- Bures-Wasserstein cosine, eq. 5: cos(C1, C2) = ||C1^{1/2} C2^{1/2}||_* / sqrt(tr C1 tr C2);
- normalised similarity, eq. 6: S = (cos(C1, C2) - floor) / (ceiling - floor), with the floor
  cos(C1, O C1 O^T) for Haar-random rotations O and the ceiling cos(C1, hat C1) for hat C1 the shrunk covariance
  of Cout Gaussian samples of covariance C1 + I (a network "of the same law");
- :func:`compare`, which aligns two networks and tabulates all of it per layer.

Covariances are handled as retained eigenpairs (values (r,), vectors (d, r)): with C_i = U_i L_i U_i^T,
||C1^{1/2} C2^{1/2}||_* is the nuclear norm of L1^{1/2} U1^T U2 L2^{1/2}: O(d r1 r2), exact.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import nn

from .alignment import accumulate_pair_statistics, pair_layers, procrustes
from .covariance import layer_spectrum, noise_variance, rotate_spectrum, shrink_eigenvalues

__all__ = ["eigenvector_cosines", "bw_cosine", "bw_cosine_dense", "random_rotation_floor", "canonical_signs",
           "resampling_ceiling", "normalised_similarity", "NormalisedSimilarity", "compare", "compare_many",
           "Comparison", "with_travel", "ChannelView", "unpaired_layers", "MIN_CEILING_GAP", "MEMORY_BUDGET",
           "pair_bytes", "group_pairs"]


def eigenvector_cosines(vectors_a: np.ndarray, vectors_b: np.ndarray, n: int | None = None) -> np.ndarray:
    """|cos| between the leading ``n`` eigenvectors (columns of (d, m) arrays): (n, n). Chance is 1/sqrt(d)."""
    if vectors_a.shape[0] != vectors_b.shape[0]:
        raise ValueError(f"eigenvectors live in different spaces: d = {vectors_a.shape[0]} and "
                         f"{vectors_b.shape[0]}; align the networks first")
    n = min(vectors_a.shape[1], vectors_b.shape[1]) if n is None else n
    return np.abs(vectors_a[:, :n].T @ vectors_b[:, :n])


def bw_cosine(values_1, vectors_1, values_2, vectors_2) -> float:
    """Eq. 5 from eigenpairs: values (r_i,) >= 0 and orthonormal vectors (d, r_i). In [0, 1]; 0 if either is 0."""
    values_1, values_2 = np.clip(values_1, 0, None), np.clip(values_2, 0, None)
    t = values_1.sum() * values_2.sum()
    if t <= 0:
        return 0.0
    m = np.sqrt(values_1)[:, None] * (vectors_1.T @ vectors_2) * np.sqrt(values_2)[None, :]
    return float(np.linalg.svd(m, compute_uv=False).sum() / np.sqrt(t))


def _psd_root(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix; eigenvalues below rounding level are set to 0."""
    vals, vecs = np.linalg.eigh((c + c.T) / 2)
    vals[vals < max(vals.max(), 0) * c.shape[0] * np.finfo(float).eps] = 0.0
    return (vecs * np.sqrt(vals)) @ vecs.T


def bw_cosine_dense(c1: np.ndarray, c2: np.ndarray, root1: np.ndarray | None = None) -> float:
    """Eq. 5 for dense PSD matrices (d, d) with full eigendecompositions, O(d^3): the reference that the fast
    path is tested and benchmarked against. ||C1^1/2 C2^1/2||_* = sum_i sqrt(mu_i), mu the eigenvalues of
    C1^1/2 C2 C1^1/2; those below rounding level count as 0 (their square roots would add noise).
    ``root1``: C1^1/2, if already computed."""
    t = np.trace(c1) * np.trace(c2)
    if t <= 0:
        return 0.0
    root1 = _psd_root(c1) if root1 is None else root1
    mu = np.linalg.eigvalsh(root1 @ c2 @ root1)
    mu = mu[mu > max(mu.max(), 0) * len(mu) * np.finfo(float).eps]
    return float(np.sqrt(mu).sum() / np.sqrt(t))


def haar_frame(d: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """O U for a Haar-random rotation O and any fixed orthonormal U (d, r): a Haar-random orthonormal frame,
    drawn by QR of a Gaussian (d, r) with the signs of R's diagonal fixed. O(d r^2) instead of O(d^3)."""
    q, rr = np.linalg.qr(rng.standard_normal((d, r)))
    return q * np.sign(np.diag(rr))


def random_rotation_floor(values, vectors, n_draws: int = 5, seed: int = 0) -> np.ndarray:
    """cos(C1, O C1 O^T) for ``n_draws`` Haar-random rotations O: the floor of eq. 6. Returns (n_draws,)."""
    rng = np.random.default_rng(seed)
    d, r = vectors.shape
    return np.array([bw_cosine(values, vectors, values, haar_frame(d, r, rng)) for _ in range(n_draws)])


def resample(values, vectors, cout: int, rng: np.random.Generator, noise: float = 1.0) -> np.ndarray:
    """Cout Gaussian samples (Cout, d) of covariance C1 + noise I, with C1 = vectors diag(values) vectors^T.
    The draw depends on C1 only, not on the signs an eigensolver gave the vectors (:func:`canonical_signs`)."""
    d, r = vectors.shape
    signal = (rng.standard_normal((cout, r)) * np.sqrt(np.clip(values, 0, None))) @ canonical_signs(vectors).T
    return signal + np.sqrt(noise) * rng.standard_normal((cout, d))


def canonical_signs(vectors: np.ndarray) -> np.ndarray:
    """(d, r) vectors, each column multiplied by the sign of its largest-magnitude entry. Eigenvectors are defined
    up to sign; without this, two equal covariances whose solvers chose other signs got other resampled layers,
    and the ceiling of eq. 6 moved by its Monte Carlo spread (up to 0.66 in S on ResNet layers of rank 1)."""
    largest = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])]
    return vectors * np.where(largest < 0, -1.0, 1.0)


def resampling_ceiling(values, vectors, cout: int, n_draws: int = 5, seed: int = 0,
                       noise: float = 1.0) -> np.ndarray:
    """cos(C1, hat C1) for ``n_draws`` resamples: hat C1 is the eq.-3-shrunk covariance of Cout Gaussian
    samples of covariance C1 + noise I, i.e. another layer of Cout neurons drawn from the same law. (n_draws,)"""
    rng = np.random.default_rng(seed)
    d = vectors.shape[0]
    out = []
    for _ in range(n_draws):
        x = resample(values, vectors, cout, rng, noise) / np.sqrt(cout * noise)
        lam, vecs = _top_eigenpairs(x)
        shrunk = shrink_eigenvalues(lam, d / cout) * noise
        keep = shrunk > 0
        out.append(bw_cosine(values, vectors, shrunk[keep], vecs(keep)))
    return np.array(out)


def _top_eigenpairs(x: np.ndarray):
    """Eigenvalues of x^T x, descending (min(n, d) of them), and a function giving the eigenvectors (d, m) of
    those selected by a boolean mask, from the eigendecomposition of the smaller Gram matrix: about 10x faster
    than the SVD of a (512, 4608) x. The ceiling keeps only eigenvalues above the noise edge (1 + sqrt(gamma))^2,
    far from 0, where v = x^T u / sqrt(lambda) is as accurate as the SVD's."""
    n, d = x.shape
    if n >= d:
        lam, v = np.linalg.eigh(x.T @ x)
        return lam[::-1], lambda keep: v[:, ::-1][:, keep]
    lam, u = np.linalg.eigh(x @ x.T)
    lam, u = lam[::-1], u[:, ::-1]
    return lam, lambda keep: (x.T @ u[:, keep]) / np.sqrt(lam[keep])


# S is undefined where its ceiling exceeds its floor by less than this (fixed before the cpu run of the architectures
# issue): dividing by a near-zero gap made S and its spread explode (one ResNet layer's error bar spanned -60 to +60).
MIN_CEILING_GAP = 0.05


@dataclass
class NormalisedSimilarity:
    """Eq. 6 with its ingredients; floor and ceiling are (n_draws,) arrays of independent draws.

    How to read S: 0 is the random-rotation floor (C2 no closer to C1 than a randomly rotated C1 is) and 1 the
    resampling ceiling (two independent draws of Cout neurons from one covariance: as close as two networks "of the
    same law" get). A network compared with itself, or with a near copy, has no sampling noise between the two, so
    it scores above 1."""
    cos: float
    floor: np.ndarray
    ceiling: np.ndarray
    empty_2: bool = False  # C2 kept no eigenvalue above the noise: cos is 0 whatever C1 is, so S says nothing

    @property
    def status(self) -> str:
        """"defined", or why S is not: no eigenvalue of C1 (or of C2) above the noise, or a ceiling too close to
        the floor. Eq. 6 places C2 between a rotated and a resampled C1; a C2 that eq. 3 shrinks to 0 (a layer that
        kept nothing but its initial noise) scores cos = 0, below any floor, which measures that layer's lack of
        structure, not a difference of encodings."""
        if self.empty_2:
            return "S undefined (no eigenvalue of network b above the noise)"
        f, c = self.floor.mean(), self.ceiling.mean()
        if not c > f:
            return "S undefined (no eigenvalue above the noise)"
        return "defined" if c - f >= MIN_CEILING_GAP else "S undefined (ceiling ≈ floor)"

    @property
    def value(self) -> float:
        """S; NaN where :attr:`status` says it is undefined."""
        f, c = self.floor.mean(), self.ceiling.mean()
        return float((self.cos - f) / (c - f)) if self.status == "defined" else float("nan")

    @property
    def spread(self) -> float:
        """Standard deviation of S that the scatter of the floor's and the ceiling's draws gives it, to first order:
        sqrt((dS/df sd_f)^2 + (dS/dc sd_c)^2) at the means (the two sets of draws are independent). NaN where S is
        undefined or there is one draw. The standard deviation of S over paired draws, used before, divides by each
        draw's own gap: on a layer of rank 1, whose ceiling draws scatter, it reached 600 while the means were 0.36
        apart (fac_pneumoniamnist's first layer, cpu run of 5 December)."""
        if self.status != "defined" or min(len(self.floor), len(self.ceiling)) < 2:
            return float("nan")
        f, c = self.floor.mean(), self.ceiling.mean()
        d_floor, d_ceiling = (self.cos - c) / (c - f) ** 2, -(self.cos - f) / (c - f) ** 2
        return float(np.hypot(d_floor * self.floor.std(), d_ceiling * self.ceiling.std()))


def normalised_similarity(values_1, vectors_1, values_2, vectors_2, cout: int, n_draws: int = 5,
                          seed: int = 0) -> NormalisedSimilarity:
    """Eq. 6 for C1 (network a, aligned; Cout neurons) and C2, both given as retained eigenpairs."""
    return NormalisedSimilarity(
        bw_cosine(values_1, vectors_1, values_2, vectors_2),
        random_rotation_floor(values_1, vectors_1, n_draws, seed),
        resampling_ceiling(values_1, vectors_1, cout, n_draws, seed + 1),
        empty_2=not np.clip(values_2, 0, None).sum() > 0)


@dataclass
class Comparison:
    """Result of :func:`compare`: ``table`` (one row per layer pair), eigenvector cosine matrices
    ``cosines[layer] = {"aligned": (n, n), "unaligned": (n, n) or None}``, the rotations and the input stats, and
    ``unpaired``: every other weight layer of the two networks (network, layer, status: why it is not compared)."""
    table: pd.DataFrame
    cosines: dict = field(default_factory=dict)
    rotations: dict = field(default_factory=dict)
    statistics: list = field(default_factory=list)
    unpaired: pd.DataFrame = field(default_factory=pd.DataFrame)


def unpaired_layers(net_a, net_b, layers, include_linear: bool) -> pd.DataFrame:
    """Every weight layer of the two networks that ``layers`` (the compared pairs) leaves out, and why."""
    from .spatial import weight_layers

    rows = []
    for side, net, paired in (("a", net_a, {a for (a, _), _ in layers}), ("b", net_b, {b for _, (b, _) in layers})):
        for name, m in weight_layers(net):
            if name in paired:
                continue
            if isinstance(m, nn.Conv2d) and m.groups > 1:
                why = "depthwise" if m.groups == m.in_channels else "grouped"
                status = f"not compared: a {why} conv mixes no channels across groups (no channel covariance)"
            elif isinstance(m, nn.Linear) and not include_linear:
                status = "not compared: linear layer (include_linear=True compares them)"
            elif isinstance(m, (nn.Conv2d, nn.Linear)):
                status = "not compared: no layer of the other network to pair it with (pass pairs=...)"
            else:
                status = f"not compared: {type(m).__name__} weights do not map input channels"
            rows.append(dict(network=side, layer=name, status=status))
    return pd.DataFrame(rows, columns=["network", "layer", "status"])


def compare(net_a, net_b, batches, n_draws: int = 5, seed: int = 0, n_vectors: int = 64,
            include_linear: bool = False, max_batches: int | None = None, progress: bool = True,
            pairs=None, inits=None, by: str = "auto", input_size=None) -> Comparison:
    """Align network a on network b layer by layer and compare their channel weight covariances.

    batches : iterable of input tensors (N, C, H, W) (or (x, y) tuples), preprocessed as in training.
    n_draws, seed : draws of the floor and the ceiling of eq. 6.
    n_vectors : size of the eigenvector cosine matrices kept per layer.
    pairs : which layers to compare, [(name_a, name_b), ...]; default ``by="auto"``: by name when the two networks'
        layer names match, else by order when they have the same layers, else by input map size and stage (two
        architectures; :func:`univenc.alignment.pair_layers`, ``input_size`` for the maps).
    Networks of different widths are aligned by a semi-orthogonal Procrustes rotation and compared in the narrower
    input space; layers of different kernel sizes as :class:`ChannelView`s (``view`` column: "channels").

    The table's columns: layer_a, layer_b, d (input dim of the covariance, Cin k^2), Cout_a, Cout_b, rank_a,
    rank_b (eigenvalues kept by eq. 3), r_eff_a, r_eff_b (eq. 4), cos_bw (eq. 5, aligned), cos_bw_unaligned,
    floor, ceiling, S (eq. 6), S_spread and S_status (S is NaN where the ceiling exceeds the floor by less than
    ``MIN_CEILING_GAP``: "S undefined (ceiling ≈ floor)"), residual (relative Procrustes residual of the
    inputs), view; with
    ``inits`` = (initial weights of a, of b) (networks, state dicts or checkpoint files), also travel_a and
    travel_b: each layer's ||W - W0|| / ||W0|| (:mod:`univenc.travel`).
    """
    layers = pair_layers(net_a, net_b, include_linear, pairs, by, input_size)
    res = compare_many({"a": net_a, "b": net_b}, [("a", "b")], batches, n_draws, seed, n_vectors, include_linear,
                       max_batches, progress, layer_pairs={("a", "b"): layers})[("a", "b")]
    res.unpaired = unpaired_layers(net_a, net_b, layers, include_linear)
    if inits is not None:
        res.table = with_travel(res.table, net_a, net_b, *inits)
    return res


def with_travel(table: pd.DataFrame, net_a, net_b, init_a, init_b) -> pd.DataFrame:
    """A :func:`compare` table with travel_a and travel_b, each layer's travel from its network's initial weights
    (None: that column is NaN)."""
    from .travel import init_weights, relative_travel

    out = table.copy()
    for side, net, init in (("a", net_a, init_a), ("b", net_b, init_b)):
        initial = init_weights(init) if init is not None else None
        modules = dict(net.named_modules())
        out[f"travel_{side}"] = [relative_travel(modules[name].weight, initial[f"{name}.weight"])
                                 if initial is not None else np.nan for name in table[f"layer_{side}"]]
    return out


# Bytes of float64 cross moments (and kept rotations) that :func:`compare_many` holds at once. At the paper's width
# one factorized VGG-11 pair needs 750 MB of each; Fig. 3's 36 pairs at once would need 54 GB.
MEMORY_BUDGET = 4 * 2 ** 30


def _input_dim(m) -> int:
    return int(m.weight.shape[1])  # Cin of a conv (groups == 1) or a linear layer: the samples' dimension


def pair_bytes(layers, keep_matrices: bool = True) -> int:
    """Bytes of the float64 d_b x d_a cross moments of one pair of networks' ``layers`` (as :func:`pair_layers`
    gives them), twice that when its Procrustes rotations are kept as well."""
    return 8 * (2 if keep_matrices else 1) * sum(_input_dim(ma) * _input_dim(mb) for (_, ma), (_, mb) in layers)


def group_pairs(layer_pairs: dict, budget: int = MEMORY_BUDGET, keep_matrices: bool = True) -> list[list]:
    """The pairs of ``layer_pairs`` ({pair: layers}) in consecutive groups of at most ``budget`` bytes each
    (:func:`pair_bytes`), in their order; a pair larger than the budget forms a group of its own."""
    groups, size = [], budget + 1
    for pair, layers in layer_pairs.items():
        cost = pair_bytes(layers, keep_matrices)
        if size + cost > budget:
            groups.append([])
            size = 0
        groups[-1].append(pair)
        size += cost
    return groups


def compare_many(nets: dict, pairs, batches, n_draws: int = 5, seed: int = 0, n_vectors: int = 64,
                 include_linear: bool = False, max_batches: int | None = None, progress: bool = True,
                 layer_pairs: dict | None = None, memory_budget: int = MEMORY_BUDGET,
                 keep_matrices: bool = True) -> dict:
    """:func:`compare` of several pairs of networks, in as few passes over ``batches`` as ``memory_budget`` allows
    (:func:`group_pairs`): in each pass every network of the pass runs once per batch however many pairs it is in
    (:func:`univenc.alignment.accumulate_pair_statistics`).

    nets : {key: network}; pairs : [(key_a, key_b), ...].
    batches : re-iterable (a list, a DataLoader) when the pairs need more than one pass.
    layer_pairs : {(key_a, key_b): [((name_a, module_a), (name_b, module_b)), ...]} for some pairs; the others
        are paired by :func:`univenc.alignment.pair_layers`.
    memory_budget : bytes of cross moments held at once (a pair larger than it is compared alone).
    keep_matrices : keep each Comparison's d x d ``rotations`` and ``statistics``; False keeps the tables and
        cosine matrices only, so that the memory does not grow with the number of pairs.
    Returns {(key_a, key_b): Comparison}, each what ``compare(nets[key_a], nets[key_b], ...)`` returns; the same
    numbers whatever the grouping.
    """
    layer_pairs = {(a, b): (layer_pairs or {}).get((a, b)) or pair_layers(nets[a], nets[b], include_linear)
                   for a, b in pairs}
    for (a, b), layers in layer_pairs.items():  # before any forward pass, naming the layer
        for (na, ma), (nb, mb) in layers:
            for name, m, net in ((na, ma, a), (nb, mb, b)):
                if not bool(m.weight.detach().isfinite().all()):
                    raise ValueError(f"layer {name} of network {net} has non-finite weights (NaN or inf): was its "
                                     f"training diverging?")
    groups = group_pairs(layer_pairs, memory_budget, keep_matrices)
    if len(groups) > 1 and isinstance(batches, Iterator):
        raise ValueError(f"these {len(layer_pairs)} pairs need {len(groups)} passes over the batches within "
                         f"memory_budget={memory_budget} bytes, but batches is a one-shot iterator: pass a list or a "
                         f"DataLoader, or a larger memory_budget")
    spectra = {}  # unrotated spectra, computed once per layer whatever the number of pairs it is in

    def spectrum(m):
        if id(m) not in spectra:
            spectra[id(m)] = layer_spectrum(m)
        return spectra[id(m)]

    out = {}
    for group in groups:
        stats = accumulate_pair_statistics({k: nets[k] for pair in group for k in pair},
                                           {pair: layer_pairs[pair] for pair in group}, batches,
                                           max_batches=max_batches, progress=progress)
        for pair in group:
            res = out[pair] = _compare_layers(layer_pairs[pair], stats.pop(pair), spectrum, n_draws, seed, n_vectors)
            if not keep_matrices:
                res.rotations, res.statistics = {}, []
    return out


class ChannelView:
    """A layer's weight seen over its input channels alone: each of the Cout k^2 (neuron, tap) rows of a k x k conv
    is a sample over Cin, as for a 1x1 conv or a linear layer. Two layers of different kernel sizes (a ResNet's 3x3
    conv, a ConvNeXt's pointwise layer) are compared so, in the space their Procrustes alignment acts on. The noise
    variance of eq. 3 is the layer's own; eq. 3's gamma becomes Cin / (Cout k^2)."""

    def __init__(self, module):
        w = module.weight.detach()
        self.weight = w.permute(0, *range(2, w.dim()), 1).reshape(-1, w.shape[1]) if w.dim() > 2 else w
        self.init_variance = noise_variance(module)


def _taps(m) -> int:
    return int(np.prod(m.weight.shape[2:])) if m.weight.dim() > 2 else 1


def _aligned_spectra(ma, mb, rot, spectrum):
    """(spectrum of a, spectrum of b) in one space: the narrower of the two input spaces. ``rot`` (Cin_b, Cin_a)
    maps a's inputs onto b's. Equal widths: a rotated into b (``rotate_spectrum``, no new SVD); Cin_a > Cin_b: a
    projected into b's space (A w); Cin_a < Cin_b: b projected into a's (A^T w). Layers of different kernel sizes
    are compared as :class:`ChannelView`s."""
    if _taps(ma) != _taps(mb):
        va, vb = ChannelView(ma), ChannelView(mb)
        spec = lambda m, r=None: layer_spectrum(m, rotation=r)  # noqa: E731 (views are new objects: no cache)
    else:
        va, vb, spec = ma, mb, lambda m, r=None: layer_spectrum(m, rotation=r) if r is not None else spectrum(m)
    cin_b, cin_a = rot.shape
    if cin_a == cin_b:
        return (rotate_spectrum(spec(va), va.weight, rot), spec(vb)) if va is ma else (spec(va, rot), spec(vb))
    if cin_a > cin_b:
        return spec(va, rot), spec(vb)
    return spec(va), spec(vb, rot.T)


def _compare_layers(layers, stats, spectrum, n_draws, seed, n_vectors) -> Comparison:
    """The rows of :func:`compare` from the input statistics of each layer pair. C1 of eq. 6 is network a's
    covariance in the space the pair is compared in (:func:`_aligned_spectra`): its floor rotates it there, its
    ceiling resamples Cout_a neurons there, so that with equal widths the numbers are those of the same-width path."""
    rows, cosines, rotations = [], {}, {}
    for i, (((na, ma), (nb, mb)), st) in enumerate(zip(layers, stats)):
        rot = procrustes(st.cross)
        spec_a, spec_b = _aligned_spectra(ma, mb, rot, spectrum)
        if spec_a.d != spec_b.d:
            raise ValueError(f"layers {na} and {nb}: aligned input dims differ ({spec_a.d} vs {spec_b.d})")
        va, ua = spec_a.retained()
        vb, ub = spec_b.retained()
        sim = normalised_similarity(va, ua, vb, ub, spec_a.cout, n_draws, seed + 1000 * i)
        same_space = rot.shape[0] == rot.shape[1] and _taps(ma) == _taps(mb)
        raw_a = spectrum(ma) if same_space else None
        cos_raw = bw_cosine(*raw_a.retained(), vb, ub) if same_space else float("nan")
        n = min(n_vectors, spec_a.vectors.shape[1], spec_b.vectors.shape[1])
        cosines[na] = {"aligned": eigenvector_cosines(spec_a.vectors, spec_b.vectors, n),
                       "unaligned": eigenvector_cosines(raw_a.vectors, spec_b.vectors, n) if same_space else None,
                       "r_eff_a": spec_a.effective_rank, "r_eff_b": spec_b.effective_rank, "d": spec_a.d}
        rotations[na] = rot
        rows.append(dict(layer_a=na, layer_b=nb, depth=i + 1, d=spec_a.d, Cout_a=spec_a.cout, Cout_b=spec_b.cout,
                         rank_a=spec_a.rank, rank_b=spec_b.rank, r_eff_a=spec_a.effective_rank,
                         r_eff_b=spec_b.effective_rank, cos_bw=sim.cos, cos_bw_unaligned=cos_raw,
                         floor=float(sim.floor.mean()), ceiling=float(sim.ceiling.mean()), S=sim.value,
                         S_spread=sim.spread, S_status=sim.status, residual=st.residual(rot),
                         view="channels" if _taps(ma) != _taps(mb) else "full"))
    return Comparison(pd.DataFrame(rows), cosines, rotations, stats)
