"""The analyses of the studies: each takes the aggregated table and the per-seed rows, draws its
figures and states its conclusions (one function per analysis kind, :data:`ANALYSES`)."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any, Callable, Sequence

from ...errors import require
from ...runs.plots import save_figure, subplots
from .report import densities_text, pct, AnalysisResult
from .schema import (FamiliesAnalysis, JunctionAnalysis, LargeSparseAnalysis, RedundancyAnalysis,
                     RegularizationAnalysis)


# =========================================================================================== plotting
def _curves(ax, rows: Sequence[dict], x: str, y: str, group: str, *, scale: float = 100.0,
            label_fmt: Callable[[Any], str] = str) -> None:
    """Mean with min-max error bars of aggregated ``y`` (``<y>_mean/_min/_max``) against ``x``, per group."""
    groups: dict = {}
    for r in rows:
        groups.setdefault(r[group], []).append(r)
    for name, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[x])
        xs = [r[x] for r in rs]
        mean = [scale * r[f"{y}_mean"] for r in rs]
        lo = [scale * (r[f"{y}_mean"] - r[f"{y}_min"]) for r in rs]
        hi = [scale * (r[f"{y}_max"] - r[f"{y}_mean"]) for r in rs]
        ax.errorbar(xs, mean, yerr=[lo, hi], marker="o", capsize=3, label=label_fmt(name))


def _plain_log_ticks(axis) -> None:
    """Tick labels 5, 10, 20 instead of 5x10^0 on a log axis."""
    require("matplotlib", "drawing figures")
    from matplotlib.ticker import FuncFormatter, LogLocator

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _finish(ax, xlabel: str, ylabel: str, title: str = "", logx: bool = True) -> None:
    if logx:
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _with_pct_x(rows: Sequence[dict], key: str = "rho_net") -> list[dict]:
    return [dict(r, **{f"{key}_pct": 100 * r[key]}) for r in rows]


# =========================================================================================== analyses
def analyse_junction_densities(spec: JunctionAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Pairs at the same target rho_net (realised within ``tolerance``): one with the later junction
    denser than the earlier, one the other way round; the first should win."""
    e, l = f"rho_{spec.early}", f"rho_{spec.late}"
    sparse = [r for r in table if r["rho_net"] < 1]
    by_target: dict[float, list[dict]] = {}
    for r in sparse:
        by_target.setdefault(r["target_rho_net"], []).append(r)
    comps, mono = [], []
    skipped = 0
    for t, rs in sorted(by_target.items()):
        later = [r for r in rs if r[l] > r[e] + 1e-12]
        earlier = [r for r in rs if r[l] < r[e] - 1e-12]
        for a in later:
            for b in earlier:
                rel = abs(a["rho_net"] - b["rho_net"]) / max(a["rho_net"], b["rho_net"])
                if rel > spec.tolerance:
                    skipped += 1
                    continue
                diff = a["test_acc_mean"] - b["test_acc_mean"]
                comps.append({
                    "target_rho_net": t, "later_denser": a["label"], "earlier_denser": b["label"],
                    f"{e}_a": a[e], f"{l}_a": a[l], "rho_net_a": a["rho_net"], "edges_a": a["edges"],
                    f"{e}_b": b[e], f"{l}_b": b[l], "rho_net_b": b["rho_net"], "edges_b": b["edges"],
                    "acc_a": a["test_acc_mean"], "acc_b": b["test_acc_mean"], "diff": diff,
                    "win": diff > 0, "separated": a["test_acc_min"] > b["test_acc_max"],
                    "fewer_or_equal_edges": a["edges"] <= b["edges"],
                })
        for a, b in itertools.combinations(sorted(rs, key=lambda r: r[l]), 2):
            if b[l] > a[l] and abs(a["rho_net"] - b["rho_net"]) / max(a["rho_net"], b["rho_net"]) <= spec.tolerance:
                mono.append(b["test_acc_mean"] > a["test_acc_mean"])
    k, n = sum(c["win"] for c in comps), len(comps)
    sep = sum(c["win"] and c["separated"] for c in comps)
    fair = [c for c in comps if c["fewer_or_equal_edges"]]
    n_seeds = max((r["n_seeds"] for r in table), default=0)
    conclusions = []
    if n:
        mean_diff = statistics.fmean(c["diff"] for c in comps)
        conclusions.append(
            f"**{l} > {e} better in {k} of {n} comparisons** at equal rho_net (mean test accuracy over {n_seeds} "
            f"seeds; realised rho_net within {100 * spec.tolerance:g}% of each other); {sep} of the {k} wins have "
            f"non-overlapping min-max ranges over seeds; mean difference {100 * mean_diff:+.2f} points."
        )
        conclusions.append(
            f"Where the {l} > {e} net has no more weights than its rival: better in "
            f"{sum(c['win'] for c in fair)} of {len(fair)}."
        )
    else:
        conclusions.append(f"No comparison possible: no target rho_net has both a configuration with {l} > {e} "
                           f"and one with {l} < {e} (within {100 * spec.tolerance:g}% of each other).")
    if mono:
        conclusions.append(f"More generally, the denser {l} of two configurations at the same target rho_net was "
                           f"better in {sum(mono)} of {len(mono)} pairs.")
    if skipped:
        conclusions.append(f"{skipped} pairs were left out because their realised rho_net differ by more than "
                           f"{100 * spec.tolerance:g}%.")
    verdict = dict(claim_supported=bool(n) and k > n / 2, wins=k, comparisons=n, separated_wins=sep,
                   fair_wins=sum(c["win"] for c in fair), fair_comparisons=len(fair),
                   denser_late_wins=sum(mono), denser_late_pairs=len(mono))

    fig, ax = subplots(figsize=(6.5, 4.2))
    _curves(ax, _with_pct_x(sparse), "rho_net_pct", "test_acc", "group")
    fc = [r for r in table if r["rho_net"] == 1]
    if fc:
        ax.axhline(100 * statistics.fmean(r["test_acc_mean"] for r in fc), ls="--", c="gray", label="fully connected")
    _finish(ax, "overall density rho_net (%)", "test accuracy (%)",
            f"each curve: {l} fixed, {e} varied ({table[0]['dataset']}, N={table[0]['net']})")
    save_figure(fig, run_dir / "accuracy_vs_density.png")
    return AnalysisResult(conclusions, verdict, {"comparisons": comps}, ["accuracy_vs_density.png"],
                          columns={"comparisons": [
                              ("target rho_net", "target_rho_net:pct"), (f"{l} > {e}", "later_denser"),
                              (f"{l} < {e}", "earlier_denser"), ("rho_net a / b", "rho_net_a/rho_net_b:pct"),
                              ("acc a", "acc_a:pct"), ("acc b", "acc_b:pct"), ("a - b (points)", "diff:pts"),
                              ("a better", "win")]})


