"""Weight travel (univenc.travel): 0 for the initialisation itself, the size of a known perturbation, and the
columns it adds to the spatial report, the comparison table and the zoo table."""
import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from univenc.models import VGG
from univenc.spatial import spatial_report
from univenc.travel import init_weights, low_travel, relative_travel, travel_summary


def net(seed=0):
    torch.manual_seed(seed)
    return VGG(10, 3, 0.125)


@given(st.floats(0.0, 3.0), st.integers(0, 2 ** 16))
@settings(max_examples=30, deadline=None)
def test_travel_is_the_size_of_a_known_perturbation(c, seed):
    g = torch.Generator().manual_seed(seed)
    w0 = torch.randn(8, 4, 3, 3, generator=g, dtype=torch.float64)
    delta = torch.randn(w0.shape, generator=g, dtype=torch.float64)
    w = w0 + c * w0.norm() * delta / delta.norm()
    assert relative_travel(w, w0) == pytest.approx(c, abs=1e-12)
    assert relative_travel(w0, w0) == 0.0


def test_the_initialisation_itself_has_travel_0_and_a_scaled_layer_its_scale(tmp_path):
    model = net()
    init = copy.deepcopy(model)
    report = spatial_report(model, 32, init=init)
    convs = report.kind == "Conv2d"
    assert (report.travel[convs] == 0).all() and report.travel[~convs].isna().all()  # the linear classifier
    with torch.no_grad():
        model.features[4][0].weight.mul_(1.25)
    torch.save({"state_dict": init.state_dict()}, tmp_path / "epoch_000.pt")  # a checkpoint file works too
    report = spatial_report(model, 32, init=tmp_path / "epoch_000.pt").set_index("layer")[convs.to_numpy()]
    assert report.travel["features.4.0"] == pytest.approx(0.25)
    assert (report.travel.drop("features.4.0") == 0).all()
    assert (report.top5_isotropic == 5 / 9).all()
    summary = travel_summary(report.reset_index())
    assert summary["travel_mean"] == pytest.approx(0.25 / 8) and summary["travel_min"] == 0
    assert summary["top5_mean"] == pytest.approx(report.top5.iloc[1:].mean())


def test_frozen_layers_have_no_travel_and_bad_inits_are_named():
    fac = VGG(10, 3, 0.125, factorized=True)
    report = spatial_report(fac, 32, init=fac)
    convs = report[report.kind == "Conv2d"]
    assert convs.travel.eq(0).all() and len(convs) == 8  # the trainable 1x1 convs (the filters are a buffer)
    with pytest.raises(ValueError, match="has no features.0.0.weight"):
        spatial_report(net(), 32, init=fac)
    with pytest.raises(ValueError, match="shape"):
        relative_travel(torch.zeros(2, 2), torch.ones(3))
    with pytest.raises(ValueError, match="no state dict"):
        init_weights({"state_dict": 3})


def test_compare_gives_the_travel_of_both_networks():
    from univenc.similarity import compare
    a, b = net(0), net(1)
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    with torch.no_grad():
        b.features[0][0].weight.mul_(2.0)
    batches = [torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))]
    table = compare(a, b, batches, n_draws=2, progress=False, inits=(a0, b0)).table
    assert (table.travel_a == 0).all() and table.travel_b.iloc[0] == pytest.approx(1.0)
    assert (table.travel_b.iloc[1:] == 0).all()


def test_networks_that_hardly_moved_are_named_against_the_true_label_median():
    import pandas as pd
    zoo = pd.DataFrame(dict(name=["a", "b", "c", "r"], labels=["true", "true", "true", "random a"],
                            travel_mean=[1.0, 0.8, 0.1, 0.15]))
    assert low_travel(zoo) == ["c", "r"]  # below 0.25 x 0.8
    assert low_travel(zoo.drop(columns="travel_mean")) == []
    assert np.isnan(travel_summary(spatial_report(net(), 32, init=net()).iloc[:0].assign(travel=[], top5=[]))
                    ["travel_mean"])


def test_a_network_of_1x1_convs_only_has_travel_but_no_spatial_fraction():
    fac = VGG(10, 3, 0.125, factorized=True)
    summary = travel_summary(spatial_report(fac, 32, init=fac))
    assert summary["travel_mean"] == 0 and np.isnan(summary["top5_mean"]) and np.isnan(summary["top5_isotropic"])
