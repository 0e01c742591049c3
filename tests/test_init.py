"""Networks drawn from weight covariances (univenc.init): rainbow sampling recovers known Gaussian covariances, its
alignment is the identity (or the permutation) where it must be, covariance files round-trip, and bad inputs are
named."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from univenc.covariance import noise_variance
from univenc.init import (
    InitError,
    closed_form_encoding,
    closed_form_spatial,
    encode,
    input_alignment,
    load_encoding,
    sample_like,
    save_encoding,
    universal_init,
)
from univenc.models import VGG, canonical_spatial_filters
from univenc.spatial import spatial_covariance, to_common_grid


def batches(n=4, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(32, 3, size, size, generator=g, dtype=torch.float64) for _ in range(n)]


def two_layers(cout=256, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, cout, 3, padding=1, bias=False), nn.ReLU(), nn.BatchNorm2d(cout, affine=False),
                         nn.Conv2d(cout, 8, 3, padding=1, bias=False)).double().eval()


def known_covariance(d=27, spikes=(40.0, 20.0, 10.0), seed=1):
    """I + V diag(spikes) V^T: what eq. 3 assumes of a trained layer, in units of the init variance."""
    v = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, len(spikes))))[0]
    return np.eye(d) + (v * spikes) @ v.T


def test_sampling_recovers_a_known_gaussian_covariance():
    """A first layer whose 1024 rows are exactly N(0, C): the rainbow network's rows are N(0, C) up to the sampling
    error of 1024 rows (the distance of the source's own rows to C, twice: estimation, then the new draw)."""
    net = two_layers(cout=1024)
    c = known_covariance()
    g = torch.Generator().manual_seed(5)
    rows = torch.randn(1024, 27, generator=g, dtype=torch.float64) @ torch.as_tensor(np.linalg.cholesky(c)).T
    with torch.no_grad():
        net[0].weight.copy_((rows * np.sqrt(noise_variance(net[0]))).reshape(net[0].weight.shape))
    new = sample_like(net, batches(), layers=1)

    def cov(layer):
        w = layer.weight.detach().reshape(len(layer.weight), -1).numpy() / np.sqrt(noise_variance(net[0]))
        return w.T @ w / len(w)
    error = np.linalg.norm(cov(new[0]) - c) / np.linalg.norm(c)
    sampling = np.linalg.norm(cov(net[0]) - c) / np.linalg.norm(c)
    assert error < 2.5 * sampling, (error, sampling)
    top = np.sort(np.linalg.eigvalsh(cov(new[0])))[::-1][:3] - 1
    np.testing.assert_allclose(top, [40, 20, 10], rtol=0.2)
    assert not torch.equal(new[0].weight, net[0].weight)
    # layer 2 is kept, read in the new network's coordinates: an orthogonal rotation of its inputs
    norms = [layer.weight.detach().flatten(1).norm(dim=1) for layer in (new[3], net[3])]
    torch.testing.assert_close(*norms)
    assert not torch.equal(new[3].weight, net[3].weight)


def test_the_alignment_is_the_identity_against_itself_and_finds_a_permutation():
    torch.manual_seed(0)
    src = VGG(10, 3, 0.125).double().eval()
    x = [b for b in batches(size=32)]
    from univenc.alignment import accumulate_input_statistics
    twin = copy.deepcopy(src)
    layers = [(n, m) for n, m in src.named_modules() if isinstance(m, nn.Conv2d)]
    stats = accumulate_input_statistics(twin, src, x, full=True, progress=False)
    for ((_, ms), (_, mt)), st in zip(zip(layers, [(n, m) for n, m in twin.named_modules()
                                                    if isinstance(m, nn.Conv2d)]), stats):
        rot = input_alignment(twin, mt, src, ms, x)
        live = np.diag(st.cov_b) > 0  # a channel that is always 0 (a dead ReLU) has no sign to align
        np.testing.assert_allclose(rot[np.ix_(live, live)], np.eye(live.sum()), atol=1e-8)
    permuted = copy.deepcopy(src)
    perm = torch.randperm(src.features[0][0].out_channels)
    with torch.no_grad():  # layer 1's channels in another order (and its BatchNorm's statistics with them)
        permuted.features[0][0].weight.copy_(src.features[0][0].weight[perm])
        bn = permuted.features[0][2]
        bn.running_mean.copy_(src.features[0][2].running_mean[perm])
        bn.running_var.copy_(src.features[0][2].running_var[perm])
    rot = input_alignment(permuted, permuted.features[2][0], src, src.features[2][0], x)  # new -> source
    expected = np.zeros_like(rot)
    expected[perm.numpy(), np.arange(len(perm))] = 1.0  # new channel j is the source's perm[j]
    np.testing.assert_allclose(rot, expected, atol=1e-6)
    same = sample_like(src, x, layers=0)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(same.state_dict()[k], v)


def test_a_rainbow_network_of_every_layer_runs_and_its_batchnorm_is_recomputed():
    torch.manual_seed(1)
    src = VGG(10, 3, 0.125, factorized=True).eval()
    x = [torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    new = sample_like(src, x)
    assert torch.equal(new.features[0].filters, src.features[0].filters)  # the frozen spatial filters are copied
    assert not torch.equal(new.features[4].pointwise.weight, src.features[4].pointwise.weight)
    assert not torch.equal(new.features[4].bn.running_var, src.features[4].bn.running_var)
    assert torch.isfinite(new(x[0])).all()
    with pytest.raises(InitError, match="not of VGG's family"):
        sample_like(src, x, target=VGG(10, 5, 0.125))


def test_a_covariance_file_round_trips_and_bad_ones_are_named(tmp_path):
    torch.manual_seed(2)
    net = VGG(10, 3, 0.125)
    enc = encode(net, "a test network")
    save_encoding(enc, tmp_path / "enc.pt")
    back = load_encoding(tmp_path / "enc.pt")
    assert back["source"] == "a test network" and len(back["layers"]) == 8
    for a, b in zip(enc["layers"], back["layers"]):
        assert (a.name, a.k, a.cin, a.cout, a.scale) == (b.name, b.k, b.cin, b.cout, b.scale)
        np.testing.assert_array_equal(a.channel, b.channel)
        np.testing.assert_array_equal(a.spatial, b.spatial)
    assert back["layers"][0].full.shape == (27, 27) and back["layers"][1].full is None
    bad = torch.load(tmp_path / "enc.pt", weights_only=False)
    bad["layers"][2]["spatial"] = -np.eye(9)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InitError, match="spatial covariance of features.4.0 is not positive semi-definite"):
        load_encoding(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "weights.pt")
    with pytest.raises(InitError, match="not a univenc covariance file"):
        load_encoding(tmp_path / "weights.pt")
    with pytest.raises(InitError, match="has 8 layers to draw, the encoding .* 2"):  # another architecture
        universal_init(VGG(10, 3, 0.125), {"source": "x", "layers": enc["layers"][:2]})
    with pytest.raises(InitError, match="layer features.0.0 is 5x5, the encoding's features.0.0 3x3"):
        universal_init(VGG(10, 5, 0.125), enc)  # a layer the encoding has no counterpart of (other kernel)


def test_universal_init_keeps_the_spatial_structure_the_spikes_and_the_init_variance_at_any_width():
    torch.manual_seed(3)
    src = VGG(10, 3, 0.25)
    with torch.no_grad():  # a source with structure: layer 4's filters along one spatial pattern and 3 channel spikes
        w = src.features[4][0].weight
        pattern = torch.as_tensor(to_common_grid(canonical_spatial_filters()[:1].numpy(), 3)[0])
        w.add_((torch.randn(w.shape[0], 3) @ torch.randn(3, w.shape[1]))[:, :, None, None] * 0.3 * pattern)
    enc = encode(src)
    spikes = len(enc["layers"][2].channel)
    for width in (0.25, 0.5):
        net = universal_init(VGG(10, 3, width), enc, seed=4)
        layer = net.features[4][0]
        w = layer.weight.detach().double()
        assert (w ** 2).mean().item() == pytest.approx(noise_variance(layer), rel=0.1)  # the init's variance
        sp = spatial_covariance(w)
        np.testing.assert_allclose(sp / np.trace(sp), enc["layers"][2].spatial / 9, atol=0.02)
        again = encode(net)["layers"][2]
        assert abs(len(again.channel) - spikes) <= 1  # the source's spikes, at the new width too
    closed = universal_init(VGG(10, 3, 0.25), closed_form_encoding(VGG(10, 3, 0.25)), seed=5)
    assert torch.isfinite(closed.features[2][0].weight).all()


def test_the_closed_form_spatial_covariance_has_the_canonical_eigenvectors():
    for k in (3, 5):
        c = closed_form_spatial(k)
        vals, vecs = np.linalg.eigh(c)
        assert vals.min() > 0 and np.trace(c) == pytest.approx(k * k)
        top = vecs[:, ::-1][:, :5].T
        canonical = to_common_grid(canonical_spatial_filters().numpy(), k).reshape(5, -1)
        assert np.abs(np.sum(top[0] * canonical[0])) == pytest.approx(1.0, abs=1e-6)  # f1 leads
        residual = canonical - (canonical @ top.T) @ top  # each canonical image lies in the top-5 eigenvectors' span
        np.testing.assert_allclose(residual, 0.0, atol=1e-6)
    assert closed_form_spatial(2).shape == (4, 4)


def test_every_depth_of_one_sequential_draw_is_sample_like_of_that_depth():
    from univenc.init import rainbow_depths
    torch.manual_seed(4)
    src = VGG(10, 3, 0.0625).eval()
    x = [torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    for depth, net in rainbow_depths(src, x, seed=7, last=3):
        alone = sample_like(src, x, layers=depth, seed=7)
        for k, v in alone.state_dict().items():
            torch.testing.assert_close(net.state_dict()[k], v, rtol=0, atol=0, msg=f"depth {depth}: {k}")
    with pytest.raises(InitError, match="layers must be between 0 and 8"):
        sample_like(src, x, layers=9)


def test_steps_to_accuracy_take_the_weakest_reference_seed_s_final_accuracy():
    import pandas as pd
    from univenc.experiments import steps_to_accuracy

    rows = []
    # two reference seeds that peak at their end (0.60 and 0.70) and an init whose seeds get there at steps 20, 30
    for init, seed, accs in [("default", "a", [0.3, 0.5, 0.6]), ("default", "b", [0.4, 0.6, 0.7]),
                             ("cifar100", "a", [0.5, 0.61, 0.65]), ("cifar100", "b", [0.4, 0.5, 0.6]),
                             ("mnist", "a", [0.3, 0.4, 0.5]), ("mnist", "b", [0.6, 0.6, 0.6])]:
        rows += [{"init": init, "target": "cifar10", "seed": seed, "epoch": e + 1, "steps": 10 * (e + 1),
                  "test_acc": a} for e, a in enumerate(accs)]
    t = steps_to_accuracy(pd.DataFrame(rows)).set_index("init")
    assert t.reference_acc.eq(0.6).all()  # the lower of 0.6 and 0.7: each reference seed reaches it
    assert t.loc["default"].steps == [30.0, 20.0] and t.loc["default"].mean_steps == 25.0
    assert t.loc["cifar100"].steps == [20.0, 30.0] and t.loc["cifar100"].mean_steps == 25.0
    assert np.isnan(t.loc["mnist"].steps[0]) and np.isnan(t.loc["mnist"].mean_steps)  # one seed never gets there
    assert t.loc["default"].final_acc == pytest.approx(0.65)
