"""Every claim's statistic against training scale: does a claim that fails at a reduced scale move toward its
criterion with more training images or width (notebook 11, ``make scaling``)?

Each point of the study is a variant of the preset (:func:`univenc.presets.variant`): the same zoo networks and
recipes, random-label networks included, trained on another number of images per class, or at another width. The
zoo's own machinery trains them (:func:`univenc.runner.run_tasks`) and the same claim functions
(:func:`univenc.claims.evaluate_claims`) measure them, so a point's numbers mean what the claims report's mean. The
preset's own point (its width and images) is the preset's zoo, reused.

- factorized points (``Preset.scale_per_class_factorized``): the CIFAR-10 twins, their two random-label partners,
  CIFAR5 and CIFAR-100: claims 6, 7, 8 and 10;
- standard points (``Preset.scale_per_class_standard``): k = 3, 5, 7 on CIFAR-10, CIFAR5, CIFAR-100 and the
  random-label network of Fig. 1b: claims 1, 2 and 3;
- width points (``Preset.scale_widths`` at ``scale_width_per_class``): the twins: claim 10.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .presets import get_preset, variant
from .results import recorded

__all__ = ["ScalePoint", "scale_points", "scale_tasks", "train_scale_points", "scaling_table", "scaling_summary",
           "PAPER_PER_CLASS", "FACTORIZED", "STANDARD", "TWINS"]

FACTORIZED = ("fac_cifar10", "fac_cifar10_bis", "fac_cifar10_random_a", "fac_cifar10_random_b", "fac_cifar5",
              "fac_cifar100")
STANDARD = ("vgg_k3_cifar10", "vgg_k5_cifar10", "vgg_k7_cifar10", "vgg_k3_cifar5", "vgg_k3_cifar100",
            "vgg_k3_cifar10_random")
TWINS = ("fac_cifar10", "fac_cifar10_bis")
CLAIMS_OF = {FACTORIZED: (6, 7, 8, 10), STANDARD: (1, 2, 3), TWINS: (10,)}
PAPER_PER_CLASS = 5000  # the paper's data scale: every CIFAR-10 training image (B.3)


@dataclass(frozen=True)
class ScalePoint:
    """One point of the study: ``networks`` of the zoo trained at ``per_class`` images per class and channel
    multiplier ``width`` (the variant preset ``preset``), measured by the claims ``claims``."""
    preset: str
    per_class: int
    width: float
    networks: tuple
    claims: tuple


def scale_points(preset) -> list[ScalePoint]:
    """The study's points for ``preset``, one per variant (networks and claims merged where two series meet)."""
    p = get_preset(preset)
    wanted = [(n, p.width, FACTORIZED) for n in p.scale_per_class_factorized]
    wanted += [(n, p.width, STANDARD) for n in p.scale_per_class_standard]
    wanted += [(p.scale_width_per_class, w, TWINS) for w in p.scale_widths]
    points = {}
    for per_class, width, nets in wanted:
        name = variant(p, width=width, per_class=per_class).name
        old = points.get(name)
        networks = tuple(dict.fromkeys((old.networks if old else ()) + nets))
        claims = tuple(sorted(set(old.claims if old else ()) | set(CLAIMS_OF[nets])))
        points[name] = ScalePoint(name, per_class, width, networks, claims)
    return list(points.values())


def scale_tasks(preset):
    """The networks of every point, as tasks of the job runner (each of its point's preset)."""
    from .runner import Task
    return [Task(name, preset=point.preset) for point in scale_points(preset) for name in point.networks]


def train_scale_points(preset, root=None, options=None, progress: bool = True) -> pd.DataFrame:
    """Train what is missing of the study's networks, all points in one set of jobs (longest first)."""
    from .runner import JobOptions, default_jobs, run_tasks
    return run_tasks(scale_tasks(preset), preset, root, options or JobOptions(jobs=default_jobs()), progress)