def analyse_large_sparse(spec: LargeSparseAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Per weight budget (group): accuracy against hidden width; does the wide sparse net beat the FC one?"""
    groups: dict[str, list[dict]] = {}
    for r in table:
        groups.setdefault(r["group"], []).append(r)
    summary, conclusions = [], []
    steps_up = steps = wins_widest = wins_any = budgets = separated = 0
    for g, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["hidden"])
        fc = next((r for r in rs if r["rho_net"] == 1), rs[0])
        best = max(rs, key=lambda r: r["test_acc_mean"])
        widest = rs[-1]
        ups = [b["test_acc_mean"] > a["test_acc_mean"] for a, b in zip(rs, rs[1:])]
        spread = (max(r["edges"] for r in rs) - min(r["edges"] for r in rs)) / fc["edges"]
        budgets += 1
        steps += len(ups)
        steps_up += sum(ups)
        wins_widest += widest["test_acc_mean"] > fc["test_acc_mean"] and widest is not fc
        wins_any += any(r["test_acc_mean"] > fc["test_acc_mean"] for r in rs if r is not fc)
        clear = best is not fc and best["test_acc_min"] > fc["test_acc_max"]
        separated += clear
        summary.append(dict(group=g, fc_hidden=fc["hidden"], fc_acc=fc["test_acc_mean"], best_hidden=best["hidden"],
                            best_rho_net=best["rho_net"], best_acc=best["test_acc_mean"], widest_hidden=widest["hidden"],
                            widest_rho_net=widest["rho_net"], widest_acc=widest["test_acc_mean"],
                            rises=sum(ups), steps=len(ups), edges_spread=spread, separated=clear))
        conclusions.append(
            f"{g}: FC N_1={fc['hidden']} {pct(fc['test_acc_mean'])}; best N_1={best['hidden']} at rho_net "
            f"{pct(best['rho_net'], 1)} {pct(best['test_acc_mean'])} ({100 * (best['test_acc_mean'] - fc['test_acc_mean']):+.2f} "
            f"points; min-max ranges over seeds {'separate' if clear else 'overlap'}); widest N_1={widest['hidden']} {pct(widest['test_acc_mean'])}; accuracy rises with width in "
            f"{sum(ups)} of {len(ups)} steps; weights equal within {100 * spread:.1f}%."
        )
    conclusions.insert(0, f"**A larger sparse net beat the small dense net of the same weight count in {wins_any} of "
                          f"{budgets} budgets** (the widest one in {wins_widest} of {budgets}; the best one by more "
                          f"than the seed ranges in {separated} of {budgets}); accuracy rose with hidden width in "
                          f"{steps_up} of {steps} steps.")
    verdict = dict(claim_supported=wins_any > budgets / 2, budgets=budgets, wins_any=wins_any, wins_widest=wins_widest,
                   separated=separated, rises=steps_up, steps=steps)
    require("matplotlib", "drawing figures")
    from matplotlib.ticker import FuncFormatter

    fig, ax = subplots(figsize=(6.5, 4.2))
    _curves(ax, table, "hidden", "test_acc", "group")
    for r in table:
        ax.annotate(f"{100 * r['rho_net']:.0f}%", (r["hidden"], 100 * r["test_acc_mean"]), fontsize=7,
                    textcoords="offset points", xytext=(3, -10))
    _finish(ax, "hidden width N_1 (log; labels: rho_net)", "test accuracy (%)",
            f"equal number of weights per curve ({table[0]['dataset']})")
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted({r["hidden"] for r in table}))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    save_figure(fig, run_dir / "accuracy_vs_width.png")
    return AnalysisResult(conclusions, verdict, {"budgets": summary}, ["accuracy_vs_width.png"],
                          columns={"budgets": [
                              ("budget", "group"), ("FC N_1", "fc_hidden"), ("FC acc", "fc_acc:pct"),
                              ("best N_1", "best_hidden"), ("best rho_net", "best_rho_net:pct"), ("best acc", "best_acc:pct"),
                              ("widest N_1", "widest_hidden"), ("widest acc", "widest_acc:pct"), ("rises", "rises"),
                              ("steps", "steps")]})


def _drops(table: list[dict], rows: list[dict]) -> list[dict]:
    """Aggregated rows with ``drop_mean/min/max`` (the group's FC accuracy minus this config's, per seed) and
    ``rel_drop_mean`` (the same divided by the FC net's margin above chance, ``acc_FC - 1 / n_classes``: the
    fraction of what the FC net learned that sparsification lost; comparable across datasets of different
    difficulty)."""
    fc_by_group_seed = {(r["group"], r["seed"]): r["test_acc"] for r in rows if r["rho_net"] == 1}
    per_cfg: dict[str, list[float]] = {}
    rel_cfg: dict[str, list[float]] = {}
    for r in rows:
        base = fc_by_group_seed.get((r["group"], r["seed"]))
        if base is None:
            continue
        per_cfg.setdefault(r["key"], []).append(base - r["test_acc"])
        chance = 1.0 / r["n_classes"] if r.get("n_classes") else 0.0
        if base > chance:
            rel_cfg.setdefault(r["key"], []).append((base - r["test_acc"]) / (base - chance))
    out = []
    for r in table:
        d = per_cfg.get(r["key"])
        if d:
            r = dict(r, drop_mean=statistics.fmean(d), drop_min=min(d), drop_max=max(d))
            rel = rel_cfg.get(r["key"])
            r["rel_drop_mean"] = statistics.fmean(rel) if rel else float("nan")
        out.append(r)
    return out


def analyse_redundancy(spec: RedundancyAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Accuracy lost by sparsifying (vs the same data's FC net, per seed), less vs more redundant inputs."""
    table = _drops(table, rows)
    missing = sorted({r["group"] for r in table} - {r["group"] for r in table if r["rho_net"] == 1})
    by = {(r["group"], r["target_rho_net"]): r for r in table if "drop_mean" in r and r["rho_net"] < 1}
    comps, conclusions = [], []
    for more, less in spec.pairs:
        targets = sorted({t for g, t in by if g == more} & {t for g, t in by if g == less})
        pair = []
        for t in targets:
            a, b = by[(less, t)], by[(more, t)]
            pair.append(dict(target_rho_net=t, less_redundant=less, more_redundant=more,
                             rho_net_less=a["rho_net"], rho_net_more=b["rho_net"],
                             drop_less=a["drop_mean"], drop_more=b["drop_mean"],
                             rel_drop_less=a["rel_drop_mean"], rel_drop_more=b["rel_drop_mean"],
                             acc_less=a["test_acc_mean"], acc_more=b["test_acc_mean"],
                             less_loses_more=a["drop_mean"] > b["drop_mean"],
                             less_loses_more_rel=a["rel_drop_mean"] > b["rel_drop_mean"]))
        comps += pair
        if pair:
            lo = pair[0]
            conclusions.append(
                f"{less} vs {more}: {less} lost more in {sum(c['less_loses_more'] for c in pair)} of {len(pair)} "
                f"densities ({sum(c['less_loses_more_rel'] for c in pair)} of {len(pair)} relative to the margin above "
                f"chance); at target rho_net {pct(lo['target_rho_net'], 1)} the drops are {100 * lo['drop_less']:.2f} vs "
                f"{100 * lo['drop_more']:.2f} points ({pct(lo['rel_drop_less'], 0)} vs {pct(lo['rel_drop_more'], 0)} "
                "of the margin)."
            )
        else:
            conclusions.append(f"{less} vs {more}: no common sparse density to compare.")
    k, n = sum(c["less_loses_more"] for c in comps), len(comps)
    k_rel = sum(c["less_loses_more_rel"] for c in comps)
    conclusions.insert(0, f"**Less redundant inputs lost more accuracy when sparsified in {k} of {n} comparisons** "
                          f"(drop = FC accuracy of the same data and seed minus sparse accuracy, mean over seeds); "
                          f"relative to the FC net's margin above chance in {k_rel} of {n}.")
    weak = [(r["group"], r["test_acc_mean"], 1.0 / r["n_classes"]) for r in table
            if r["rho_net"] == 1 and r.get("n_classes") and r["test_acc_mean"] < 0.5]
    for g, acc, chance in weak:
        conclusions.append(f"Caution: the FC net of {g} reaches only {pct(acc)} (chance {pct(chance)}), so its "
                           "drops are bounded by that; the relative drop is the fairer measure there.")
    if missing:
        conclusions.append(f"No FC baseline (rho_net = 1) for {missing}: their drops are not computed.")
    verdict = dict(claim_supported=bool(n) and k > n / 2, wins=k, comparisons=n, wins_relative=k_rel)
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    sparse_rows = [r for r in table if r["rho_net"] < 1 and "drop_mean" in r]
    _curves(axes[0], _with_pct_x(table), "rho_net_pct", "test_acc", "group")
    _finish(axes[0], "overall density rho_net (%)", "test accuracy (%)", "accuracy")
    _curves(axes[1], _with_pct_x(sparse_rows), "rho_net_pct", "drop", "group")
    _finish(axes[1], "overall density rho_net (%)", "accuracy drop vs FC (points)", "drop from the same data's FC net")
    save_figure(fig, run_dir / "redundancy.png")
    return AnalysisResult(conclusions, verdict, {"comparisons": comps, "drops": [
        dict(group=r["group"], dataset=r["dataset"], target_rho_net=r["target_rho_net"], rho_net=r["rho_net"],
             test_acc=r["test_acc_mean"], drop_mean=r["drop_mean"], drop_min=r["drop_min"], drop_max=r["drop_max"],
             rel_drop_mean=r["rel_drop_mean"])
        for r in sparse_rows]}, ["redundancy.png"],
        columns={"comparisons": [
            ("target rho_net", "target_rho_net:pct"), ("less redundant", "less_redundant"),
            ("drop", "drop_less:pts"), ("rel. drop", "rel_drop_less:pct"), ("more redundant", "more_redundant"),
            ("drop ", "drop_more:pts"), ("rel. drop ", "rel_drop_more:pct"), ("less loses more", "less_loses_more"),
            ("relative", "less_loses_more_rel")], "drops": []})


def _best_l2(rs: Sequence[dict], acc: str, loss: str) -> dict:
    """Highest validation accuracy; ties broken by lower validation loss, then by smaller l2."""
    return max(rs, key=lambda r: (round(r[acc], 12), -r[loss], -r["l2"]))


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)


