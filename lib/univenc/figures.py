"""Plotting for the paper's figures. Pure plotting: every number comes from ``univenc.experiments``."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .data import REPO_ROOT

__all__ = ["FIGURES_DIR", "preset_figures_dir", "save_figure", "plot_raw_filters", "plot_cosine_matrices",
           "plot_rank_curves", "plot_similarity_vs_depth", "plot_training_curves", "plot_image_grid",
           "plot_spatial_grid", "empty_figure", "plot_trajectory", "plot_ablations", "save_table",
           "plot_canonical_scores", "plot_controls", "plot_scaling", "plot_panel_scores", "plot_rainbow",
           "plot_init_curves"]

FIGURES_DIR = REPO_ROOT / "figures"
COMMITTED_PRESET = "cpu"  # the preset whose figures are committed in figures/ itself


def preset_figures_dir(preset: str) -> Path:
    """Where a preset's figures go by default: ``figures/`` for the committed ``cpu`` run, ``figures/<preset>/``
    for any other (``figures/paper/``, ``figures/smoke/``), so that a quick run never writes over them."""
    return FIGURES_DIR if preset == COMMITTED_PRESET else FIGURES_DIR / preset


def save_figure(fig, name: str, preset: str, out_dir=None) -> list[Path]:
    """Label the figure with its preset (bottom-right corner) and save ``name``.png and .pdf in ``out_dir``
    (default: :func:`preset_figures_dir`)."""
    out_dir = Path(out_dir or preset_figures_dir(preset))
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.text(0.995, 0.005, f"univenc preset: {preset}", ha="right", va="bottom", fontsize=7, color="0.4")
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    bbox = _tight_bbox(fig, dpi=130)
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches=bbox)
    return paths


def _tight_bbox(fig, dpi: float):
    """The box ``bbox_inches="tight"`` would crop to, measured once for several files (each "tight" save lays out
    every artist again: seconds for the grids of Fig. 1). "tight" itself where the canvas has no Agg renderer."""
    if not hasattr(fig.canvas, "get_renderer"):
        return "tight"
    fig_dpi = fig.dpi
    fig.set_dpi(dpi)  # text extents depend a little on the dpi: measure at the saved one
    try:
        return fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    finally:
        fig.set_dpi(fig_dpi)


def save_table(table, name: str, out_dir) -> Path:
    """Write a DataFrame as CSV (``name``, e.g. "zoo.csv") in ``out_dir``, atomically."""
    from .storage import atomic_write
    return atomic_write(Path(out_dir) / name, lambda tmp: table.to_csv(tmp, index=False))


def _show_image(ax, img, vmax=None, alpha=1.0):
    v = vmax or np.abs(img).max() or 1.0
    ax.imshow(img, cmap="RdBu_r", vmin=-v, vmax=v, alpha=alpha)
    ax.set_xticks([]), ax.set_yticks([])


def empty_figure(message: str):
    """A small figure that says why there is nothing to plot (an empty selection must not crash a notebook)."""
    fig = plt.figure(figsize=(5, 1.2))
    fig.text(0.5, 0.5, f"nothing to show: {message}", ha="center", va="center", fontsize=9)
    return fig


PADDED_ALPHA = 0.3  # padding-dominated layers (input map <= k) are drawn faded, not hidden


def _layer_label(layer: int, map_size, k: int) -> tuple[str, str]:
    """Label of a layer with its input map, and its colour: grey when the map is not larger than k."""
    if map_size is None or np.isnan(map_size):
        return f"layer {layer}", "k"
    padded = map_size <= k
    return f"layer {layer}\n{map_size}×{map_size}" + (" (pad)" if padded else ""), "0.55" if padded else "k"


def plot_raw_filters(weights, title: str = "", maps=None):
    """Fig. 5: raw k x k filters of each conv layer; ``weights`` is a list (one per layer) of arrays
    (n_out, n_in, k, k), e.g. the first 16 x 16 (``univenc.experiments.raw_filters``): rows are output
    channels, columns input channels. ``maps``: input map side per layer; layers whose map is not larger than
    k are faded and labelled "(pad)"."""
    maps = list(maps) if maps is not None else [None] * len(weights)
    ncol = (len(weights) + 1) // 2
    fig, axes = plt.subplots(2, ncol, figsize=(3.2 * ncol, 6.8), squeeze=False)
    for ax, (i, w) in zip(axes.flat, enumerate(weights)):
        co, ci, k, _ = w.shape
        canvas = np.full((co * (k + 1), ci * (k + 1)), np.nan)
        for o in range(co):
            for c in range(ci):
                f = w[o, c]
                canvas[o * (k + 1):o * (k + 1) + k, c * (k + 1):c * (k + 1) + k] = f / (np.abs(f).max() or 1)
        label, color = _layer_label(i + 1, maps[i], k)
        ax.imshow(canvas, cmap="RdBu_r", vmin=-1, vmax=1, alpha=PADDED_ALPHA if color != "k" else 1.0)
        ax.set_title(label.replace("\n", " "), fontsize=8, color=color)
        ax.set_xticks([]), ax.set_yticks([])
    for ax in list(axes.flat)[len(weights):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    return fig


def _cosine_panel(ax, cos, d, r_eff_a=None, r_eff_b=None, n=None):
    """|cos| matrix, white at the chance level 1/sqrt(d) and black at 5/sqrt(d); arrows at r_eff."""
    n = n or cos.shape[0]
    ax.imshow(cos[:n, :n], cmap="Greys", vmin=1 / np.sqrt(d), vmax=5 / np.sqrt(d), interpolation="nearest")
    for r, xy in ((r_eff_b, "x"), (r_eff_a, "y")):
        if r is not None and 0 < r < n:
            if xy == "x":
                ax.annotate("", xy=(r - 0.5, -0.5), xytext=(r - 0.5, -0.13 * n), annotation_clip=False,
                            arrowprops=dict(arrowstyle="->", color="tab:red", lw=1.2))
            else:
                ax.annotate("", xy=(-0.5, r - 0.5), xytext=(-0.13 * n, r - 0.5), annotation_clip=False,
                            arrowprops=dict(arrowstyle="->", color="tab:red", lw=1.2))
    ax.set_xticks([]), ax.set_yticks([])


def plot_cosine_matrices(rows: dict, n: int = 32, title: str = "", col_labels=None):
    """Grid of eigenvector cosine matrices. ``rows[label]`` is a list (one per column: layer) of dicts with
    keys ``cos`` (m, m), ``d``, and optionally ``r_eff_a``, ``r_eff_b``; None leaves the panel empty."""
    labels = list(rows)
    ncol = max(len(v) for v in rows.values())
    fig, axes = plt.subplots(len(labels), ncol, figsize=(1.45 * ncol + 1.6, 1.5 * len(labels) + 0.6),
                             squeeze=False)
    for i, label in enumerate(labels):
        for j in range(ncol):
            ax = axes[i, j]
            panel = rows[label][j] if j < len(rows[label]) else None
            if panel is None:
                ax.axis("off")
                continue
            _cosine_panel(ax, panel["cos"], panel["d"], panel.get("r_eff_a"), panel.get("r_eff_b"),
                          min(n, panel["cos"].shape[0]))
            if i == 0:
                ax.set_title(col_labels[j] if col_labels else f"layer {j + 1}", fontsize=8)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title + "\n(white: 1/sqrt(d), black: 5/sqrt(d); red arrows: effective ranks)", fontsize=9)
    return fig


def plot_rank_curves(df, ax=None):
    """Accuracy versus rank of a single truncated layer, one curve per layer (dashed: random directions)."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    layers = df[df.depth > 0]
    colors = plt.cm.viridis(np.linspace(0, 0.9, layers.depth.nunique()))
    for color, (depth, g) in zip(colors, layers.groupby("depth")):
        ax.plot(g["rank"], g.accuracy, "-o", ms=3, color=color, label=f"layer {depth}")
        ax.plot(g["rank"], g.random_accuracy, ":", color=color, lw=1)
        r = g.r_eff.iloc[0]
        ax.axvline(max(r, 1), color=color, lw=0.5, alpha=0.5)
    ax.axhline(df.full_accuracy.iloc[0], color="k", lw=0.8, ls="--", label="full network")
    ax.set_xscale("log"), ax.set_xlabel("rank r of the truncated layer"), ax.set_ylabel("test accuracy")
    ax.legend(fontsize=6, ncol=2)
    return ax


