"""The pruning study's figures (Agg canvases) and markdown report."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Sequence

from ...runs.plots import save_figure, subplots
from .schema import PruneSpec


def retrain_summary(rows: Sequence[dict]) -> list[dict]:
    """Spread across seeds per (structure, target): mean, std, min, max of test accuracy."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["structure"], r["target"]), []).append(r["test_acc"])
    out = []
    for (kind, s), accs in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out.append(dict(structure=kind, target=s, seeds=len(accs), mean_acc=statistics.mean(accs),
                        std_acc=statistics.stdev(accs) if len(accs) > 1 else 0.0, min_acc=min(accs),
                        max_acc=max(accs)))
    return out


# ---------------------------------------------------------------------------------------------- figures
def plot_sweep(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """Test accuracy vs sparsity: one-shot (after pruning and after fine-tuning) and iterative."""
    fig, ax = subplots(figsize=(6.5, 4))
    dense = next((r for r in rows if r["method"] == "dense"), None)
    series = [("one-shot", "acc_after_prune", "one-shot, before fine-tuning", ":"),
              ("one-shot", "test_acc", "one-shot + fine-tuning", "-"), ("iterative", "test_acc", "iterative", "-")]
    targets = sorted({r["target"] for r in rows if r["method"] != "dense"})
    pos = {t: i for i, t in enumerate(targets)}
    for method, key, label, ls in series:
        pts = sorted((pos[r["target"]], 100 * r[key]) for r in rows if r["method"] == method and r.get(key) is not None)
        if pts:
            ax.plot(*zip(*pts), marker="o", ls=ls, label=label)
    if dense:
        ax.axhline(100 * dense["test_acc"], ls="--", c="gray", label="dense")
    ax.set_xticks(range(len(targets)), [f"{100 * t:g}%" for t in targets])
    ax.set_xlabel("sparsity (fraction of weights pruned)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_iterative(result: dict, path: Path) -> Path:
    """Three panels over training: per-layer sparsity (and target), per-layer threshold, accuracy."""
    log, spe = result.get("prune_log", []), result.get("steps_per_epoch", 1)
    fig, axes = subplots(1, 3, figsize=(14, 3.8))
    layers = [k.split("/", 1)[1] for k in (log[0] if log else {}) if k.startswith("sparsity/")]
    if log and log[0]["step"] > 0:  # dense until the first pruning
        log = [{**{k: 0.0 for k in log[0]}, "step": 0}, *log]
    steps = [r["step"] / spe for r in log]
    for n in layers:
        axes[0].step(steps, [100 * r[f"sparsity/{n}"] for r in log], where="post", label=f"layer {n}")
        axes[1].step(steps, [r[f"threshold/{n}"] for r in log], where="post", label=f"layer {n}")
    if log:
        axes[0].plot(steps, [100 * r["target"] for r in log], "k:", label="target s(t)")
    axes[0].set_ylabel("sparsity (%)")
    axes[1].set_ylabel("magnitude threshold")
    curve = result.get("curve", [])
    if curve:
        axes[2].plot([c["step"] / spe for c in curve], [100 * c["val_acc"] for c in curve], marker=".")
    else:
        hist = result.get("history", [])
        axes[2].plot([h["epoch"] for h in hist], [100 * h["val_acc"] for h in hist], marker="o")
    axes[2].set_ylabel("validation accuracy (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"iterative pruning to {100 * result['row']['target']:g}%", fontsize=10)
    return save_figure(fig, path)


def plot_retrain(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """One panel per sparsity: validation accuracy per epoch, one line per seed (pruned solid, random dashed)."""
    targets = sorted({r["target"] for r in rows})
    fig, axes = subplots(1, max(1, len(targets)), figsize=(4.5 * max(1, len(targets)), 3.6), squeeze=False)
    for ax, s in zip(axes[0], targets):
        for i, r in enumerate(sorted((r for r in rows if r["target"] == s), key=lambda r: (r["structure"], r["seed"]))):
            c = f"C{sorted({q['seed'] for q in rows}).index(r['seed'])}"
            ax.plot(range(1, len(r["val_curve"]) + 1), [100 * v for v in r["val_curve"]], c=c,
                    ls="-" if r["structure"] == "pruned" else "--", label=f"{r['structure']} seed {r['seed']}")
        ax.set_title(f"{100 * s:g}% sparse", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_bench(rows: Sequence[dict], path: Path, title: str = "") -> Path:
    """Speedup (best dense / sparse) vs batch size, one line per sparsity, forward and training step."""
    fig, axes = subplots(1, 2, figsize=(10, 3.8))
    backends = list(dict.fromkeys(r.get("backend", "default") for r in rows))
    styles = dict(zip(backends, ("-", "--", ":")))
    for i, s in enumerate(sorted({r["target"] for r in rows})):
        for b in backends:
            rs = sorted((r for r in rows if r["target"] == s and r.get("backend", "default") == b),
                        key=lambda r: r["batch"])
            label = f"{100 * s:g}% sparse" + (f", {b} kernels" if len(backends) > 1 else "")
            for ax, key in zip(axes, ("speedup_fwd", "speedup_train")):
                ax.plot([r["batch"] for r in rs], [r[key] for r in rs], marker="o", ls=styles[b], c=f"C{i}",
                        label=label)
    batches = sorted({r["batch"] for r in rows})
    for ax, name in zip(axes, ("inference forward", "training step (fwd+bwd)")):
        ax.axhline(1.0, c="gray", ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.set_ylabel("speedup vs best dense (x)")
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------- report
def _pct(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f}%"


def report_markdown(cfg: PruneSpec, out: dict[str, list[dict]], dataset: str) -> str:
    lines = [
        f"# Pruning study: {cfg.model} on {dataset}",
        "",
        f"Dense model trained {cfg.pretrain.epochs} epochs (Adam, lr {cfg.pretrain.lr:g} cosine, batch {cfg.pretrain.batch_size}, seed "
        f"{cfg.seed}); every pruned run then trains {cfg.prune.finetune_epochs} epochs (lr {cfg.prune.finetune_lr:g} cosine) "
        f"from the dense weights. Magnitude pruning, scope `{cfg.prune.scope}`; iterative schedule "
        f"`{cfg.prune.schedule.kind}` (ramp {cfg.prune.schedule.start_epoch:g} -> "
        f"{cfg.prune.schedule.end_epoch if cfg.prune.schedule.end_epoch is not None else round(2 * cfg.prune.finetune_epochs / 3, 2)} "
        f"epochs). Data limit per split: {cfg.data.limit or 'none (full)'}.",
        "",
    ]
    if "sweep" in out:
        rows = out["sweep"]
        dense = next((r for r in rows if r["method"] == "dense"), None)
        lines += ["## One-shot vs iterative pruning (test accuracy)", "",
                  "| target sparsity | reached | one-shot, no fine-tuning | one-shot + fine-tuning | iterative |",
                  "|---:|---:|---:|---:|---:|"]
        if dense:
            lines.append(f"| 0% (dense) | 0% | | {_pct(dense['test_acc'])} | |")
        for s in sorted({r["target"] for r in rows if r["method"] != "dense"}):
            one = next((r for r in rows if r["method"] == "one-shot" and r["target"] == s), {})
            it = next((r for r in rows if r["method"] == "iterative" and r["target"] == s), {})
            reached = (it or one).get("sparsity")
            lines.append(f"| {100 * s:g}% | {_pct(reached)} | {_pct(one.get('acc_after_prune'))} | "
                         f"{_pct(one.get('test_acc'))} | {_pct(it.get('test_acc'))} |")
        lines += ["", "![accuracy vs sparsity](figures/accuracy_vs_sparsity.png)", ""]
        layer_rows = out.get("layers", [])
        if layer_rows:
            lines += ["### Per-layer sparsity", "", "| method | target | layer | kind | shape | kept | sparsity | threshold |",
                      "|---|---:|---|---|---|---:|---:|---:|"]
            for r in layer_rows:
                thr = "" if r.get("threshold") is None else f"{r['threshold']:.4g}"
                lines.append(f"| {r['method']} | {100 * r['target']:g}% | {r['layer']} | {r['kind']} | {r['shape']} | "
                             f"{r['kept']:,} | {_pct(r['sparsity'])} | {thr} |")
            lines.append("")
        figs = [f"figures/iterative_s{100 * s:g}.png" for s in cfg.prune.sparsities if "iterative" in cfg.prune.methods]
        if figs:
            lines += ["### Iterative pruning over time (sparsity, threshold, accuracy)", ""]
            lines += [f"![{f}]({f})" for f in figs] + [""]
    if "retrain" in out:
        lines += ["## Retraining the pruned structure from scratch (test accuracy across seeds)", "",
                  f"Structure of the `{cfg.retrain.from_method}` runs; new random initialisations, seeds "
                  f"{list(cfg.retrain.seeds)}, {cfg.retrain.epochs or cfg.pretrain.epochs} epochs. `random`: same kept count "
                  "per layer at random positions.", "",
                  "| structure | target | seeds | mean | std | min | max |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in retrain_summary(out["retrain"]):
            lines.append(f"| {r['structure']} | {100 * r['target']:g}% | {r['seeds']} | {_pct(r['mean_acc'])} | "
                         f"{100 * r['std_acc']:.2f} | {_pct(r['min_acc'])} | {_pct(r['max_acc'])} |")
        lines += ["", "![retrain curves](figures/retrain_curves.png)", ""]
    if "bench" in out:
        lines += ["## Speed: pruned model converted to SparseLinear vs dense", "",
                  f"{cfg.bench.threads} torch thread(s); best of {cfg.bench.repeats} runs; ratio = best dense "
                  "(nn.Linear or feature-major GEMM) / sparse.", "",
                  "| sparsity | kernels | batch | params (sparse / dense) | dense fwd ms | sparse fwd ms | fwd speedup | "
                  "dense train ms | sparse train ms | train speedup |", "|---:|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in out["bench"]:
            lines.append(
                f"| {_pct(r['sparsity'])} | {r.get('backend', 'default')} | {r['batch']} | "
                f"{r['params']:,} / {r['dense_params']:,} | "
                f"{min(r['dense_fwd_ms'], r['dense_fm_fwd_ms']):.3f} | {r['sparse_fwd_ms']:.3f} | {r['speedup_fwd']:.2f}x | "
                f"{min(r['dense_train_ms'], r['dense_fm_train_ms']):.3f} | {r['sparse_train_ms']:.3f} | "
                f"{r['speedup_train']:.2f}x |")
        lines += ["", "![speedup](figures/speedup.png)", ""]
    return "\n".join(lines)
