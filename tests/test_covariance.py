"""Eq. 3 (shrinkage) and eq. 4 (effective rank) against random-matrix theory and closed forms."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest
import torch
from torch import nn

from univenc.covariance import (channel_covariance, covariance_eigenpairs, effective_rank, init_variance,
                                rotate_spectrum, shrink_eigenvalues, truncate_layer, truncate_weight,
                                weight_spectrum)


def test_untrained_layer_has_identity_covariance():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 4096, 3, bias=False)  # many neurons: C -> I
    c = channel_covariance(conv.weight)
    assert c.shape == (144, 144)
    assert np.diag(c).mean() == pytest.approx(1.0, rel=0.01)
    assert np.abs(c - np.eye(144)).max() < 0.15
    assert init_variance(144) == pytest.approx(conv.weight.detach().double().var().item(), rel=0.02)


@pytest.mark.parametrize("cout,d", [(2000, 500), (500, 1000)])
def test_pure_noise_shrinks_to_zero(cout, d):
    # Marchenko-Pastur noise lies below (1 + sqrt(gamma))^2 but for the top eigenvalue's Tracy-Widom
    # fluctuation, which crosses the edge with probability ~0.17 at any size: so all-zero in most draws,
    # and at most the top eigenvalue otherwise.
    all_zero = 0
    for seed in range(12):
        w = np.random.default_rng(seed).standard_normal((cout, d))
        lam = np.linalg.eigvalsh(w.T @ w / cout)
        shrunk = shrink_eigenvalues(lam, d / cout)
        assert (shrunk > 0).sum() <= 1
        all_zero += bool(np.all(shrunk == 0))
    assert all_zero >= 8


@pytest.mark.parametrize("strength", [2.0, 5.0, 20.0])
def test_planted_spike_is_recovered(strength):
    rng = np.random.default_rng(1)
    cout, d = 4000, 1000
    gamma = d / cout
    assert strength > np.sqrt(gamma)  # above the BBP threshold
    u = rng.standard_normal(d)
    u /= np.linalg.norm(u)
    w = rng.standard_normal((cout, d)) + np.sqrt(strength) * rng.standard_normal((cout, 1)) * u
    lam = np.sort(np.linalg.eigvalsh(w.T @ w / cout))[::-1]
    shrunk = shrink_eigenvalues(lam, gamma)
    assert shrunk[0] == pytest.approx(strength, rel=0.05)
    assert np.all(shrunk[1:] == 0)


def test_spike_below_threshold_is_zeroed():
    rng = np.random.default_rng(2)
    cout, d = 2000, 1000
    gamma = d / cout
    strength = 0.4 * np.sqrt(gamma)  # population 1 + s below 1 + sqrt(gamma)
    u = np.eye(d)[0]
    w = rng.standard_normal((cout, d)) + np.sqrt(strength) * rng.standard_normal((cout, 1)) * u
    lam = np.linalg.eigvalsh(w.T @ w / cout)
    assert np.all(shrink_eigenvalues(lam, gamma) == 0)


def test_shrinkage_closed_form_inverts_the_spike_map():
    # a population spike 1 + s appears in the sample spectrum at (1 + s)(1 + gamma / s)
    for gamma in [0.1, 0.5, 2.0]:
        for s in [1.5 * np.sqrt(gamma), 3.0, 10.0]:
            lam = (1 + s) * (1 + gamma / s)
            assert shrink_eigenvalues([lam], gamma)[0] == pytest.approx(s, rel=1e-12)
    with pytest.raises(ValueError, match="gamma"):
        shrink_eigenvalues([1.0], 0)


def test_effective_rank_closed_forms():
    assert effective_rank([3.0, 0, 0]) == 1.0
    assert effective_rank([1.0] * 5) == 3.0  # (1+...+5)/5
    assert effective_rank([0.0, 0.0]) == 0.0
    assert effective_rank([1.0, 2.0]) == effective_rank([2.0, 1.0])  # sorted internally


def test_weight_spectrum_matches_dense_eigh():
    torch.manual_seed(0)
    w = torch.randn(40, 8, 3, 3, dtype=torch.float64)
    spec = weight_spectrum(w)
    dense = np.sort(np.linalg.eigvalsh(channel_covariance(w)))[::-1]
    np.testing.assert_allclose(spec.eigenvalues, dense[:40], rtol=1e-10)
    assert spec.d == 72 and spec.cout == 40 and spec.gamma == 72 / 40
    vals, vecs = spec.retained()
    c_shrunk = (vecs * vals) @ vecs.T
    assert np.trace(c_shrunk) == pytest.approx(vals.sum())


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 30), rank=st.integers(0, 30), seed=st.integers(0, 2 ** 16))
def test_covariance_eigenpairs_equal_the_svd(n, d, rank, seed):
    """The Gram route against scipy's SVD: the same eigenvalues and, where they are distinct, the same vectors
    up to sign; rank-deficient matrices (its SVD fallback) included."""
    import scipy.linalg
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, d)) * rng.uniform(0.1, 10, size=d)
    if rank < min(n, d):
        w = w[:, :max(rank, 1)] @ rng.standard_normal((max(rank, 1), d)) if rank else np.zeros((n, d))
    lam, v = covariance_eigenpairs(w)
    _, s, vt = scipy.linalg.svd(w, full_matrices=False)
    m = min(n, d)
    assert lam.shape == (m,) and v.shape == (d, m)
    np.testing.assert_allclose(lam, s ** 2, rtol=1e-8, atol=1e-10 * max(s[0] ** 2, 1))
    np.testing.assert_allclose((v * lam) @ v.T, w.T @ w, atol=1e-8 * max(s[0] ** 2, 1))
    gaps = np.abs(np.diff(s ** 2, prepend=np.inf, append=-np.inf))
    distinct = (np.minimum(gaps[:-1], gaps[1:]) > 1e-3 * max(s[0] ** 2, 1)) & (s ** 2 > 1e-6 * max(s[0] ** 2, 1))
    cos = np.abs(np.sum(v[:, distinct] * vt.T[:, distinct], axis=0))
    np.testing.assert_allclose(cos, 1, atol=1e-6)


def test_rotation_acts_on_channels_of_each_pixel():
    rng = np.random.default_rng(0)
    w = torch.as_tensor(rng.standard_normal((6, 4, 3, 3)))
    a = np.linalg.qr(rng.standard_normal((4, 4)))[0]
    spec = weight_spectrum(w, rotation=a)
    kron = np.kron(a, np.eye(9))  # channel-major flattening: A kron I_{k^2}
    wr = w.reshape(6, -1).numpy() @ kron.T
    np.testing.assert_allclose(spec.eigenvalues, np.linalg.svd(wr / np.sqrt(6 * init_variance(36)), compute_uv=False) ** 2, rtol=1e-10)
    with pytest.raises(ValueError, match="Cin"):
        weight_spectrum(w, rotation=np.eye(5))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.sampled_from([1, 3]), st.integers(0, 1000))
def test_a_rotated_spectrum_equals_the_spectrum_of_the_rotated_weight(cout, cin, k, seed):
    rng = np.random.default_rng(seed)
    w = torch.as_tensor(rng.standard_normal((cout, cin, k, k)))
    a = np.linalg.qr(rng.standard_normal((cin, cin)))[0]
    fast, dense = rotate_spectrum(weight_spectrum(w), w, a), weight_spectrum(w, rotation=a)
    np.testing.assert_allclose(fast.eigenvalues, dense.eigenvalues, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(fast.shrunk, weight_spectrum(w).shrunk)
    # the same covariance, whatever the basis picked inside a degenerate eigenspace
    cov = lambda s: (s.vectors * s.eigenvalues) @ s.vectors.T
    np.testing.assert_allclose(cov(fast), cov(dense), atol=1e-9 * max(1.0, dense.eigenvalues.max()))
    with pytest.raises(ValueError, match="orthogonal"):
        rotate_spectrum(weight_spectrum(w), w, 2 * a)


def test_truncation_has_the_requested_rank_and_is_exact_at_full_rank():
    torch.manual_seed(0)
    lin = nn.Conv2d(10, 30, 1, bias=False)
    w3 = truncate_weight(lin.weight, 3)
    assert np.linalg.matrix_rank(w3.reshape(30, 10).numpy(), tol=1e-5) == 3
    torch.testing.assert_close(truncate_weight(lin.weight, 10), lin.weight.detach(), atol=1e-6, rtol=1e-5)
    model = nn.Sequential(lin)
    out = truncate_layer(model, "0", 2)
    assert np.linalg.matrix_rank(out[0].weight.detach().reshape(30, 10).numpy(), tol=1e-5) == 2
    assert np.linalg.matrix_rank(lin.weight.detach().reshape(30, 10).numpy()) == 10  # original untouched


def test_non_finite_weights_are_rejected():
    w = torch.randn(4, 3, 3, 3)
    w[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        channel_covariance(w)


def test_folding_the_batchnorm_scale_gives_the_effective_conv():
    import torchvision
    from univenc.covariance import fold_batchnorm_scale
    net = torchvision.models.resnet18(num_classes=10)
    g = torch.Generator().manual_seed(0)
    for m in net.modules():  # trained-like statistics and affine parameters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.num_features, generator=g) + 0.5
            m.running_var = torch.rand(m.num_features, generator=g) + 0.1
    before = net.layer1[0].conv1.weight.detach().clone()
    folded, pairs = fold_batchnorm_scale(net, (3, 32, 32))
    assert ("conv1", "bn1") in pairs and ("layer1.0.conv2", "layer1.0.bn2") in pairs
    assert ("layer2.0.downsample.0", "layer2.0.downsample.1") in pairs and len(pairs) == 20
    x = torch.randn(2, 64, 8, 8, generator=g)
    bn = net.layer1[0].bn1
    expected = net.layer1[0].conv1(x) * (bn.weight / torch.sqrt(bn.running_var + bn.eps))[None, :, None, None]
    torch.testing.assert_close(folded.layer1[0].conv1(x), expected.detach())
    assert torch.equal(net.layer1[0].conv1.weight, before)  # the model itself is left as it was


@given(st.floats(0.05, 20.0))
@settings(max_examples=5, deadline=None)
def test_folding_one_common_scale_leaves_the_effective_rank_unchanged(c):
    """Eq. 3's noise is folded with the weights: a BatchNorm scale common to all channels changes nothing."""
    from univenc.covariance import fold_batchnorm_scale, layer_spectrum
    g = torch.Generator().manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
    net[0].weight.data += 0.5 * torch.randn(16, 1, 1, 1, generator=g) * torch.randn(1, 3, 3, 3, generator=g)  # a spike
    net[1].weight.data.fill_(c)
    folded, _ = fold_batchnorm_scale(net, (3, 8, 8))
    before, after = layer_spectrum(net[0]), layer_spectrum(folded[0])
    assert before.effective_rank > 0.5
    np.testing.assert_allclose(after.effective_rank, before.effective_rank, rtol=1e-6)


