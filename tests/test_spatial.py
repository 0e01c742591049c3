"""Spatial covariance, eigen-images, the universality score, and each layer's input map size."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from univenc.spatial import (PADDING_STATUS, canonical_score_table, layer_input_sizes, random_init_weights,
                             spatial_covariance,
                             spatial_eigenvectors, spatial_report, spatial_similarity, to_common_grid)


def planted_weight(images, scales, n_filters=4000, seed=0):
    """Filters sum_i sqrt(scale_i) z_i image_i: their spatial covariance has eigen-images ``images``."""
    rng = np.random.default_rng(seed)
    k = images.shape[-1]
    coef = rng.standard_normal((n_filters, len(images))) * np.sqrt(scales)
    return torch.as_tensor((coef @ images.reshape(len(images), -1)).reshape(n_filters // 4, 4, k, k))


def orthonormal_images(k, n, seed=0):
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((k * k, n)))[0]
    return q.T.reshape(n, k, k)


def test_spatial_covariance_is_the_mean_outer_product():
    w = torch.randn(5, 3, 3, 3, dtype=torch.float64)
    f = w.reshape(15, 9).numpy()
    np.testing.assert_allclose(spatial_covariance(w), sum(np.outer(x, x) for x in f) / 15, rtol=1e-12)


@pytest.mark.parametrize("k", [3, 5])
def test_planted_eigen_images_are_recovered(k):
    imgs = orthonormal_images(k, 5)
    scales = np.array([10.0, 6.0, 3.0, 1.5, 0.7])
    vals, vecs = spatial_eigenvectors(planted_weight(imgs, scales))
    cos = np.abs(np.einsum("iab,iab->i", vecs[:5], imgs))
    assert np.all(cos > 0.99)
    assert np.all(np.diff(vals) <= 1e-12)  # descending
    np.testing.assert_allclose(np.linalg.norm(vecs.reshape(len(vecs), -1), axis=1), 1.0)


def test_sign_convention_is_deterministic():
    imgs = orthonormal_images(3, 5)
    w = planted_weight(imgs, np.array([5.0, 4, 3, 2, 1]))
    _, v1 = spatial_eigenvectors(w)
    _, v2 = spatial_eigenvectors(-w)  # same covariance, and the convention does not see the sign of w
    np.testing.assert_allclose(v1, v2, atol=1e-10)


def test_score_invariances():
    a = orthonormal_images(5, 5)
    assert spatial_similarity(a, a) == pytest.approx(1.0)
    flipped = a * np.array([1, -1, 1, -1, -1])[:, None, None]
    swapped = a[[1, 0, 2, 4, 3]]
    assert spatial_similarity(a, flipped) == pytest.approx(1.0)
    assert spatial_similarity(a, swapped) == pytest.approx(1.0)
    other = orthonormal_images(5, 5, seed=9)
    assert spatial_similarity(a, other) < 0.7


def test_common_grid_across_sizes():
    yy, xx = np.mgrid[-1:1:7j, -1:1:7j]
    blob7 = np.exp(-(xx ** 2 + yy ** 2))[None]
    yy3, xx3 = np.mgrid[-1:1:3j, -1:1:3j]
    blob3 = np.exp(-(xx3 ** 2 + yy3 ** 2))[None]
    assert to_common_grid(blob3, 7, "resample").shape == (1, 7, 7)
    assert spatial_similarity(blob3, blob7, n=1, grid="resample") > 0.95
    assert spatial_similarity(blob3, blob7, n=1, grid="embed") < spatial_similarity(blob3, blob7, n=1)
    with pytest.raises(ValueError, match="grid"):
        to_common_grid(blob3, 7, "nearest")


def test_random_init_is_pytorch_default_and_scores_low():
    conv = nn.Conv2d(32, 64, 3)
    w = random_init_weights((64, 32, 3, 3), seed=0)
    assert w.abs().max() <= 1 / np.sqrt(32 * 9)
    assert w.var().item() == pytest.approx(conv.weight.detach().double().var().item(), rel=0.05)
    _, ea = spatial_eigenvectors(w)
    _, eb = spatial_eigenvectors(random_init_weights((64, 32, 3, 3), seed=1))
    assert spatial_similarity(ea, eb) < 0.9


def test_report_on_torchvision_vgg_and_grouped_convs():
    rep = spatial_report(torchvision.models.vgg11())
    assert isinstance(rep, pd.DataFrame) and len(rep) == 11  # 8 convs and the 3 linear layers of the classifier
    assert set(rep.status[:8]) == {"analysed"} and rep.status[8:].str.startswith("not analysed: linear").all()
    convs = rep[:8]
    assert np.all((convs.top5 >= convs.top3) & (convs.top3 >= convs.top1))
    net = nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, groups=8))
    rep = spatial_report(net)
    assert list(rep.status) == ["analysed per group (4 groups)", "1x1: no spatial structure",
                                "analysed (depthwise: one kernel per channel, so no channel covariance)"]
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        spatial_report(nn.Sequential(nn.Linear(2, 2)))


def test_non_finite_weight_is_rejected():
    w = torch.randn(2, 2, 3, 3)
    w[1, 1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        spatial_covariance(w)


def _tiny_net_with_a_1x1_map():
    """Input 4x4 -> conv (map 4) -> pool -> conv (map 2) -> pool -> conv (map 1) -> linear."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))