def plot_similarity_vs_depth(table, ax=None, title="", linestyle="-", suffix="", colors=None):
    """Fig. 4: S (eq. 6) versus depth, one line per pair, error bars: spread over floor/ceiling draws.
    ``linestyle``, ``suffix`` (added to the labels) and ``colors`` (one per pair) draw a variant on the same axes."""
    ax = ax or plt.subplots(figsize=(5, 3.6))[1]
    if table is None or len(table) == 0:  # a partial zoo: none of this panel's pairs is trained
        ax.text(0.5, 0.5, "no pair trained", ha="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9), ax.set_xticks([]), ax.set_yticks([])
        return ax
    groups = list(table.groupby(["net_a", "net_b"], sort=False))
    for i, ((a, b), g) in enumerate(groups):
        ax.errorbar(g.depth, g.S, yerr=g.S_spread, marker="o", ms=3, capsize=2, lw=1, ls=linestyle,
                    color=None if colors is None else colors[i],
                    label=f"{a.replace('fac_', '')} / {b.replace('fac_', '')}{suffix}")
    ax.axhline(0, color="0.5", lw=0.6), ax.axhline(1, color="0.5", lw=0.6, ls="--")
    depths = range(1, int(table.depth.max()) + 1)
    ax.set_xticks(list(depths)), ax.set_xlim(0.5, depths[-1] + 0.5)
    ax.tick_params(axis="x", labelsize=8 if len(depths) <= 12 else 5)
    ax.set_xlabel("layer (missing points: no eigenvalue above the noise, S undefined)", fontsize=8)
    ax.set_ylabel("normalised similarity S")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=5.5, ncol=2)
    return ax


