"""compare() and spatial_report() on networks from elsewhere (torchvision, timm) and on known answers."""
import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torchvision
from hypothesis import given, settings, strategies as st
from torch import nn

from univenc.alignment import pair_layers
from univenc.similarity import compare, compare_many, group_pairs, pair_bytes
from univenc.spatial import spatial_report


def batches(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, size, size, generator=g) for _ in range(n)]


def test_compare_a_network_with_itself_is_perfect():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(16, 64, 3, padding=1, bias=False))
    with torch.no_grad():  # give layer 2 low-rank structure so that eq. 3 keeps some eigenvalues
        u = torch.randn(64, 3) @ torch.randn(3, 144)
        net[2].weight.add_(0.3 * u.reshape(64, 16, 3, 3))
    res = compare(net, net, batches(), n_draws=3, progress=False)
    row = res.table.iloc[1]
    assert row.cos_bw == pytest.approx(1.0, abs=1e-9) and row.residual == pytest.approx(0.0, abs=1e-6)
    assert row.S == pytest.approx((1 - row.floor) / (row.ceiling - row.floor))
    np.testing.assert_allclose(np.diag(res.cosines["2"]["aligned"])[:3], 1.0, atol=1e-6)


def test_compare_torchvision_vgg11_pair():
    torch.manual_seed(0)
    a, b = torchvision.models.vgg11(), torchvision.models.vgg11()
    res = compare(a.features, b.features, batches(1), n_draws=2, n_vectors=16, progress=False)
    t = res.table
    assert len(t) == 8 and list(t.d) == [27, 576, 1152, 2304, 2304, 4608, 4608, 4608]
    assert t.cos_bw.between(0, 1).all() or t.cos_bw.isna().any()
    assert set(res.cosines) == set(t.layer_a)


def test_compare_timm_resnet_pair_and_report():
    torch.manual_seed(0)
    a = timm.create_model("resnet18", pretrained=False, num_classes=10)
    b = timm.create_model("resnet18", pretrained=False, num_classes=10)
    res = compare(a, b, batches(1), n_draws=2, n_vectors=8, progress=False)
    assert len(res.table) == 20  # 17 3x3/7x7 convs + 3 downsample 1x1 convs, paired by order
    rep = spatial_report(a)
    assert (rep.status == "1x1: no spatial structure").sum() == 3 and len(rep) == 21  # and the fc layer


def test_compare_many_equals_compare_pair_by_pair():
    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(8),
                             nn.Conv2d(8, 32, 3, padding=1, bias=False), nn.ReLU()).eval()
    nets = {k: net(s) for k, s in zip("abc", (0, 1, 2))}
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    many = compare_many(nets, pairs, batches(), n_draws=2, progress=False)
    for a, b in pairs:
        one = compare(nets[a], nets[b], batches(), n_draws=2, progress=False)
        assert many[(a, b)].table.equals(one.table)
        for layer, cos in one.cosines.items():
            np.testing.assert_array_equal(many[(a, b)].cosines[layer]["aligned"], cos["aligned"])


