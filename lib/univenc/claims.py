"""The claims report: one row per claim of the paper, each checked by a number beside its null.

The criteria below were fixed before any result was looked at; they are part of the report. A claim whose
networks are missing (absent dataset) is reported as "not tested" with the reason, never dropped.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from . import experiments as ex
from .storage import atomic_write, save_json
from .zoo import get_preset

__all__ = ["Claim", "evaluate_claims", "write_claims"]

# Thresholds shared by the criteria (chosen a priori).
MIN_SPATIAL_SCORE = 0.8       # matched |cos| of the top-5 spatial eigenvectors
NULL_SIGMAS = 3.0             # a statistic must exceed its null mean by this many null standard deviations


@dataclass
class Claim:
    id: int
    claim: str
    statistic: str
    criterion: str
    value: str
    null: str
    passed: bool | None   # None: not tested (see value)
    datasets: str
    preset: str


def _spatial_pairs_claim(cid, text, names, preset, root, datasets):
    p = get_preset(preset)
    table = ex.spatial_score_table(names, p, root)
    if table.empty:
        return Claim(cid, text, "", "", f"not tested: networks missing ({', '.join(names)})", "", None,
                     datasets, p.name)
    deep = table[table.layer >= 2]
    per_pair = deep.groupby(["net_a", "net_b"]).agg(score=("score", "mean"), null=("null_mean", "mean"),
                                                     null_std=("null_std", "mean"))
    ok = (per_pair.score >= MIN_SPATIAL_SCORE) & (per_pair.score > per_pair.null + NULL_SIGMAS * per_pair.null_std)
    value = "; ".join(f"{a}/{b}: {r.score:.3f}" for (a, b), r in per_pair.iterrows())
    null = "; ".join(f"{r.null:.3f}±{r.null_std:.3f}" for _, r in per_pair.iterrows())
    return Claim(cid, text, "mean over layers >= 2 of the matched |cos| of the top-5 spatial eigenvectors "
                 "(common grid: resampling)",
                 f"every pair >= {MIN_SPATIAL_SCORE} and > null + {NULL_SIGMAS:g} sd (null: random-init "
                 f"weights of the same shapes)", value, null, bool(ok.all()), datasets, p.name)


def evaluate_claims(preset, root=None) -> list[Claim]:
    """Compute every claim's statistic from the trained zoo of ``preset``."""
    p = get_preset(preset)
    claims = []

    # 1. spatial eigenvectors of layers >= 2 shared across filter sizes
    claims.append(_spatial_pairs_claim(
        1, "Spatial eigenvectors of layers >= 2 are the same set across filter sizes 3/5/7",
        ["vgg_k3_cifar10", "vgg_k5_cifar10", "vgg_k7_cifar10"], p, root, "CIFAR-10"))

    # 2. ... across natural-image datasets and under random labels
    names = ["vgg_k3_cifar10", "vgg_k3_cifar5", "vgg_k3_cifar100", "vgg_k3_cifar10_random"]
    missing = [n for n in names if n not in ex.trained(names, p, root)]
    c2 = _spatial_pairs_claim(
        2, "Spatial eigenvectors are the same across natural-image datasets and under random labels",
        names, p, root, "CIFAR-10, CIFAR5, CIFAR-10 random labels" + (", CIFAR-100" if not missing else ""))
    if missing:
        c2.value += f" (not trained, dataset absent: {', '.join(missing)})"
    claims.append(c2)

    # 3. the first layer differs
    first = ex.first_layer_table(["vgg_k3_cifar10", "vgg_k5_cifar10", "vgg_k7_cifar10"], p, root)
    if first.empty:
        claims.append(Claim(3, "The first layer's spatial eigenvectors differ from the deeper layers'", "", "",
                            "not tested: networks missing", "", None, "CIFAR-10", p.name))
    else:
        gap = first.deeper_vs_deeper - first.first_vs_deeper
        claims.append(Claim(
            3, "The first layer's spatial eigenvectors differ from the deeper layers'",
            "score(layer 1, common eigenvectors of layers >= 2) vs mean score among layers >= 2, per network",
            "first-vs-deeper lower than deeper-vs-deeper by >= 0.1 in every network",
            "; ".join(f"{r.net}: {r.first_vs_deeper:.3f} vs {r.deeper_vs_deeper:.3f}" for r in first.itertuples()),
            "; ".join(f"{r.null_mean:.3f}" for r in first.itertuples()), bool((gap >= 0.1).all()),
            "CIFAR-10", p.name))

    # 4. alignment is necessary
    pair = ("vgg_k3_cifar10", "vgg_k3_cifar10_bis")
    if len(ex.trained(pair, p, root)) < 2:
        claims.append(Claim(4, "Alignment is necessary", "", "", "not tested: networks missing", "", None,
                            "CIFAR-10", p.name))
    else:
        res = ex.compare_pair(*pair, p, root)
        null = ex.null_comparison(pair[0], p, root)
        layers = list(res["cosines"])[1:]  # layers >= 2 (layer 1 sees the same pixels in both networks)
        ranks = [max(1, int(round(min(res["cosines"][k]["r_eff_a"], res["cosines"][k]["r_eff_b"]))))
                 for k in layers]

        def sims(cosines, key):  # the trained pair's r per layer, for the null too
            return np.array([ex.top_similarity(cosines[k][key], r) for k, r in zip(layers, ranks)])
        al, un, nal = sims(res["cosines"], "aligned"), sims(res["cosines"], "unaligned"), \
            sims(null["cosines"], "aligned")
        ok = al.mean() > 2 * un.mean() and al.mean() > nal.mean() + NULL_SIGMAS * nal.std()
        claims.append(Claim(
            4, "Alignment is necessary: eigenvector similarity between two seeds is near chance without "
               "alignment and high with it",
            "mean over layers >= 2 of the leading eigenvectors' best |cos| (top r = r_eff), aligned vs unaligned",
            f"aligned > 2 x unaligned and > null + {NULL_SIGMAS:g} sd (null: two random-init networks, aligned)",
            f"aligned {al.mean():.3f}, unaligned {un.mean():.3f}", f"{nal.mean():.3f}±{nal.std():.3f}",
            bool(ok), "CIFAR-10 (probe: CIFAR-10 test images)", p.name))

    # 5. truncation to the effective rank keeps most accuracy
    if not ex.trained(["vgg_k3_cifar10"], p, root):
        claims.append(Claim(5, "Truncation to r_eff keeps accuracy", "", "", "not tested: network missing", "",
                            None, "CIFAR-10", p.name))
    else:
        rc = ex.rank_curves("vgg_k3_cifar10", p, root)
        per = rc[rc.depth > 0]
        at = per[per["rank"] == np.maximum(1, np.ceil(per.r_eff)).astype(int)]
        ratio = (at.accuracy / at.full_accuracy)
        rand = (at.random_accuracy / at.full_accuracy)
        joint = rc[rc.layer == "all@r_eff"].accuracy.iloc[0] / rc.full_accuracy.iloc[0]
        claims.append(Claim(
            5, "Most accuracy is kept when each layer is truncated to its effective rank",
            "test accuracy with one layer truncated to ceil(r_eff), relative to the full network (min over layers);"
            " all layers at once",
            ">= 0.9 of the full accuracy for every layer",
            f"min per layer {ratio.min():.3f} (mean {ratio.mean():.3f}); all layers at once {joint:.3f}; "
            f"r_eff = {', '.join(f'{r:.1f}' for r in at.r_eff)}",
            f"random directions of the same rank: min {rand.min():.3f}, mean {rand.mean():.3f}",
            bool(ratio.min() >= 0.9), "CIFAR-10", p.name))

    table, _ = ex.compare_pairs(p, root, groups=("labels", "datasets"), progress=False)
    missing_pairs = table.attrs.get("missing", [])

    # 6. channel eigenvectors similar across natural datasets, decreasing with depth
    natural = {"fac_cifar5", "fac_cifar10", "fac_cifar10a", "fac_cifar10b", "fac_cifar100", "fac_cifar100a",
               "fac_cifar100b", "fac_imagenet32"}
    ds = table[(table.get("group") == "datasets")] if not table.empty else table
    nat = ds[ds.net_a.isin(natural) & ds.net_b.isin(natural)] if not ds.empty else ds
    if nat.empty:
        claims.append(Claim(6, "Channel eigenvectors similar across natural datasets", "", "",
                            "not tested: networks missing", "", None, "", p.name))
    else:
        by_depth = nat.groupby("depth").agg(S=("S", "mean"), floor=("floor", "mean"))
        rho = spearmanr(by_depth.index, by_depth.S).statistic
        n_high = int((by_depth.S >= 0.5).sum())
        used = sorted(set(nat.net_a) | set(nat.net_b))
        claims.append(Claim(
            6, "Channel eigenvectors learned on different natural-image datasets are similar over a range of "
               "layers, and the similarity decreases with depth",
            "S (eq. 6) averaged over natural-dataset pairs, per layer; Spearman rho(depth, S)",
            "S >= 0.5 in >= 3 layers and rho < 0",
            "S by layer: " + ", ".join(f"{s:.2f}" for s in by_depth.S) + f"; rho = {rho:.2f}",
            "S = 0 is the random-rotation floor (cos_bw floor by layer: "
            + ", ".join(f"{f:.2f}" for f in by_depth["floor"]) + ")",
            bool(n_high >= 3 and rho < 0), ", ".join(u.replace("fac_", "") for u in used)
            + (" (CIFAR-100 pairs absent)" if any("cifar100" in m[0] + m[1] for m in missing_pairs) else ""),
            p.name))

    # 7. true vs random labels
    lab = table[table.get("group") == "labels"] if not table.empty else table
    tr = lab[(lab.net_a == "fac_cifar10") & lab.net_b.str.startswith("fac_cifar10_random")] if not lab.empty else lab
    rr = lab[(lab.net_a == "fac_cifar10_random_a") & (lab.net_b == "fac_cifar10_random_b")] if not lab.empty else lab
    if tr.empty or rr.empty:
        claims.append(Claim(7, "True vs random labels", "", "", "not tested: networks missing", "", None,
                            "CIFAR-10", p.name))
    else:
        s_tr = tr[tr.depth <= 3].S.mean()
        s_rr = rr[rr.depth <= 3].S.mean()
        claims.append(Claim(
            7, "True-label and random-label encodings differ (low S), while two random-label realisations "
               "agree (high S at early layers)",
            "mean S over layers 1-3: true vs random (a, b) and random a vs random b",
            "S(random a, random b) >= S(true, random) + 0.2, and S(true, random) < 0.5",
            f"S(true, random) = {s_tr:.3f}; S(random a, random b) = {s_rr:.3f}; all layers: "
            f"{tr.S.mean():.3f} vs {rr.S.mean():.3f}", "0 (random-rotation floor)",
            bool(s_rr >= s_tr + 0.2 and s_tr < 0.5), "CIFAR-10 (true and random labels)", p.name))

    # 8. effective rank grows with depth and with the number of classes
    names = ["fac_cifar5", "fac_cifar10", "fac_cifar100"]
    ranks = ex.layer_ranks(names, p, root)
    if ranks.empty or "fac_cifar10" not in set(ranks.net):
        claims.append(Claim(8, "Effective rank grows with depth and task difficulty", "", "",
                            "not tested: networks missing", "", None, "", p.name))
    else:
        c10 = ranks[ranks.net == "fac_cifar10"]
        rho = spearmanr(c10.depth, c10.r_eff).statistic
        means = ranks.groupby("net").r_eff.mean().reindex([n for n in names if n in set(ranks.net)])
        monotone = bool(np.all(np.diff(means.values) > 0))
        null_rank = ex.layer_ranks_random("fac_cifar10", p)
        claims.append(Claim(
            8, "Effective rank grows with depth and with task difficulty (number of classes)",
            "Spearman rho(depth, r_eff) for CIFAR-10; mean r_eff over layers for 5 / 10 (/ 100) classes",
            "rho >= 0.5 and mean r_eff increasing with the number of classes",
            f"rho = {rho:.2f}; r_eff by layer (CIFAR-10): " + ", ".join(f"{r:.1f}" for r in c10.r_eff)
            + "; mean r_eff: " + ", ".join(f"{n.replace('fac_', '')} {v:.1f}" for n, v in means.items()),
            f"random-init network: mean r_eff {null_rank:.2f}", bool(rho >= 0.5 and monotone),
            ", ".join(n.replace("fac_", "") for n in means.index), p.name))

    # 9. the non-natural control is less similar
    mn = ds[(ds.net_a == "fac_mnist") | (ds.net_b == "fac_mnist")] if not ds.empty else ds
    if mn.empty or nat.empty:
        claims.append(Claim(9, "MNIST less similar than natural datasets", "", "", "not tested: networks missing",
                            "", None, "MNIST", p.name))
    else:
        s_nat, s_mn = nat.S.mean(), mn.S.mean()
        spread = float(np.sqrt((nat.S_spread ** 2).mean() + (mn.S_spread ** 2).mean()))
        claims.append(Claim(
            9, "The non-natural control (MNIST) is less similar to the natural datasets than they are to each other",
            "mean S over layers and pairs: MNIST vs natural, natural vs natural",
            "S(MNIST, natural) < S(natural, natural) by more than the floor/ceiling spread",
            f"S(natural, natural) = {s_nat:.3f}; S(MNIST, natural) = {s_mn:.3f}", f"spread {spread:.3f}",
            bool(s_nat - s_mn > spread), "MNIST, CIFAR variants", p.name))
    return claims


def write_claims(claims: list[Claim], out_dir) -> tuple:
    """figures/claims.json and figures/claims.md (atomically)."""
    from pathlib import Path
    out_dir = Path(out_dir)
    rows = [asdict(c) for c in claims]
    save_json(rows, out_dir / "claims.json")
    lines = ["# Claims of the paper, checked by numbers", "",
             f"Preset: `{claims[0].preset}`. Criteria were fixed before the results were seen "
             "(`lib/univenc/claims.py`). PASS/FAIL is reported as measured; a claim that fails at a reduced "
             "scale is a finding.", "",
             "| # | claim | statistic | criterion | measured | null | result | data |", "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        res = "not tested" if c.passed is None else ("PASS" if c.passed else "FAIL")
        cells = [str(c.id), c.claim, c.statistic, c.criterion, c.value, c.null, res, c.datasets]
        lines.append("| " + " | ".join(x.replace("|", "/").replace("\n", " ") for x in cells) + " |")
    md = "\n".join(lines) + "\n"
    atomic_write(out_dir / "claims.md", lambda tmp: open(tmp, "w").write(md))
    return out_dir / "claims.json", out_dir / "claims.md"