def test_noise_variance_follows_the_layers_own_init():
    """eq. 3's noise is the init's variance: PyTorch's default, or what a layer declares (torchvision's ResNet
    draws Kaiming-normal fan-out weights, 3-6x the default's variance): untrained, nothing is above it."""
    from univenc.covariance import init_variance, layer_spectrum, noise_variance
    from univenc.models import resnet18

    conv = torch.nn.Conv2d(16, 32, 3)
    assert noise_variance(conv) == init_variance(16 * 9)
    torch.manual_seed(0)
    net = resnet18(10)
    layer = net.layer1[0].conv1
    assert noise_variance(layer) == pytest.approx(2 / (64 * 9))
    assert np.var(layer.weight.detach().numpy()) == pytest.approx(noise_variance(layer), rel=0.05)
    ranks = [layer_spectrum(m).rank for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(ranks) <= 1
    plain = torch.nn.Conv2d(64, 64, 3)
    plain.weight.data.copy_(layer.weight.data)  # the same weights read with the default init's noise
    assert layer_spectrum(plain).rank > 10
    from univenc.refs import resolve_model  # torchvision:resnet* references declare it too
    assert noise_variance(resolve_model("torchvision:resnet34").layer3[0].conv2) == pytest.approx(2 / (256 * 9))
