"""Learning trajectories: the paper's statistics along training, from a network's checkpoints.

The paper says its metrics "compare learning trajectories". Here each checkpoint of a run (the zoo's
``epoch_000.pt`` ... ``epoch_XXX.pt`` and ``final.pt``, or any list of files) is analysed as a network of its
own: per layer and epoch, the spatial statistics of k x k layers, the effective rank (eq. 4) of every analysed
layer, and, for two runs at matching epochs, the normalised similarity S (eq. 6) after alignment, as in
:func:`univenc.similarity.compare`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from .alignment import analysed_layers
from .covariance import layer_spectrum
from .models import load_checkpoint_model
from .similarity import compare
from .spatial import conv_weights, spatial_eigenvectors, spatial_similarity
from .travel import relative_travel

__all__ = ["learning_trajectory"]


def _load_run(paths, model) -> dict[int, nn.Module]:
    nets = {}
    for path in paths:
        net, epoch = load_checkpoint_model(path, model)
        if model is not None:  # a plain state dict is loaded into ``model``: keep a copy per epoch
            import copy
            net = copy.deepcopy(net)
        nets[epoch] = net
    return nets


def _network_rows(net: nn.Module, final: nn.Module, n: int, init: nn.Module | None = None) -> list[dict]:
    """Spatial statistics of each k x k conv, r_eff of each analysed layer and, with the run's ``init``, each
    trainable conv's travel from it; one row per layer."""
    rows = {}
    final_convs = dict(conv_weights(final))
    init_convs = dict(conv_weights(init)) if init is not None else {}
    for name, m in conv_weights(net):
        if m.kernel_size[0] > 1 and m.kernel_size[0] == m.kernel_size[1] and m.weight.requires_grad:
            vals, vecs = spatial_eigenvectors(m.weight)
            final_vecs = spatial_eigenvectors(final_convs[name].weight)[1]
            rows[name] = dict(top5=float(vals[:5].sum() / vals.sum()),
                              spatial_score=spatial_similarity(vecs, final_vecs, n))
        if name in init_convs and m.weight.requires_grad:
            rows.setdefault(name, {})["travel"] = relative_travel(m.weight, init_convs[name].weight)
    for depth, (name, m) in enumerate(analysed_layers(net), start=1):
        rows.setdefault(name, {}).update(depth=depth, r_eff=layer_spectrum(m).effective_rank)
    return [dict(layer=name, **stats) for name, stats in rows.items()]


def learning_trajectory(checkpoints_a, checkpoints_b=None, batches=None, model: nn.Module | None = None,
                        n: int = 5, n_draws: int = 3, progress: bool = True) -> pd.DataFrame:
    """The paper's statistics along one training run, or two runs at matching epochs.

    checkpoints_a, checkpoints_b : lists of checkpoint files of one run each (any order; the epoch is read from
        each file); e.g. :func:`zoo_checkpoints`. The last epoch of a run is its reference ("final").
    batches : probe inputs (N, C, H, W) for the alignment; needed with ``checkpoints_b``.
    model : a network of the right architecture, for plain state-dict files.

    Returns one row per (run, epoch, layer): run ("a" or "b"), epoch, layer, depth (index among the analysed
    layers), top5 (spatial top-5 variance fraction; k x k layers only), spatial_score (matched |cos| of the
    top-``n`` spatial eigenvectors against the same layer of the run's final network), travel (||W - W0|| /
    ||W0|| from the run's epoch 0, when it is among the checkpoints), r_eff (eq. 4) and,
    with two runs, S and S_spread (eq. 6 between the two runs at that epoch; on run "a"'s rows). NaN where a
    statistic does not apply (no k x k filter, or S undefined when no eigenvalue is above the noise).
    """
    runs = {"a": _load_run(checkpoints_a, model)}
    if checkpoints_b is not None:
        if batches is None:
            raise ValueError("two runs are compared after aligning their activations: pass batches= (probe "
                             "images, preprocessed as in training)")
        runs["b"] = _load_run(checkpoints_b, model)
    rows = []
    for run, nets in runs.items():
        final = nets[max(nets)]
        for epoch in tqdm(sorted(nets), desc=f"trajectory {run}", disable=not progress, leave=False):
            rows += [dict(run=run, epoch=epoch, **r) for r in _network_rows(nets[epoch], final, n, nets.get(0))]
    table = pd.DataFrame(rows)
    if "travel" not in table:
        table["travel"] = np.nan
    table["S"] = table["S_spread"] = np.nan
    if "b" in runs:
        common = sorted(set(runs["a"]) & set(runs["b"]))
        if not common:
            raise ValueError(f"the two runs share no epoch: {sorted(runs['a'])} vs {sorted(runs['b'])}")
        for epoch in tqdm(common, desc="S per epoch", disable=not progress, leave=False):
            res = compare(runs["a"][epoch], runs["b"][epoch], batches, n_draws=n_draws, progress=False).table
            for r in res.itertuples():
                at = (table.run == "a") & (table.epoch == epoch) & (table.layer == r.layer_a)
                table.loc[at, ["S", "S_spread"]] = r.S, r.S_spread
    return table