def test_compare_many_in_groups_under_a_memory_budget_gives_the_same_numbers():
    def net(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(),
                             nn.Conv2d(8, 16, 3, padding=1, bias=False)).eval()
    nets = {k: net(s) for k, s in zip("abcd", range(4))}
    pairs = [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    one_pass = compare_many(nets, pairs, batches(), n_draws=2, progress=False)
    per_pair = pair_bytes(pair_layers(nets["a"], nets["b"]), keep_matrices=False)
    assert per_pair == 8 * (3 * 3 + 8 * 8)  # the float64 cross moments of the two layers' inputs
    assert len(group_pairs({p: pair_layers(nets[p[0]], nets[p[1]]) for p in pairs}, 2 * per_pair, False)) == 2
    grouped = compare_many(nets, pairs, batches(), n_draws=2, progress=False, memory_budget=2 * per_pair,
                           keep_matrices=False)
    assert list(grouped) == pairs
    for pair in pairs:
        pd.testing.assert_frame_equal(grouped[pair].table, one_pass[pair].table)
        for layer, cos in one_pass[pair].cosines.items():
            np.testing.assert_array_equal(grouped[pair].cosines[layer]["aligned"], cos["aligned"])
        assert grouped[pair].rotations == {} and grouped[pair].statistics == []
        assert set(one_pass[pair].rotations) == set(one_pass[pair].cosines) and len(one_pass[pair].statistics) == 2
    with pytest.raises(ValueError, match="one-shot iterator"):
        compare_many(nets, pairs, iter(batches()), n_draws=2, progress=False, memory_budget=per_pair)


@given(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.integers(1, 120))
@settings(max_examples=60, deadline=None)
def test_group_pairs_keeps_the_order_and_the_budget(dims, budget):
    layers = {(i, i + 1): [(("x", nn.Linear(d, 1)), ("y", nn.Linear(1, 1)))] for i, d in enumerate(dims)}
    groups = group_pairs(layers, budget=8 * budget, keep_matrices=False)
    assert [pair for group in groups for pair in group] == list(layers)
    for group in groups:  # within the budget, or a single pair that alone exceeds it
        assert len(group) == 1 or sum(dims[i] for i, _ in group) <= budget
    for g, h in zip(groups, groups[1:]):  # greedy: the next group's first pair did not fit
        assert sum(dims[i] for i, _ in g) + dims[h[0][0]] > budget


def _two_layer(c, m=6, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.ReLU(),
                         nn.Conv2d(c, m, 3, padding=1, bias=False)).double()


def test_equal_widths_give_the_same_numbers_through_the_cross_architecture_path():
    from univenc.models import VGG
    torch.manual_seed(0)
    a, b = VGG(10, 3, 0.125).eval(), VGG(10, 3, 0.125).eval()
    renamed = nn.Sequential(b.features)  # other layer names: paired by input map size and stage
    x = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))]
    same = compare(a, b, x, n_draws=2, progress=False).table
    cross = compare(a.features, renamed, x, n_draws=2, progress=False, by="map").table
    assert list(cross.layer_b) == ["0." + n.split(".", 1)[1] for n in same.layer_b]
    for col in ("d", "cos_bw", "floor", "ceiling", "S", "S_spread", "r_eff_a", "r_eff_b"):
        np.testing.assert_array_equal(cross[col].to_numpy(), same[col].to_numpy(), err_msg=col)


def test_a_network_embedded_in_a_wider_one_is_compared_in_the_narrower_space():
    """b holds a's 5 channels and 3 dead ones after its first layer, and reads them with a's weights plus noise on
    the dead ones: aligned, b's second-layer covariance projected into a's 5-channel space is a's exactly."""
    a, b = _two_layer(5), _two_layer(8, seed=1)
    with torch.no_grad():
        a[2].weight.normal_(0, 2.0)  # far above the init noise: eq. 3 keeps its spectrum
        b[0].weight.zero_()
        b[0].weight[:5] = a[0].weight
        b[2].weight[:, :5] = a[2].weight
        b[2].weight[:, 5:] = torch.randn(6, 3, 3, 3, dtype=torch.float64)
    x = [torch.randn(16, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))]
    for net_a, net_b in ((a, b), (b, a)):  # narrower space on either side
        t = compare(net_a, net_b, x, n_draws=3, progress=False, by="order").table
        assert list(t.d) == [27, 45]  # 3 x 3^2, then min(5, 8) x 3^2
        assert t.cos_bw.iloc[1] == pytest.approx(1.0, abs=1e-6)
    wide = compare(b, a, x, n_draws=3, progress=False, by="order").table
    assert 0 <= wide.floor.iloc[1] < wide.ceiling.iloc[1] <= 1


