"""The scaling study (univenc.scaling): its points are variants of the preset, and its summary calls a trend only
beyond the spread and projects with an interval."""
import numpy as np
import pandas as pd
import pytest

from univenc import scaling
from univenc.presets import get_preset


def test_the_points_are_variants_of_the_preset_and_reuse_its_own_point():
    points = {p.preset: p for p in scaling.scale_points("cpu")}
    assert set(points) == {"cpu-n250", "cpu", "cpu-n5000", "cpu-n2500", "cpu-w0.125", "cpu-w0.5"}
    assert set(points["cpu"].networks) == set(scaling.FACTORIZED) | set(scaling.STANDARD)  # both series meet
    assert points["cpu-n5000"].claims == (6, 7, 8, 10) and points["cpu-n2500"].claims == (1, 2, 3)
    assert points["cpu-w0.5"].networks == scaling.TWINS and get_preset("cpu-w0.5").width == 0.5
    n5000 = get_preset("cpu-n5000")  # random-label networks train on their partners' images
    assert n5000.per_class == n5000.random_per_class == 5000 and n5000.max_train_images == 50000
    assert {r["per_class"] for r in n5000.random_label_recipes.values()} == {5000}
    assert {t.preset for t in scaling.scale_tasks("smoke")} == {"smoke-n20", "smoke", "smoke-w0.09375"}


def _table(values, spreads, direction=">=", threshold=0.5, per_class=(250, 1000, 5000)):
    return pd.DataFrame(dict(claim="7", preset="cpu", per_class=per_class, width=0.25, value=values,
                             threshold=threshold, direction=direction, null=0.0, spread=spreads))


def test_trend_is_toward_away_or_flat_within_the_spread():
    toward = scaling.scaling_summary(_table([0.1, 0.3, 0.45], [0.02] * 3), "cpu").iloc[0]
    assert toward.trend == "toward the criterion" and toward.change == pytest.approx(0.35)
    away = scaling.scaling_summary(_table([0.45, 0.3, 0.1], [0.02] * 3), "cpu").iloc[0]
    assert away.trend == "away from the criterion"
    flat = scaling.scaling_summary(_table([0.30, 0.35, 0.32], [0.05] * 3), "cpu").iloc[0]
    assert flat.trend == "flat" and flat.projected == "no trend"  # |0.02| < hypot(0.05, 0.05)
    below = scaling.scaling_summary(_table([0.5, 0.3, 0.1], [0.01] * 3, "<=", 0.15), "cpu").iloc[0]
    assert below.trend == "toward the criterion"  # a "<=" criterion: down is toward


def test_a_budget_whose_number_is_missing_is_named_in_the_summary_and_the_report(tmp_path):
    from univenc.claims import Claim, write_claims
    summary = scaling.scaling_summary(_table([0.1, 0.3, np.nan], [0.01] * 3), "cpu")
    assert summary.iloc[0].missing == "5000" and summary.iloc[0].budgets == "250, 1000"
    assert scaling.scaling_summary(_table([0.1, 0.3, 0.4], [0.01] * 3), "cpu").iloc[0].missing == ""
    write_claims([Claim(7, "c", "s", "crit", "v", "n", False, "d", "cpu")], tmp_path, scaling=summary)
    assert "not measured at 5000 (networks missing)" in (tmp_path / "claims.md").read_text()


def test_the_projection_extrapolates_a_line_on_log_images_with_its_interval():
    x = np.log10([250, 1000, 2500])
    rows = scaling.scaling_summary(_table(0.2 + 0.1 * x, [0.01] * 3, per_class=(250, 1000, 2500)), "cpu").iloc[0]
    assert rows.value == pytest.approx(0.2 + 0.1 * np.log10(5000))  # an exact line: a zero-width interval
    assert rows.low == pytest.approx(rows.value) and "extrapolation" in rows.projected
    noisy = scaling.scaling_summary(_table([0.2, 0.5, 0.4], [0.01] * 3, per_class=(250, 1000, 2500)), "cpu").iloc[0]
    assert noisy.low < noisy.value < noisy.high
    at_paper = scaling.scaling_summary(_table([0.1, 0.3, 0.45], [0.01] * 3), "cpu").iloc[0]
    assert at_paper.projected.startswith("0.45 (measured at the paper's data scale")


def test_fig10_draws_every_claim(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from univenc.figures import plot_scaling
    table = pd.concat([_table([0.1, 0.3, 0.45], [0.02] * 3), _table([0.6, 0.7, 0.8], [0.0] * 3).assign(claim="1")])
    fig = plot_scaling(table, scaling.scaling_summary(table, "cpu"), base_width=0.25)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["claim 7: toward the criterion", "claim 1: toward the criterion"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["250", "1000", "5000"]  # the budgets measured


def test_fig10_rings_a_point_whose_random_label_network_did_not_fit():
    import matplotlib
    matplotlib.use("Agg")
    from univenc.figures import plot_scaling
    table = _table([0.1, 0.3, 0.45], [0.02] * 3).assign(not_fitted=["", "", "fac_cifar10_random_a"])
    ax = plot_scaling(table, base_width=0.25).axes[0]
    rings = [c for c in ax.collections if c.get_label() == "random labels not fitted"]
    assert len(rings) == 1 and rings[0].get_offsets().tolist() == [[5000, 0.45]]
    clean = plot_scaling(table.assign(not_fitted=""), base_width=0.25).axes[0]
    assert not [c for c in clean.collections if c.get_label() == "random labels not fitted"]


def test_fig10_survives_a_claim_not_measured_at_any_point(tmp_path):
    """The smoke scale measures no value of some claims (NaN number and criterion): their panel says so."""
    import matplotlib
    matplotlib.use("Agg")
    from univenc.figures import plot_scaling
    missing = _table([np.nan] * 3, [np.nan] * 3).assign(claim="10", threshold=np.nan, null=np.nan)
    table = pd.concat([_table([0.1, 0.3, 0.45], [0.02] * 3), missing])
    fig = plot_scaling(table, base_width=0.25)
    fig.savefig(tmp_path / "fig10.png")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert texts == ["not measured at any point"]