def _train_briefly(net, seed, steps=40):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 3, 4, 4, generator=g), torch.randint(2, (64,), generator=g)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net


def test_a_conv_on_a_1x1_map_looks_universal_but_is_flagged_padding_dominated():
    init = _tiny_net_with_a_1x1_map()
    w0 = init[6].weight.detach().clone()
    a, b = (_train_briefly(copy.deepcopy(init), seed) for seed in (1, 2))
    for net in (a, b):  # on a 1x1 map only the centre tap sees data: the other 8 taps never move
        w = net[6].weight.detach()
        assert not torch.equal(w[:, :, 1, 1], w0[:, :, 1, 1])
        off_centre = torch.ones(3, 3, dtype=torch.bool)
        off_centre[1, 1] = False
        assert torch.equal(w[:, :, off_centre], w0[:, :, off_centre])
    # the current statistic calls the two trainings (different data) most similar at that layer, far above
    # the null of two random-init weights (about 0.47) and above the layer that sees a 4x4 map ...
    def score(i):
        return spatial_similarity(spatial_eigenvectors(a[i].weight)[1], spatial_eigenvectors(b[i].weight)[1])
    null = np.mean([spatial_similarity(spatial_eigenvectors(random_init_weights((16, 8, 3, 3), 2 * s))[1],
                                       spatial_eigenvectors(random_init_weights((16, 8, 3, 3), 2 * s + 1))[1])
                    for s in range(10)])
    assert score(6) > 0.9 and score(6) > score(0) and score(6) > null + 0.3
    # ... and the report flags exactly the layers whose map is not larger than k
    report = spatial_report(a, input_size=(3, 4, 4))
    report = report[report.kind == "Conv2d"]  # its linear classifier is listed too
    assert report["map"].tolist() == [4, 2, 1]
    assert (report.status == PADDING_STATUS).tolist() == [False, True, True]


def test_vgg11_map_sizes_and_flags_for_k_3_5_7():
    from univenc.models import VGG
    for k, flagged in ((3, [7, 8]), (5, [5, 6, 7, 8]), (7, [5, 6, 7, 8])):
        report = spatial_report(VGG(kernel_size=k, width=0.125), input_size=(3, 32, 32)).iloc[:8]  # the convs
        assert report["map"].tolist() == [32, 16, 8, 8, 4, 4, 2, 2]
        assert [i + 1 for i in np.flatnonzero(report.status == PADDING_STATUS)] == flagged, k


def test_map_sizes_unknown_and_impossible_inputs():
    net = _tiny_net_with_a_1x1_map()
    report = spatial_report(net)  # no input size known: no layer is flagged
    assert report["map"].isna().all() and PADDING_STATUS not in set(report.status)
    with pytest.raises(ValueError, match=r"cannot take an input of size \(3, 8, 8\)"):
        layer_input_sizes(net, (3, 8, 8))  # the linear head expects a 1x1 map
    with pytest.raises(ValueError, match="input_size must be"):
        layer_input_sizes(net, (4, 4))


def test_every_weight_layer_of_a_convnext_and_a_vit_is_listed_with_its_status():
    """Depthwise 7x7 kernels and 2x2 downsampling convs (ConvNeXt), a patch embedding and linear attention and MLP
    projections (ViT): every weight layer gets a row, analysed or not and why; a 2x2 conv has 4 eigenvectors."""
    import timm
    convnext = timm.create_model("convnext_atto", num_classes=10, patch_size=2)
    rep = spatial_report(convnext, (3, 32, 32))
    weight_layers = [n for n, m in convnext.named_modules() if getattr(m, "weight", None) is not None
                     and m.weight.dim() >= 2]
    assert list(rep.layer) == weight_layers
    dw = rep[rep.layer == "stages.0.blocks.0.conv_dw"].iloc[0]
    assert dw.status.startswith("analysed (depthwise") and dw.k == 7 and dw["map"] == 8  # stride 4 by stage 0
    down = rep[rep.layer == "stages.1.downsample.1"].iloc[0]  # 2x2, stride 2: 4 eigenvectors
    assert "has 4 spatial eigenvectors" in down.status and np.isnan(down.top5) and down.top3 <= 1
    scores = canonical_score_table(convnext, (3, 32, 32), null_seeds=2)
    assert np.isnan(scores.set_index("layer").score["stages.1.downsample.1"])  # not scored: fewer than 5
    assert scores.set_index("layer").score["stages.0.blocks.0.conv_dw"] > 0

    vit = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=4, embed_dim=64, depth=2,
                            num_heads=2)
    rep = spatial_report(vit, (3, 32, 32))
    assert rep.status.iloc[0] == "analysed (patch embedding: stride = kernel)" and rep.k.iloc[0] == 4
    linear = rep[rep.kind == "Linear"]
    assert len(linear) == 2 * 4 + 1 and linear.status.str.startswith("not analysed: linear").all()
    assert len(rep) == 1 + len(linear)
