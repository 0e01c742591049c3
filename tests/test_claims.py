"""The claims' decision rules on hand-made tables (the statistics themselves are tested where they are computed)."""
import pandas as pd
import pytest

from univenc import claims as C
from univenc import experiments as ex
from univenc.presets import PRESETS


def _context(pairs):
    ctx = C.Context(PRESETS["smoke"])
    ctx.__dict__["pairs"] = pairs  # the cached comparisons, as compare_pairs would give them
    return ctx


def _rows(a, b, s, spread=0.02, group="datasets"):
    return [dict(net_a=a, net_b=b, depth=d, S=s, S_spread=spread, group=group) for d in (1, 2, 3)]


def test_claim_9_gives_one_row_per_control_and_compares_each_with_natural_pairs():
    natural = _rows("fac_cifar10", "fac_cifar100", 0.5) + _rows("fac_cifar5", "fac_cifar10", 0.4)
    controls = (_rows("fac_cifar10", "fac_mnist", 0.1)
                + _rows("fac_pneumoniamnist", "fac_cifar10", 0.44, group="non-natural")
                + _rows("fac_retinamnist", "fac_cifar100", 0.1, spread=0.6, group="non-natural"))
    rows = C.claim_9_non_natural(_context(pd.DataFrame(natural + controls)))
    by_id = {r.id: r for r in rows}
    assert list(by_id) == [f"9-{label}" for label in C.CONTROLS]
    assert by_id["9-MNIST"].passed is True           # 0.45 vs 0.10, spread ~0.03
    assert by_id["9-X-ray"].passed is False          # 0.45 vs 0.44: within the spread
    assert by_id["9-retina"].passed is False         # far lower, but the spread (0.6) is larger still
    assert by_id["9-ultrasound"].passed is None and "not tested" in by_id["9-ultrasound"].value
    assert "S(natural, natural) = 0.450" in by_id["9-MNIST"].value


def _scores(net, score, padded_score=1.0):
    layers = [("conv1", 7, 32, False), ("layer1.0.conv1", 3, 8, False), ("layer2.1.conv1", 3, 4, False),
              ("layer3.1.conv1", 3, 2, True)]
    return [dict(net=net, layer=name, k=k, map=m, padded=p, score=padded_score if p else score, null=0.5,
                 null_std=0.04) for name, k, m, p in layers]


@pytest.mark.parametrize("low, passed", [(0.9, True), (0.6, False)])
def test_claim_12_counts_3x3_layers_whose_map_is_larger_than_k(monkeypatch, low, passed):
    table = pd.DataFrame(_scores("resnet18_cifar10", 0.95) + _scores("resnet18_cifar10_random", low))
    monkeypatch.setattr(ex, "canonical_scores", lambda names, preset, root=None, fold_bn=False: table)
    row = C.claim_12_resnet_spatial(_context(pd.DataFrame()))
    assert row.passed is passed
    assert "layer3.1.conv1" in row.value.split("excluded")[1]  # padding-dominated: reported, not counted
    assert f"resnet18_cifar10_random: {low:.3f}" in row.value


def test_claim_12_without_networks_is_not_tested(monkeypatch):
    monkeypatch.setattr(ex, "canonical_scores", lambda *a, **k: pd.DataFrame())
    assert C.claim_12_resnet_spatial(_context(pd.DataFrame())).passed is None


def test_random_label_networks_below_the_fit_are_named_and_true_label_networks_never():
    zoo = pd.DataFrame(dict(name=["t", "ra", "rb", "rc", "rn"], labels=["true", "random a", "random b", "random a",
                                                                        "random a"],
                            train_acc=[0.3, 0.95, 0.5, C.RANDOM_LABEL_FIT, float("nan")]))
    assert C.not_fitted(zoo) == ["rb", "rn"]  # a fit that was never measured is not a fit
    assert C.not_fitted(zoo.drop(columns="train_acc")) == []


def test_the_claims_report_names_unfitted_and_unmoved_networks_as_caveats(tmp_path):
    row = C.Claim(7, "c", "s", "crit", "0.1", "0", False, "CIFAR-10", "smoke", networks=["a", "r"],
                  moved_little=["a"], not_fitted=["r"])
    clean = C.Claim(8, "c", "s", "crit", "0.1", "0", True, "CIFAR-10", "smoke")
    _, md = C.write_claims([row, clean], tmp_path)
    lines = md.read_text().splitlines()
    assert "moved little: a; random labels not fitted: r" in next(x for x in lines if x.startswith("| 7 |"))
    assert "| none |" in next(x for x in lines if x.startswith("| 8 |"))
