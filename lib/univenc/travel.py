"""Weight travel: how far each layer of a trained network moved from its initialisation.

A statistic of a network that has hardly left its initialisation says nothing about what training learns. Per
trainable conv layer this module gives the relative distance ||W - W0|| / ||W0|| from the initial weights W0, and,
for k x k layers, the fraction of the spatial variance in the top-5 spatial eigenvectors beside its isotropic value
5 / k^2 (what a layer still at its i.i.d. initialisation has). The zoo keeps every network's initial weights in
``epoch_000.pt``; any other network's come from an init file (``univenc spatial MODEL --init FILE``).
:func:`univenc.spatial.spatial_report` gives both per layer when the initial weights are known.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["relative_travel", "travel_summary", "init_weights", "low_travel", "LOW_TRAVEL_FRACTION"]


def relative_travel(weight, initial) -> float:
    """||W - W0|| / ||W0|| (Frobenius) of a weight and its initial value, arrays or tensors of one shape; 0 for
    the initial weights themselves."""
    w = torch.as_tensor(weight).detach().double()
    w0 = torch.as_tensor(initial).detach().double()
    if w.shape != w0.shape:
        raise ValueError(f"the initial weights have shape {tuple(w0.shape)}, the layer {tuple(w.shape)}: are they "
                         f"the initialisation of this network?")
    norm = w0.norm()
    if norm == 0:
        raise ValueError("the initial weights are all zero: travel relative to them is undefined")
    return float((w - w0).norm() / norm)


def init_weights(init) -> dict[str, torch.Tensor]:
    """{parameter name: tensor} of an initialisation given as a network, a state dict, a univenc checkpoint
    (dict with ``state_dict``) or a file holding one of these (the zoo's ``epoch_000.pt``)."""
    if isinstance(init, nn.Module):
        return dict(init.state_dict())
    if not isinstance(init, dict):
        from .storage import load_checkpoint
        init = load_checkpoint(init)
    state = init.get("state_dict", init) if isinstance(init, dict) else None
    if not isinstance(state, dict):
        raise ValueError("the initialisation holds no state dict: give a network, a state dict or a checkpoint file")
    return state


def travel_summary(report: pd.DataFrame) -> dict:
    """The per-network columns of ``zoo.csv`` from a :func:`univenc.spatial.spatial_report` with travel:
    travel_mean and travel_min over its trainable conv layers, top5_mean over its k x k trainable layers past the
    first (NaN without any) and their top5_isotropic (5 / k^2)."""
    moved = report.dropna(subset=["travel"])
    spatial = moved.dropna(subset=["top5"]).iloc[1:] if "top5" in moved else moved.iloc[:0]  # none: 1x1 convs only
    return dict(travel_mean=float(moved.travel.mean()), travel_min=float(moved.travel.min()),
                top5_mean=float(spatial.top5.mean()) if len(spatial) else np.nan,
                top5_isotropic=float(spatial.top5_isotropic.mean()) if len(spatial) else np.nan)


# A network counts as having hardly moved when its mean travel is below this fraction of the median travel of the
# zoo's true-label networks (fixed before the cpu run of the scale-evidence issue).
LOW_TRAVEL_FRACTION = 0.25


def low_travel(zoo: pd.DataFrame, fraction: float = LOW_TRAVEL_FRACTION) -> list[str]:
    """The networks of a zoo table (``zoo.csv``: name, labels, travel_mean) whose mean travel is below ``fraction``
    of the median mean travel of its true-label networks."""
    if zoo.empty or "travel_mean" not in zoo:
        return []
    median = zoo[zoo.labels == "true"].travel_mean.median()
    return sorted(zoo[zoo.travel_mean < fraction * median].name) if np.isfinite(median) else []