@recorded(variants=True)  # it reads every point's zoo
def scaling_table(preset, root=None) -> pd.DataFrame:
    """One row per (point, claim row): claim, preset (the point's), per_class, width, train_images (of the point's
    CIFAR-10 network), value, threshold, direction, null, spread (the claim's number, :class:`univenc.claims.Claim`),
    passed, moved_little (networks that hardly left their init), not_fitted (random-label networks that did not fit
    their labels). Claims that cannot be measured at a point (a
    network missing) have NaN numbers."""
    from .claims import evaluate_claims
    from .zoo import train_images
    from .catalogue import ZOO_BY_NAME

    rows = []
    for point in scale_points(preset):
        images = train_images(ZOO_BY_NAME[point.networks[0]], point.preset)
        for c in evaluate_claims(point.preset, root, only=point.claims):
            numbers = {k: c.numbers.get(k, np.nan) for k in ("value", "threshold", "null", "spread")}
            rows.append(dict(claim=str(c.id), preset=point.preset, per_class=point.per_class, width=point.width,
                             train_images=images, **numbers, direction=c.numbers.get("direction", ">="),
                             passed=c.passed, moved_little=", ".join(c.moved_little),
                             not_fitted=", ".join(c.not_fitted)))
    return pd.DataFrame(rows)


def _series(table: pd.DataFrame, claim: str, width: float) -> pd.DataFrame:
    rows = table[(table.claim == claim) & (table.width == width)].dropna(subset=["value"])
    return rows.sort_values("per_class")


def scaling_summary(table: pd.DataFrame, preset) -> pd.DataFrame:
    """Per claim, from a :func:`scaling_table`, at the preset's width over its data budgets:

    - trend ("with scale"): the change of the statistic from the smallest to the largest budget, "toward" or
      "away from" its criterion, or "flat" when the change is within the spread of the two end points (their
      ``spread`` added in quadrature; "flat" needs a spread estimate, and without one the change is named as
      it is);
    - projected: the value at the paper's data scale (``PAPER_PER_CLASS`` images per class) from a least-squares
      line on log10(images per class) with its 95% prediction interval, labelled as an extrapolation; "no trend"
      where the trend is flat. Three points give one degree of freedom: the intervals are wide.
    Columns: claim, budgets, missing (budgets of the study where the number could not be measured), first, last,
    change, spread, trend, projected, low, high, criterion.
    """
    p = get_preset(preset)
    rows = []
    for claim in dict.fromkeys(table.claim):
        s = _series(table, claim, p.width)
        every = table[(table.claim == claim) & (table.width == p.width)].per_class
        missing = ", ".join(str(n) for n in sorted(set(every) - set(s.per_class)))
        if len(s) < 2:
            rows.append(dict(claim=claim, budgets=", ".join(map(str, s.per_class)), missing=missing,
                             trend="not measured"))
            continue
        first, last = s.iloc[0], s.iloc[-1]
        change = last.value - first.value
        spread = float(np.hypot(first.spread, last.spread))
        sign = 1 if last.direction == ">=" else -1
        if np.isfinite(spread) and abs(change) <= spread:
            trend = "flat"
        else:
            trend = "toward the criterion" if sign * change > 0 else "away from the criterion"
        criterion = f"{last.direction} {last.threshold:g}"
        row = dict(claim=claim, budgets=", ".join(map(str, s.per_class)), missing=missing, first=first.value,
                   last=last.value, change=change, spread=spread, trend=trend, criterion=criterion)
        row.update(_projection(s) if trend != "flat" else dict(projected="no trend"))
        rows.append(row)
    return pd.DataFrame(rows)


def _projection(s: pd.DataFrame) -> dict:
    x, y = np.log10(s.per_class.to_numpy(float)), s.value.to_numpy(float)
    x0 = np.log10(PAPER_PER_CLASS)
    if len(s) < 3:  # a line through two points has no interval
        slope = (y[-1] - y[0]) / (x[-1] - x[0])
        value = y[-1] + slope * (x0 - x[-1])
        return dict(projected=f"{value:.3g} (extrapolation, no interval: 2 points)", value=value)
    fit = stats.linregress(x, y)
    value = fit.intercept + fit.slope * x0
    resid = y - (fit.intercept + fit.slope * x)
    dof = len(x) - 2
    sigma = np.sqrt((resid ** 2).sum() / dof)
    leverage = 1 + 1 / len(x) + (x0 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum()
    half = stats.t.ppf(0.975, dof) * sigma * np.sqrt(leverage)
    if np.isclose(x0, x.max()):  # the study reached the paper's data scale: no extrapolation in data
        measured = float(y[np.argmax(x)])
        return dict(projected=f"{measured:.3g} (measured at the paper's data scale; width and epochs reduced)",
                    value=measured)
    return dict(projected=f"{value:.3g} [{value - half:.3g}, {value + half:.3g}] (extrapolation, 95%)", value=value,
                low=value - half, high=value + half)
