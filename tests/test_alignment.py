"""Streamed Procrustes alignment against scipy's orthogonal_procrustes and all-at-once statistics."""
import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from univenc.alignment import (LayerPairingError, _sum_of_squares, accumulate_input_statistics,
                               accumulate_pair_statistics, analysed_layers, pair_layers, procrustes)


def small_net(seed, width=6, k=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, width, k, padding=k // 2, bias=False), nn.ReLU(),
                         nn.Conv2d(width, width + 2, k, padding=k // 2, bias=False), nn.ReLU(),
                         nn.Conv2d(width + 2, 5, 1, bias=False)).double()


def all_inputs(net, x):
    """Every analysed layer's input for all of x at once, as (samples, channels)."""
    out = []
    hooks = [m.register_forward_pre_hook(lambda m, i: out.append(i[0].permute(0, 2, 3, 1).reshape(-1, i[0].shape[1])))
             for _, m in analysed_layers(net)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    return [o.numpy() for o in out]


def test_streamed_cross_covariance_equals_all_at_once():
    a, b = small_net(0), small_net(1)
    x = torch.randn(24, 3, 7, 7, dtype=torch.float64)
    batches = list(torch.split(x, 5))  # uneven last batch
    stats = accumulate_input_statistics(a, b, batches, full=True, progress=False)
    for s, pa, pb in zip(stats, all_inputs(a, x), all_inputs(b, x)):
        np.testing.assert_allclose(s.cross, pb.T @ pa, rtol=1e-10, atol=1e-12 * np.abs(pb.T @ pa).max())
        np.testing.assert_allclose(s.cov_a, pa.T @ pa, rtol=1e-10)
        np.testing.assert_allclose(s.cov_b, pb.T @ pb, rtol=1e-10)
        assert s.count == 24 * 49
        assert s.sq_a == pytest.approx((pa ** 2).sum(), rel=1e-12)


def test_pairs_sharing_networks_run_each_network_once_per_batch_and_match_all_at_once():
    nets = {key: small_net(seed) for key, seed in zip("abc", (0, 1, 2))}
    calls = {key: 0 for key in nets}
    for key, net in nets.items():
        net.register_forward_hook(lambda m, i, o, key=key: calls.__setitem__(key, calls[key] + 1))
    x = torch.randn(24, 3, 7, 7, dtype=torch.float64)
    pairs = [("a", "b"), ("a", "c"), ("c", "b")]
    stats = accumulate_pair_statistics(nets, {p: pair_layers(nets[p[0]], nets[p[1]]) for p in pairs},
                                       list(torch.split(x, 5)), full=True, progress=False)
    assert calls == {"a": 5, "b": 5, "c": 5}  # 5 batches, each network once per batch: not once per pair
    for a, b in pairs:
        for s, pa, pb in zip(stats[(a, b)], all_inputs(nets[a], x), all_inputs(nets[b], x)):
            np.testing.assert_allclose(s.cross, pb.T @ pa, rtol=1e-10, atol=1e-12 * np.abs(pb.T @ pa).max())
            np.testing.assert_allclose(s.cov_b, pb.T @ pb, rtol=1e-10)
            assert s.sq_b == pytest.approx((pb ** 2).sum(), rel=1e-12) and s.count == 24 * 49


def test_alignment_passes_record_no_autograd_graph():
    """The passes only read layer inputs: a graph per batch would hold every activation of every network."""
    nets = {key: small_net(seed) for key, seed in zip("ab", (0, 1))}
    tracked = []
    for net in nets.values():
        net.register_forward_hook(lambda m, i, o: tracked.append(o.requires_grad))
    accumulate_pair_statistics(nets, {("a", "b"): pair_layers(nets["a"], nets["b"])},
                               [torch.randn(4, 3, 7, 7, dtype=torch.float64)], progress=False)
    assert tracked == [False, False]


def test_procrustes_matches_scipy_on_layer_inputs():
    a, b = small_net(0), small_net(3)
    x = torch.randn(16, 3, 6, 6, dtype=torch.float64)
    stats = accumulate_input_statistics(a, b, [x[:8], x[8:]], progress=False)
    pa, pb = all_inputs(a, x)[1], all_inputs(b, x)[1]  # same widths (6 and 6)
    r, _ = scipy.linalg.orthogonal_procrustes(pa, pb)   # min ||pa R - pb||: R = A^T
    np.testing.assert_allclose(procrustes(stats[1].cross), r.T, atol=1e-10)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(1, 8), st.integers(0, 1000))
def test_procrustes_is_semi_orthogonal_and_recovers_rotations(da, db, seed):
    rng = np.random.default_rng(seed)
    a = procrustes(rng.standard_normal((db, da)))
    assert a.shape == (db, da)
    if db >= da:
        np.testing.assert_allclose(a.T @ a, np.eye(da), atol=1e-10)
    else:
        np.testing.assert_allclose(a @ a.T, np.eye(db), atol=1e-10)
    # planted rotation: phi_b = O phi_a exactly
    o = scipy.linalg.qr(rng.standard_normal((da, da)))[0]
    x = rng.standard_normal((200, da))
    np.testing.assert_allclose(procrustes((x @ o.T).T @ x), o, atol=1e-8)


def test_float32_sums_of_squares_agree_with_a_float64_oracle():
    # a million float32 samples per column: one float32 BLAS dot over them all is off by 1.6e-5 here
    p = torch.rand(1_000_000, 4, generator=torch.Generator().manual_seed(0))
    oracle = float(np.sum(p.numpy().astype(np.float64) ** 2))
    assert _sum_of_squares(p) == pytest.approx(oracle, rel=1e-7)
    assert _sum_of_squares(p.double()) == pytest.approx(oracle, rel=1e-13)


def test_residual_is_zero_for_a_rotated_copy():
    torch.manual_seed(0)
    a = small_net(0)
    b = small_net(0)
    o = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))[0]
    with torch.no_grad():  # b's first layer outputs O times a's: same function up to a rotation of channels
        b[0].weight.copy_(torch.einsum("ij,jckl->ickl", o, a[0].weight))
        b[1] = nn.Identity()  # no ReLU, so the rotation passes through to layer 2's input
        a[1] = nn.Identity()
    stats = accumulate_input_statistics(a, b, [torch.randn(4, 3, 5, 5, dtype=torch.float64)], progress=False)
    rot = procrustes(stats[1].cross)
    np.testing.assert_allclose(rot, o.numpy(), atol=1e-8)
    assert stats[1].residual(rot) == pytest.approx(0.0, abs=1e-10)


def test_pairing_errors_are_clear():
    with pytest.raises(LayerPairingError, match="no nn.Conv2d"):
        analysed_layers(nn.Sequential(nn.Linear(3, 3)))
    deeper = nn.Sequential(small_net(0), nn.Conv2d(5, 5, 1))
    with pytest.raises(LayerPairingError, match="3 analysed layers.*4"):
        pair_layers(small_net(0), deeper, by="order")
    with pytest.raises(LayerPairingError, match="kernel sizes differ"):
        pair_layers(small_net(0, k=3), small_net(0, k=5), by="order")
    with pytest.raises(LayerPairingError, match="network b has no layer 2, 4"):
        pair_layers(small_net(0), nn.Sequential(nn.Conv2d(3, 5, 3)), by="name")


def test_empty_loader_is_rejected():
    with pytest.raises(ValueError, match="no batch"):
        accumulate_input_statistics(small_net(0), small_net(1), [], progress=False)


def test_depthwise_convs_are_not_paired():
    net = nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 8, 1))
    assert [n for n, _ in analysed_layers(net)] == ["1"]
