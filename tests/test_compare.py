"""compare() and spatial_report() on networks from elsewhere (torchvision, timm) and on known answers."""
import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from univenc.similarity import compare, compare_many
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
    assert (rep.status == "1x1: no spatial structure").sum() == 3 and len(rep) == 20


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