def plot_canonical_scores(table, ax=None, title="", folded=None):
    """Spatial score of each k x k layer against the canonical set, one line per network (``table`` from
    ``univenc.experiments.canonical_scores``; ``folded``: the same with the BatchNorm scale folded in, dashed).
    Grey band: the random-init null (mean +- 3 sd); shaded columns: padding-dominated layers (map <= k)."""
    ax = ax or plt.subplots(figsize=(6, 3.6))[1]
    if table is None or len(table) == 0:
        ax.text(0.5, 0.5, "no trained network", ha="center", transform=ax.transAxes)
        return ax
    layers = list(dict.fromkeys(table.layer))
    x = {layer: i for i, layer in enumerate(layers)}
    colors = plt.cm.tab10(np.arange(table.net.nunique()) % 10)
    for color, (net, g) in zip(colors, table.groupby("net", sort=False)):
        ax.plot([x[v] for v in g.layer], g.score, "-o", ms=3, lw=1, color=color, label=net)
        if folded is not None and len(folded):
            f = folded[folded.net == net]
            ax.plot([x[v] for v in f.layer], f.score, "--", lw=1, color=color)
    null = table.groupby("layer", sort=False)[["null", "null_std"]].mean().reindex(layers)
    ax.fill_between(range(len(layers)), null.null - 3 * null.null_std, null.null + 3 * null.null_std, color="0.85",
                    label="random init (±3 sd)")
    for layer in table[table.padded].layer.unique():
        ax.axvspan(x[layer] - 0.5, x[layer] + 0.5, color="0.5", alpha=0.12, lw=0)
    maps = table.drop_duplicates("layer").set_index("layer")["map"].reindex(layers)
    ax.set_xticks(range(len(layers)), [f"{v} ({int(m)})" for v, m in maps.items()], rotation=60, ha="right",
                  fontsize=6)
    ax.set_ylim(0, 1.02), ax.set_ylabel("score vs canonical set (top-5 |cos|)")
    ax.set_title(title + ("\n(dashed: BatchNorm scale folded in; shaded: map ≤ k)" if folded is not None else ""),
                 fontsize=8)
    ax.legend(fontsize=6)
    return ax


def plot_controls(table, reference, ax=None, title=""):
    """S (eq. 6) per layer between each control and the natural-image networks: one line per control (mean
    over its natural partners, band: their min-max), beside ``reference`` (natural-natural pairs), in black.
    ``table`` has columns control, depth, S; ``reference`` columns depth, S."""
    ax = ax or plt.subplots(figsize=(6, 3.8))[1]
    for label, g in [("natural / natural", reference)] + list(table.groupby("control", sort=False)):
        by = g.groupby("depth").S.agg(["mean", "min", "max"])
        black = label == "natural / natural"
        line, = ax.plot(by.index, by["mean"], "-o", ms=3, lw=2 if black else 1, color="k" if black else None,
                        label=label if black else f"{label} / natural")
        ax.fill_between(by.index, by["min"], by["max"], color=line.get_color(), alpha=0.12, lw=0)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set(xlabel="layer", ylabel="normalised similarity S")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)
    return ax