def analyse_regularization(spec: RegularizationAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Per density (group): the l2 with the best mean validation accuracy; does it shrink with density?"""
    groups: dict[str, list[dict]] = {}
    for r in table:
        groups.setdefault(r["group"], []).append(r)
    best_rows = []
    for g, rs in groups.items():
        best = _best_l2(rs, "val_acc_mean", "val_loss_mean")
        zero = next((r for r in rs if r["l2"] == 0), None)
        per_seed = []
        for seed in sorted({x["seed"] for x in rows if x["group"] == g}):
            srs = [x for x in rows if x["group"] == g and x["seed"] == seed]
            per_seed.append(_best_l2(srs, "val_acc", "val_loss")["l2"])
        val_range = statistics.fmean(r["val_acc_max"] - r["val_acc_min"] for r in rs)
        best_rows.append(dict(group=g, rho_net=best["rho_net"], best_l2=best["l2"],
                              val_acc=best["val_acc_mean"], test_acc=best["test_acc_mean"],
                              val_gain=best["val_acc_mean"] - zero["val_acc_mean"] if zero else None,
                              val_range=val_range,
                              test_acc_l2_0=zero["test_acc_mean"] if zero else None,
                              val_acc_l2_0=zero["val_acc_mean"] if zero else None,
                              per_seed_best=" ".join(f"{v:g}" for v in per_seed),
                              per_seed_mean=statistics.fmean(per_seed) if per_seed else None))
    best_rows.sort(key=lambda r: -r["rho_net"])
    seq = [r["best_l2"] for r in best_rows]
    steps = list(zip(seq, seq[1:]))
    k = sum(b <= a for a, b in steps)
    strict = sum(b < a for a, b in steps)
    rho_s = _spearman([r["rho_net"] for r in best_rows], seq)
    trend = " -> ".join(f"{r['best_l2']:g} ({pct(r['rho_net'], 1)})" for r in best_rows)
    conclusions = [
        f"**Best L2 coefficient (lambda, by mean validation accuracy) as density falls: {trend}**; "
        f"non-increasing in {k} of {len(steps)} steps ({strict} strictly smaller); Spearman rank correlation of "
        f"density and best lambda "
        + ("undefined (one of them is constant)." if math.isnan(rho_s) else f"{rho_s:+.2f}.")
        if steps else f"Best lambda: {trend} (one density only).",
    ]
    if best_rows and steps:
        a, b = best_rows[0], best_rows[-1]
        rel = "smaller than" if b["best_l2"] < a["best_l2"] else "equal to" if b["best_l2"] == a["best_l2"] else "larger than"
        conclusions.append(f"At the sparsest density ({pct(b['rho_net'], 1)}) the best lambda is {rel} the one at the densest "
                           f"({pct(a['rho_net'], 1)}): {b['best_l2']:g} vs {a['best_l2']:g}.")
    clear = [r for r in best_rows if r["val_gain"] is not None and r["val_gain"] > r["val_range"]]
    with_zero = [r for r in best_rows if r["val_gain"] is not None]
    if with_zero:
        conclusions.append(
            f"The chosen lambda beat lambda = 0 on validation by more than the mean seed range at {len(clear)} of "
            f"{len(with_zero)} densities ("
            + ", ".join(f"{r['group']}: {100 * r['val_gain']:+.2f} vs {100 * r['val_range']:.2f} points" for r in with_zero)
            + "); below that the choice is within noise.")
    gains = [(r["group"], r["test_acc"] - r["test_acc_l2_0"]) for r in best_rows if r["test_acc_l2_0"] is not None]
    if gains:
        conclusions.append("Test accuracy gained by the chosen lambda over lambda = 0: "
                           + ", ".join(f"{g}: {100 * d:+.2f} points" for g, d in gains) + ".")
    verdict = dict(claim_supported=bool(steps) and k == len(steps) and seq[-1] < seq[0],
                   non_increasing_steps=k, steps=len(steps), strictly_smaller=strict, spearman=rho_s,
                   beyond_noise=len(clear),
                   best_l2={r["group"]: r["best_l2"] for r in best_rows})
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    _curves(axes[0], table, "l2", "val_acc", "group")
    _finish(axes[0], "L2 coefficient lambda (symlog)", "validation accuracy (%)", "validation accuracy", logx=False)
    nz = [r["l2"] for r in table if r["l2"] > 0]
    axes[0].set_xscale("symlog", linthresh=min(nz) if nz else 1e-6)
    axes[1].plot([100 * r["rho_net"] for r in best_rows], seq, marker="o")
    _finish(axes[1], "overall density rho_net (%)", "best lambda (symlog)", "lambda chosen by validation")
    axes[1].set_yscale("symlog", linthresh=min(nz) if nz else 1e-6)
    save_figure(fig, run_dir / "regularization.png")
    return AnalysisResult(conclusions, verdict, {"best_l2": best_rows}, ["regularization.png"],
                          columns={"best_l2": [
                              ("density", "group"), ("rho_net", "rho_net:pct"), ("best lambda", "best_l2:g"),
                              ("val acc", "val_acc:pct"), ("test acc", "test_acc:pct"), ("test acc, lambda=0", "test_acc_l2_0:pct"),
                              ("best lambda per seed", "per_seed_best")]})


def analyse_families(spec: FamiliesAnalysis, table: list[dict], rows: list[dict], run_dir: Path) -> AnalysisResult:
    """Per density point (group): families ranked by mean test accuracy, spread vs seed noise."""
    groups: dict[str, list[dict]] = {}
    for r in table:
        if r["rho_net"] < 1:
            groups.setdefault(r["group"], []).append(r)
    fc = [r for r in table if r["rho_net"] == 1]
    summary, conclusions = [], []
    wins: dict[str, int] = {}
    radix_vs_random = []
    for g in list(groups):
        rs = groups[g] = sorted(groups[g], key=lambda r: -r["test_acc_mean"])
        spread = rs[0]["test_acc_mean"] - rs[-1]["test_acc_mean"]
        noise = statistics.fmean(r["test_acc_max"] - r["test_acc_min"] for r in rs)
        wins[rs[0]["family"]] = wins.get(rs[0]["family"], 0) + 1
        fams = {r["family"]: r for r in rs}
        if "radix" in fams and "random" in fams:
            radix_vs_random.append(fams["radix"]["test_acc_mean"] - fams["random"]["test_acc_mean"])
        summary.append(dict(group=g, rho_net=rs[0]["rho_net"], densities=densities_text(rs[0]),
                            ranking=" > ".join(f"{r['family']} {100 * r['test_acc_mean']:.2f}" for r in rs),
                            best=rs[0]["family"], spread=spread, seed_range=noise))
        verdict_txt = "within" if spread <= noise else "beyond"
        conclusions.append(f"rho_net {pct(rs[0]['rho_net'], 1)} (junctions {densities_text(rs[0])}): "
                           + " > ".join(f"{r['family']} {pct(r['test_acc_mean'])}" for r in rs)
                           + f"; spread of family means {100 * spread:.2f} points, {verdict_txt} the mean seed range "
                           f"({100 * noise:.2f} points).")
    within = sum(s["spread"] <= s["seed_range"] for s in summary)
    conclusions.insert(0, f"**Families at equal junction densities: spread within seed noise at {within} of "
                          f"{len(summary)} densities**; best family per density: "
                          + ", ".join(f"{f} ({c})" for f, c in sorted(wins.items(), key=lambda kv: -kv[1])) + ".")
    if radix_vs_random:
        conclusions.append("RadiX-Net minus random (seed 004: 'random and explicit RadiX-Net layers behave the "
                           "same'): " + ", ".join(f"{100 * d:+.2f}" for d in radix_vs_random) + " points.")
    if fc:
        conclusions.append(f"Fully connected: {pct(statistics.fmean(r['test_acc_mean'] for r in fc))}.")
    verdict = dict(points=len(summary), within_noise=within, best_counts=wins, radix_minus_random=radix_vs_random)
    fig, ax = subplots(figsize=(6.5, 4.2))
    sparse = [r for g in groups.values() for r in g]
    _curves(ax, _with_pct_x(sparse), "rho_net_pct", "test_acc", "family")
    if fc:
        ax.axhline(100 * statistics.fmean(r["test_acc_mean"] for r in fc), ls="--", c="gray", label="fully connected")
    _finish(ax, "overall density rho_net (%)", "test accuracy (%)",
            f"families at equal junction densities (N={sparse[0]['net'] if sparse else ''})")
    save_figure(fig, run_dir / "families.png")
    metric_cols = [c for c in ("connectivity", "path_cv", "min_spectral_gap", "min_scatter") if f"{c}_mean" in (sparse[0] if sparse else {})]
    per_family = [dict(group=r["group"], family=r["family"], rho_net=r["rho_net"], test_acc=r["test_acc_mean"],
                       test_min=r["test_acc_min"], test_max=r["test_acc_max"],
                       **{c: r[f"{c}_mean"] for c in metric_cols}) for r in sparse]
    return AnalysisResult(conclusions, verdict, {"families": per_family}, ["families.png"],
                          columns={"families": [("density point", "group"), ("family", "family"),
                                                ("rho_net", "rho_net:pct"), ("test acc", "test_acc:pct"),
                                                ("min", "test_min:pct"), ("max", "test_max:pct")]
                                   + [(c, f"{c}:3f") for c in metric_cols]})


ANALYSES: dict[str, Callable[..., AnalysisResult]] = {
    "junction_densities": analyse_junction_densities,
    "large_sparse": analyse_large_sparse,
    "redundancy": analyse_redundancy,
    "regularization": analyse_regularization,
    "families": analyse_families,
}
