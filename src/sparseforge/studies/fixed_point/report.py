"""The fixed-point study's outputs: epochs.csv, summary.csv, fixed_vs_float.png and report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import io
from ...topology import NetworkTopology
from .data import StudyData
from .schema import FixedStudyConfig


# --------------------------------------------------------------------------------------------- outputs
def write_outputs(rows: list[dict], summary: list[dict], run_dir: Path, cfg: FixedStudyConfig,
                   topo: NetworkTopology, data: StudyData) -> None:
    io.write_csv(run_dir / "epochs.csv", rows)
    io.write_csv(run_dir / "summary.csv", summary)
    _plot(rows, summary, run_dir / "fixed_vs_float.png", cfg)
    io.write_text(run_dir / "report.md", _report(rows, summary, cfg, topo, data))


def _plot(rows: list[dict], summary: list[dict], path: Path, cfg: FixedStudyConfig) -> Path:
    from ...runs.plots import save_figure, subplots

    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        style = dict(c="k", ls="--", lw=2) if label == "float" else {}
        ax1.plot([r["epoch"] for r in rs], [100 * r["test_acc"] for r in rs], marker="o", label=label, **style)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("per epoch")
    ax1.grid(True, alpha=0.3)
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.legend(fontsize=8, loc="center right")
    fx = [s for s in summary if s["arithmetic"] == "fixed"]
    for ib in sorted({s["int_bits"] for s in fx}):
        grp = sorted((s for s in fx if s["int_bits"] == ib), key=lambda s: s["word_bits"])
        ax2.plot([s["word_bits"] for s in grp], [100 * s["test_acc"] for s in grp], marker="o",
                 label=f"fixed point, {ib} integer bits")
    if fx:
        ax2.set_xticks(sorted({s["word_bits"] for s in fx}))
    flt = next((s for s in summary if s["label"] == "float"), None)
    if flt:
        ax2.axhline(100 * flt["test_acc"], c="k", ls="--", label="float64")
    ax2.set_xlabel("word length (bits, sign and integer bits included)")
    ax2.set_ylabel("final test accuracy (%)")
    ax2.set_title(f"after {cfg.epochs} epochs")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"{cfg.dataset}: N={tuple(cfg.net)}, d_out={tuple(cfg.fan_out)}, clash-free z={tuple(cfg.z)}, "
                 f"lr 2^-{cfg.lr_shift}, batch {cfg.batch_size}", fontsize=10)
    return save_figure(fig, path)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _pivot(summary: list[dict], cfg: FixedStudyConfig) -> list[str]:
    """Final test accuracy: one row per word length, one column per integer-bit count (markdown lines)."""
    fx = [s for s in summary if s["arithmetic"] == "fixed"]
    flt = next((s for s in summary if s["label"] == "float"), None)
    if not fx:
        return []
    ibs = sorted({s["int_bits"] for s in fx})
    head = f"Final test accuracy after {cfg.epochs} epochs" + (
        f" (float64: {_pct(flt['test_acc'])}; in brackets the difference to float in points)" if flt else "") + ":"
    lines = [head, "", "| word bits | " + " | ".join(f"{ib} integer bits" for ib in ibs) + " |",
             "|---:|" + "---:|" * len(ibs)]
    for wb in sorted({s["word_bits"] for s in fx}):
        cells = []
        for ib in ibs:
            s = next((x for x in fx if x["word_bits"] == wb and x["int_bits"] == ib), None)
            if s is None:
                cells.append("")
            else:
                vs = f" ({100 * s['vs_float']:+.2f})" if s["vs_float"] is not None else ""
                cells.append(_pct(s["test_acc"]) + vs)
        lines.append(f"| {wb} | " + " | ".join(cells) + " |")
    return lines + [""]


def _report(rows: list[dict], summary: list[dict], cfg: FixedStudyConfig, topo: NetworkTopology,
            data: StudyData) -> str:
    epochs = sorted({r["epoch"] for r in rows})
    dens = ", ".join(f"{100 * p.density:.2f}%" for p in topo.patterns)
    lines = [
        f"# Fixed-point vs float training on {cfg.dataset}",
        "",
        f"Network N = {tuple(cfg.net)}, out-degrees {tuple(cfg.fan_out)} (junction densities {dens}; "
        f"{topo.edges:,} weights), clash-free for z = {tuple(cfg.z)} (interleaver {cfg.interleaver}, "
        f"seed {cfg.seed}). Inputs: {len(data.y_train):,} training and {len(data.y_test):,} test samples as "
        f"{cfg.input_bits}-bit unsigned words"
        + (", 28x28 images zero-padded to 32x32" if cfg.net[0] == 1024 else "") + f"; {data.n_classes} classes "
        f"on the first {data.n_classes} of {cfg.net[-1]} sigmoid outputs (cross-entropy cost), hidden "
        f"{cfg.hidden}.",
        "",
        f"Every run starts from the same float64 weights (rounded to its format), sees the same samples in the "
        f"same order ({cfg.epochs} epochs, batch {cfg.batch_size}{' = online, as the hardware' if cfg.batch_size == 1 else ''}) "
        f"and uses the same learning rate 2^-{cfg.lr_shift} (an arithmetic shift in fixed point). Fixed point: "
        "weights, activations, pre-activations and deltas in words of `word_bits` bits: a sign bit, `int_bits` "
        f"integer bits and the rest fraction bits; rounding {cfg.rounding}, saturating; sigmoid and its derivative "
        "from ROMs. The float run rounds nothing.",
        "",
        *_pivot(summary, cfg),
        "Test accuracy per epoch (epoch 0 = the initial weights):",
        "",
        "| run | frac bits | " + " | ".join(f"epoch {e}" for e in epochs) + " | vs float |",
        "|---|---:|" + "---:|" * len(epochs) + "---:|",
    ]
    by = {s["label"]: s for s in summary}
    for label in dict.fromkeys(r["label"] for r in rows):
        accs = {r["epoch"]: r["test_acc"] for r in rows if r["label"] == label}
        s = by[label]
        vs = "" if s["vs_float"] is None or label == "float" else f"{100 * s['vs_float']:+.2f}"
        lines.append(f"| {label} | {'' if s['frac_bits'] is None else s['frac_bits']} | "
                     + " | ".join(_pct(accs.get(e)) for e in epochs) + f" | {vs} |")
    lines += [
        "",
        "Diagnostics of the last epoch (`weights changed`: fraction of the weights whose value changed during "
        "the epoch; `saturated`: values clipped to the word range in that epoch):",
        "",
        "| run | train loss | weights changed | saturated | saturation drift (predicted) | s/epoch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in by:
        r = [x for x in rows if x["label"] == label][-1]
        loss = "" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        drift = by[label]["range_drift"]
        lines.append(f"| {label} | {loss} | {_pct(r['weights_changed'])} | {r['saturated']:,} | "
                     f"{'' if drift is None else ('yes' if drift else 'no')} | {r['epoch_time_s']:.1f} |")
    sat = ", ".join(f"{ib} integer bits: sigmoid(-{2 ** ib}) = {1 / (1 + np.exp(2.0 ** ib)):.2g}"
                    for ib in sorted(set(cfg.int_bits)))
    lines += [
        "",
        "Where fixed point breaks down:",
        "",
        "* Precision (fraction bits). An update smaller than half a weight LSB rounds to nothing with "
        f"round-to-nearest: with the learning rate 2^-{cfg.lr_shift} a weight moves only when "
        f"|sum of delta * activation| >= 2^({cfg.lr_shift} - 1 - frac_bits). Short words freeze most weights "
        "(`weights changed`); stochastic rounding (`--rounding stochastic`) keeps small updates alive on average.",
        "* Range (integer bits). A pre-activation saturates at -2^int_bits, so a wrong output's sigmoid cannot "
        f"fall below sigmoid(-2^int_bits) ({sat}). If that rounds to a non-zero activation code q, the "
        "cross-entropy error a - y of every wrong output never vanishes, and if the bias step it causes, "
        f"2^-{cfg.lr_shift} q, exceeds half a weight LSB, the weights into the outputs drift down to saturation "
        "in every step (a float network's outputs approach 0 and the push fades). `saturation drift` is this "
        "prediction from the formats alone: short words are protected by their coarse LSBs (the push rounds "
        "away), longer words with too few integer bits are not.",
        "",
        "![fixed vs float](fixed_vs_float.png)",
        "",
    ]
    return "\n".join(lines)