def test_layers_of_other_kernel_sizes_are_compared_over_their_channels():
    a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1, bias=False))
    b = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(8, 6, 1, bias=False))
    x = [torch.randn(8, 3, 12, 12, generator=torch.Generator().manual_seed(3))]
    t = compare(a, b, x, n_draws=2, progress=False).table  # auto: the second layers differ, so by map
    assert list(t.view) == ["full", "channels"] and list(t.d) == [27, 8]
    assert t.cos_bw.between(0, 1).all()


def test_s_is_undefined_where_the_ceiling_comes_close_to_the_floor():
    from univenc.similarity import MIN_CEILING_GAP, NormalisedSimilarity
    close = NormalisedSimilarity(0.5, np.array([0.40, 0.41]), np.array([0.42, 0.43]))
    assert np.isnan(close.value) and np.isnan(close.spread) and close.status == "S undefined (ceiling ≈ floor)"
    fine = NormalisedSimilarity(0.5, np.array([0.2, 0.2]), np.array([0.2 + MIN_CEILING_GAP, 0.8]))
    assert fine.status == "defined" and fine.value == pytest.approx((0.5 - 0.2) / (0.5 + MIN_CEILING_GAP / 2 - 0.2))
    assert NormalisedSimilarity(0.5, np.array([0.3]), np.array([0.2])).status.endswith("above the noise)")


@given(st.floats(0.0, 0.4), st.floats(0.46, 0.95), st.floats(-0.2, 1.2), st.floats(1e-5, 1e-4))  # gaps >= 0.06
def test_s_spread_is_the_first_order_sd_of_s_over_the_draws(floor, ceiling, cos, scatter):
    """With independent draws (sample covariance 0), it equals the sd of S over paired draws to first order in
    their scatter (here a fraction ``scatter`` of the gap: the second order is that fraction of the first); where
    one draw's ceiling meets its floor it stays bounded by the means' gap."""
    from univenc.similarity import NormalisedSimilarity
    a, b = np.array([-1.0, 1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0, 1.0])  # mean(a b) = mean(a) mean(b) = 0
    eps = scatter * (ceiling - floor)
    sim = NormalisedSimilarity(cos, floor + eps * a, ceiling + eps * b)
    per_draw = np.std((cos - sim.floor) / (sim.ceiling - sim.floor))
    assert sim.spread == pytest.approx(per_draw, rel=1e-2, abs=1e-9)
    wild = NormalisedSimilarity(cos, np.array([floor, floor]), np.array([floor + 1e-6, 2 * ceiling - floor - 1e-6]))
    gap = ceiling - floor
    assert wild.spread <= abs(cos - floor) / gap + 1e-12  # the sd over paired draws: |cos - floor| / 1e-6 / 2
    assert np.isnan(NormalisedSimilarity(cos, np.array([floor]), np.array([ceiling])).spread)


def test_s_is_undefined_where_network_b_keeps_no_eigenvalue_above_the_noise():
    # A C2 that eq. 3 shrinks to 0 has cos 0 with anything: without this rule S came out below the floor (-1.0 for
    # a cpu ResNet-18's downsampling layer against a VGG), a number about that layer's lack of structure.
    from univenc.similarity import normalised_similarity
    rng = np.random.default_rng(0)
    vectors = np.linalg.qr(rng.standard_normal((12, 3)))[0]
    values = np.array([5.0, 2.0, 1.0])
    empty = normalised_similarity(values, vectors, np.zeros(0), np.zeros((12, 0)), cout=40, n_draws=3)
    assert empty.cos == 0 and np.isnan(empty.value) and np.isnan(empty.spread)
    assert empty.status == "S undefined (no eigenvalue of network b above the noise)"
    same = normalised_similarity(values, vectors, values, vectors, cout=40, n_draws=3)
    assert same.status == "defined" and same.value > 1  # a copy has no sampling noise: above the ceiling
