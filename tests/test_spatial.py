"""Spatial covariance, eigen-images and the universality score."""
import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from torch import nn

from univenc.spatial import (random_init_weights, spatial_covariance, spatial_eigenvectors, spatial_report,
                             spatial_similarity, to_common_grid)


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
    assert isinstance(rep, pd.DataFrame) and len(rep) == 8
    assert set(rep.status) == {"analysed"}
    assert np.all((rep.top5 >= rep.top3) & (rep.top3 >= rep.top1))
    net = nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, groups=8))
    rep = spatial_report(net)
    assert list(rep.status) == ["analysed per group (4 groups)", "1x1: no spatial structure",
                                "analysed per group (8 groups)"]
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        spatial_report(nn.Sequential(nn.Linear(2, 2)))


def test_non_finite_weight_is_rejected():
    w = torch.randn(2, 2, 3, 3)
    w[1, 1, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        spatial_covariance(w)