def plot_training_curves(logs: dict):
    """Training loss and train/test accuracy per epoch for each network (``logs[name]`` = DataFrame)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = plt.cm.tab20(np.linspace(0, 1, max(len(logs), 2)))
    for color, (name, log) in zip(colors, logs.items()):
        axes[0].plot(log.epoch, log.loss, label=name, lw=1, color=color)
        line, = axes[1].plot(log.epoch, log.train_acc, lw=1, color=color)
        test = log.dropna(subset=["test_acc"])
        axes[1].plot(test.epoch, test.test_acc, "o--", ms=3, lw=0.8, color=line.get_color())
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="accuracy (line: train, dots: test)")
    axes[0].legend(fontsize=6, ncol=2)
    return fig


def plot_image_grid(images: dict, n: int = 8):
    """A few uint8 images (N, 3, H, W) per dataset, one row each."""
    if not images:
        return empty_figure("no dataset is in the data root")
    fig, axes = plt.subplots(len(images), n, figsize=(n * 0.9, len(images) * 1.0), squeeze=False)
    for i, (name, x) in enumerate(images.items()):
        for j in range(n):
            axes[i, j].imshow(x[j].permute(1, 2, 0).numpy())
            axes[i, j].axis("off")
        axes[i, 0].set_title(name, fontsize=8, loc="left")
    return fig


def plot_spatial_grid(nets: dict, n: int = 5, title: str = "", maps: dict | None = None, fig=None):
    """Fig. 1 layout: one row per layer, one block of ``n`` eigen-images per network; the first layer's row
    is set apart (it differs). ``nets[label]`` is a list, per layer, of (eigenvalues, eigen-images (m, k, k))
    as returned by ``univenc.experiments.spatial_layers``. Titles give each eigenvector's variance fraction.
    ``maps[label]``: input map side per layer (``univenc.experiments.spatial_maps``), written beside each
    layer; layers whose map is not larger than k are faded and labelled "(pad)". ``fig``: draw into this
    figure or subfigure instead of a new one."""
    if not nets:
        return empty_figure("no trained network in this selection")
    maps = maps or {}
    labels = list(nets)
    n_layers = max(len(v) for v in nets.values())
    ncol = len(labels) * (n + 1) - 1
    fig = fig or plt.figure(figsize=(0.62 * ncol + 0.8, 0.72 * n_layers + 1.3))
    grid = fig.add_gridspec(n_layers + 1, ncol, height_ratios=[1, 0.25] + [1] * (n_layers - 1),
                            width_ratios=([1] * n + [0.3]) * (len(labels) - 1) + [1] * n, hspace=0.45, wspace=0.1)
    for b, label in enumerate(labels):
        net_maps = maps.get(label) or [None] * len(nets[label])
        for layer, (vals, vecs) in enumerate(nets[label]):
            row = 0 if layer == 0 else layer + 1
            text, color = _layer_label(layer + 1, net_maps[layer], vecs.shape[-1])
            for j in range(min(n, len(vecs))):
                ax = fig.add_subplot(grid[row, b * (n + 1) + j])
                _show_image(ax, vecs[j], alpha=PADDED_ALPHA if color != "k" else 1.0)
                ax.set_title(f"{vals[j] / vals.sum():.2f}", fontsize=5, pad=1, color=color)
                if j == 0:
                    ax.set_ylabel(text if b == 0 else text.split("\n", 1)[-1], fontsize=6, color=color)
            if layer == 0:
                fig.text((b * (n + 1) + n / 2) / ncol * 0.86 + 0.07, 0.985 - 0.4 / (0.72 * n_layers + 1.3), label,
                         ha="center", fontsize=8, weight="bold")
    if any(maps.values()):
        title += "\n(beside each layer: its input map; faded \"(pad)\": map ≤ k, padding-dominated)"
    fig.suptitle(title, fontsize=10, y=1.0 + 0.25 / (0.72 * n_layers + 1.3))
    return fig


def plot_trajectory(table, stat: str, ax=None, title: str = "", run: str = "a"):
    """A statistic of :func:`univenc.trajectories.learning_trajectory` versus epoch, one line per layer (darker:
    deeper). Layers where the statistic is undefined at every epoch are left out."""
    ax = ax or plt.subplots(figsize=(4.5, 3.3))[1]
    rows = table[(table.run == run)].dropna(subset=[stat])
    layers = list(dict.fromkeys(rows.layer))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(layers), 1)))
    for color, (i, layer) in zip(colors, enumerate(layers, start=1)):
        g = rows[rows.layer == layer].sort_values("epoch")
        ax.plot(g.epoch, g[stat], "-o", ms=2.5, lw=1, color=color, label=f"layer {i}")
    if not layers:
        ax.text(0.5, 0.5, f"{stat}: undefined at every epoch", ha="center", va="center", transform=ax.transAxes,
                fontsize=8)
    ax.set_xlabel("epoch (0: initialisation)"), ax.set_ylabel(stat)
    ax.set_title(title, fontsize=8)
    if layers:
        ax.legend(fontsize=5.5, ncol=2)
    return ax


def plot_ablations(table):
    """Fig. 7: per setting of the sweep, the twins' test accuracy, S between the twins per layer, and S(twins)
    beside S(true, random) over layers 1-3 (``univenc.experiments.ablation_table``)."""
    if table is None or len(table) == 0:
        return empty_figure("no setting of the sweep is trained")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    x = np.arange(len(table))
    axes[0].bar(x, table.test_acc, color="0.6")
    axes[0].set(ylabel="test accuracy (mean of the twins)")
    colors = plt.cm.tab10(np.arange(len(table)) % 10)
    for color, r in zip(colors, table.itertuples()):
        axes[1].plot(range(1, len(r.S_twins_by_layer) + 1), r.S_twins_by_layer, "-o", ms=3, color=color,
                     label=r.setting)
    axes[1].axhline(0, color="0.5", lw=0.6)
    axes[1].set(xlabel="layer", ylabel="S between the seed twins"), axes[1].legend(fontsize=6)
    axes[2].bar(x - 0.2, table.S_twins, 0.4, label="twins (all layers)")
    axes[2].bar(x + 0.2, table.S_true_random_1_3, 0.4, label="true vs random (layers 1-3)")
    axes[2].axhline(0, color="0.5", lw=0.6)
    axes[2].set(ylabel="S"), axes[2].legend(fontsize=6)
    for ax in (axes[0], axes[2]):
        ax.set_xticks(x, table.setting, rotation=30, ha="right", fontsize=7)
    fig.tight_layout()
    return fig


def plot_scaling(table, summary=None, base_width=None, title="Fig. 10: every claim's statistic against scale"):
    """Fig. 10 (:func:`univenc.scaling.scaling_table`): one panel per claim, its decided number against the training
    images per class (log axis), one line per width (error bars: the claim's spread), the criterion (dashed; the
    shaded side passes) and the null (dotted). ``summary`` (:func:`univenc.scaling.scaling_summary`) titles each
    panel with the trend. A red ring marks a point whose random-label network did not fit its labels."""
    claims = list(dict.fromkeys(table.claim)) if len(table) else []
    if not claims:
        return empty_figure("nothing to show: no point of the scaling study is measured")
    cols = min(4, len(claims))
    rows = -(-len(claims) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    trends = {} if summary is None else dict(zip(summary.claim, summary.trend))
    widths = sorted(set(table.width))
    colors = dict(zip(widths, plt.cm.viridis(np.linspace(0.1, 0.85, len(widths)))))
    for ax, claim in zip(axes.flat, claims):
        rows_ = table[table.claim == claim].sort_values("per_class")
        ax.set_title(f"claim {claim}" + (f": {trends[claim]}" if claim in trends else ""), fontsize=8)
        if not np.isfinite(rows_.value.astype(float)).any():
            ax.text(0.5, 0.5, "not measured at any point", ha="center", va="center", fontsize=7,
                    transform=ax.transAxes)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        for width, g in rows_.groupby("width"):
            ax.errorbar(g.per_class, g.value, yerr=g.spread.fillna(0), marker="o" if width == base_width else "s",
                        ms=4, capsize=2, lw=1.2 if width == base_width else 0, color=colors[width],
                        label=f"width {width:g}")
        if "not_fitted" in rows_:
            unfit = rows_[rows_.not_fitted.fillna("").astype(str) != ""]
            if len(unfit):
                ax.scatter(unfit.per_class, unfit.value, s=70, facecolors="none", edgecolors="tab:red", lw=1,
                           label="random labels not fitted", zorder=3)
        last = rows_.iloc[-1]
        if np.isfinite(last.threshold):
            ax.axhline(last.threshold, color="k", ls="--", lw=0.8)
            lo, hi = ax.get_ylim()
            passing = (last.threshold, max(hi, last.threshold)) if last.direction == ">=" else \
                (min(lo, last.threshold), last.threshold)
            ax.axhspan(*passing, color="tab:green", alpha=0.08, lw=0)
        if np.isfinite(rows_.null.astype(float)).any():
            ax.plot(rows_.per_class, rows_.null, ls=":", color="0.4", lw=1, label="null")
        ax.set_xscale("log")
        budgets = sorted(set(rows_.per_class))  # the measured budgets, not the log axis' crowded minor labels
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("training images per class", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=5)
    for ax in list(axes.flat)[len(claims):]:
        ax.axis("off")
    fig.suptitle(title + " (dashed: criterion, green side passes; dotted: null)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_panel_scores(panels: dict, ax=None, title=""):
    """Bars: each shown layer's score against the canonical set, per network (``panels`` from
    ``univenc.experiments.spatial_panels``), beside its random-init null (mean and 3 sd, grey)."""
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    if not panels:
        ax.text(0.5, 0.5, "no trained network", ha="center", transform=ax.transAxes)
        return ax
    ticks, x = [], 0
    for color, (label, panel) in zip(plt.cm.tab10(np.arange(len(panels))), panels.items()):
        t = panel["table"]
        xs = np.arange(x, x + len(t))
        ax.bar(xs, t.score, color=color, label=label)
        ax.errorbar(xs, t.null, yerr=3 * t.null_std, fmt="_", color="0.4", ms=10, lw=1)
        ticks += [(xi, f"{layer} ({int(m)}x{int(m)}, k={int(k)})")
                  for xi, layer, m, k in zip(xs, t.layer, t["map"], t.k)]
        x += len(t) + 1
    ax.set_xticks([t[0] for t in ticks], [t[1] for t in ticks], rotation=60, ha="right", fontsize=5.5)
    ax.set_ylim(0, 1.02), ax.set_ylabel("score vs canonical set", fontsize=8)
    ax.set_title(title + " (grey: random init, mean ± 3 sd)", fontsize=8)
    ax.legend(fontsize=6)
    return ax


def plot_rainbow(table, ax=None, title=""):
    """Fig. 12 (a): test accuracy of rainbow networks (their classifier retrained) against the number of layers
    sampled, aligned and unaligned, beside the source and a freshly initialised network (``table`` from
    ``univenc.experiments.rainbow_table``)."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    if table is None or len(table) == 0:
        ax.text(0.5, 0.5, "no source network", ha="center", transform=ax.transAxes)
        return ax
    for method, style in (("rainbow, aligned", "-o"), ("rainbow, unaligned", "--s")):
        g = table[table.method == method]
        ax.plot(g.depth, g.test_acc, style, ms=3, label=method)
    for method, color in (("source, classifier retrained", "k"), ("PyTorch init, classifier retrained", "0.5")):
        ax.axhline(table[table.method == method].test_acc.iloc[0], color=color, ls=":", lw=1, label=method)
    ax.axhline(0.1, color="0.8", lw=0.8)
    ax.set_xlabel("layers sampled (the others kept)"), ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6)
    return ax


def plot_init_curves(curves, target: str, ax=None, title=""):
    """Fig. 12 (b, c): test accuracy against optimiser steps for each initialisation on ``target``: the mean over
    seeds (line) and their range (band) (``curves`` from ``univenc.experiments.init_curves``)."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    t = curves[curves.target == target] if len(curves) else curves
    if len(t) == 0:
        ax.text(0.5, 0.5, f"no network trained on {target}", ha="center", transform=ax.transAxes)
        return ax
    for init, g in t.groupby("init", sort=False):
        per = g.pivot_table(index="steps", columns="seed", values="test_acc")
        ax.plot(per.index, per.mean(axis=1), lw=1.2, label=init)
        ax.fill_between(per.index, per.min(axis=1), per.max(axis=1), alpha=0.2)
    ax.set_xlabel("optimiser steps"), ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6, title="init", title_fontsize=6)
    return ax
