"""The SSL recipe's outputs: table.csv, layers.csv, figures (conv1 filters, sparsity) and report.md."""

from __future__ import annotations

from pathlib import Path

from ... import io
from ...errors import require
from ...runs.plots import save_figure, subplots
from .schema import KIND_FIELDS, SEED_TABLES, SSLSpec


# ---------------------------------------------------------------------------------------------- outputs
def _convs(res: dict) -> list[dict]:
    return [r for r in res["layers"] if r["type"] in ("Conv2d", "LoweredConv2d")]


def _join(vals, fmt="{}") -> str:
    return "—".join(fmt.format(v) for v in vals)


def table_rows(out: dict) -> list[dict]:
    """One row per model (baseline first) with the seed's table columns, conv layers joined by '—'.

    ``filters``, ``channels``, ``filter_size`` are those of the thinned convs (output channels, input
    channels, columns of the lowered weight matrix); ``learned_*_nz`` count the non-zero structures of the
    regularized weights (a conv may have more non-zero input channels than the previous layer keeps
    filters: channels fed by zero filters carry constants that are folded into biases).
    """
    rows = []
    for res in [out["baseline"]] + out["variants"]:
        convs = _convs(res)
        v = res.get("variant", {})
        rows.append(dict(
            model=res["model"], mode=v.get("mode", ""),
            coefficients=",".join([f"{k}={v[k]:g}" for k in KIND_FIELDS if v.get(k)]
                                   + [f"x{m:g}@{n}" for n, m in v.get("layer_scale", ())]),
            test_err=res["test_err"], test_err_thinned=1 - res["test_acc_thinned"], max_abs_diff=res["max_abs_diff"],
            filters=_join((r["thinned_out"] or [0])[0] for r in convs),
            channels=_join((r["thinned_in"] or [0])[0] for r in convs),
            filter_size=_join(r["thinned_columns"] for r in convs),
            learned_filters_nz=_join(r["filters_nz"] for r in convs),
            learned_channels_nz=_join(r["channels_nz"] for r in convs),
            learned_columns_nz=_join(r["columns_nz"] for r in convs),
            conv_flop_pct=_join((100 * r["flop_pct"] for r in convs), "{:.1f}%"),
            conv_speedup=_join((r["speedup"] for r in convs), "{:.2f}x"),
            depth=res["depth"], depth_thinned=res["depth_thinned"],
            params=res["params"], params_thinned=res["params_thinned"],
            flop_pct=res["flop_pct"], time_ms=res["time_ms"], time_thinned_ms=res["time_thinned_ms"],
            speedup=res["speedup"],
        ))
    return rows


def write_outputs(out: dict, run_dir: Path, cfg: SSLSpec) -> None:
    """table.csv, layers.csv, conv1_filters.png, sparsity.png and report.md in ``run_dir``."""
    rows = table_rows(out)
    io.write_csv(run_dir / "table.csv", rows)
    layers = [r for res in [out["baseline"]] + out["variants"] for r in res["layers"]]
    io.write_csv(run_dir / "layers.csv", layers)
    plot_conv1_filters(out, run_dir / "conv1_filters.png")
    plot_sparsity(out, run_dir / "sparsity.png")
    io.write_text(run_dir / "report.md", report_markdown(out, rows, cfg))


def plot_conv1_filters(out: dict, path: Path) -> Path:
    """One row of conv1 filters per model, each model scaled to its largest |weight|; the middle grey is
    zero, as in the seed's figures. Drawn as one tiled image (fast)."""
    import numpy as np

    matplotlib = require("matplotlib", "drawing figures")

    models = [out["baseline"]] + out["variants"]
    ws = [np.asarray(m["conv1_filters"], dtype=np.float32) for m in models]
    n = max(len(w) for w in ws)
    kh, kw = max(w.shape[1] for w in ws), max(w.shape[2] for w in ws)
    img = np.full((len(ws) * (kh + 1) - 1, n * (kw + 1) - 1), np.nan, dtype=np.float32)
    for i, w in enumerate(ws):
        lim = float(np.abs(w).max()) or 1.0
        for j in range(len(w)):
            img[i * (kh + 1): i * (kh + 1) + w.shape[1], j * (kw + 1): j * (kw + 1) + w.shape[2]] = w[j] / lim
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    fig, ax = subplots(figsize=(0.35 * n * (kw + 1) / 6 + 1.5, 0.45 * len(ws) * (kh + 1) / 6 + 0.6))
    ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([i * (kh + 1) + (kh - 1) / 2 for i in range(len(ws))])
    ax.set_yticklabels([m["model"] for m in models], fontsize=8)
    ax.set_title("conv1 filters (grey = 0)", fontsize=9)
    return save_figure(fig, path)


def plot_sparsity(out: dict, path: Path) -> Path:
    """Row (filter), column (shape) and element sparsity per conv/linear layer, one panel per SSL variant."""
    import numpy as np

    variants = out["variants"] or [out["baseline"]]
    fig, axes = subplots(len(variants), 1, figsize=(max(6.0, 0.45 * len(variants[0]["layers"]) + 2),
                                                         2.6 * len(variants)), squeeze=False)
    for ax, res in zip(axes[:, 0], variants):
        names = [r["layer"] for r in res["layers"]]
        x = np.arange(len(names))
        for k, (key, label) in enumerate([("row_sparsity", "row (filter)"), ("col_sparsity", "column (shape)"),
                                          ("elem_sparsity", "element")]):
            ax.bar(x + (k - 1) * 0.27, [100 * r[key] for r in res["layers"]], 0.27, label=label)
        ax.set_xticks(x)
        ax.set_xticklabels(names, rotation=60 if len(names) > 6 else 0, fontsize=7)
        ax.set_ylim(0, 105)
        ax.set_ylabel("sparsity (%)")
        ax.set_title(f"{res['model']}: error {100 * res['test_err']:.2f}%, FLOPs {100 * res['flop_pct']:.1f}%, "
                     f"depth {res['depth_thinned']}", fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def _kind(cfg: SSLSpec) -> str:
    if any(v.depth for v in cfg.variants):
        return "depth"
    if any(v.shape for v in cfg.variants):
        return "shape"
    return "filter"


def report_markdown(out: dict, rows: list[dict], cfg: SSLSpec) -> str:
    t = cfg.train
    kind = _kind(cfg)
    n_train = "all" if cfg.data.limit is None else f"{cfg.data.limit} per split"
    lines = [
        f"# SSL recipe `{cfg.name}`: {cfg.model} on {cfg.data.name}",
        "",
        f"Data: {cfg.data.name}, samples {n_train}. Baseline: {t.epochs} epochs {t.optimizer} lr {t.lr:g} "
        f"({t.lr_schedule}), momentum {t.momentum:g}, weight decay {t.weight_decay:g}, batch {t.batch_size}, seed "
        f"{cfg.seed}. SSL: {cfg.ssl.epochs} epochs from the baseline at lr {cfg.ssl.lr or t.lr:g} (constant) with "
        f"group Lasso, then {cfg.ssl.finetune_epochs} fine-tuning epochs with the zero groups frozen. Thinned models "
        "are checked against the regularized model (max |logit difference| on 512 test images).",
        "",
        f"Speed: CPU forward time, batch {cfg.bench.batch}, torch threads {cfg.bench.threads}, min over "
        f"{cfg.bench.repeats} repeats of the mean of {cfg.bench.number} calls, original and thinned timed "
        "alternately; speedup = original (same weights, "
        "not thinned) / thinned. FLOPs = 2 x multiply-accumulates of conv/linear layers per sample; "
        "FLOP % is thinned / baseline.",
        "",
        "## Results",
        "",
    ]
    if kind == "depth":
        lines += [
            "| model | mode | coefficients | error | layers | blocks kept | params | FLOP % | time (ms) | speedup |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r, res in zip(rows, [out["baseline"]] + out["variants"]):
            nb = len(res["blocks"])
            kept = sum(1 for b in res["blocks"].values() if b["kept"])
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['coefficients']} | {100 * r['test_err']:.2f}% | "
                f"{r['depth']}→{r['depth_thinned']} | {kept}/{nb} | {r['params_thinned']:,} | "
                f"{100 * r['flop_pct']:.1f}% | {r['time_thinned_ms']:.2f} | {r['speedup']:.2f}× |")
    else:
        size_col = "filter size" if kind == "shape" else "filter #"
        lines += [
            f"| model | mode | coefficients | error | {size_col} | channel # | FLOP (per conv) | speedup (per conv) "
            "| FLOP (model) | speedup (model) |",
            "|---|---|---|---:|---|---|---|---|---:|---:|",
        ]
        for r in rows:
            lines.append(
                f"| {r['model']} | {r['mode']} | {r['coefficients']} | {100 * r['test_err']:.2f}% | "
                f"{r['filter_size'] if kind == 'shape' else r['filters']} | {r['channels']} | {r['conv_flop_pct']} | "
                f"{r['conv_speedup']} | {100 * r['flop_pct']:.1f}% | {r['speedup']:.2f}× |")
    if kind != "depth":
        lines += ["", "Filter #, channel # and filter size are those of the thinned convs (conv1—conv2); the "
                  "per-layer table below also gives the non-zero structures of the regularized weights."]
    lines += ["", SEED_TABLES[kind], "", "## Per layer", ""]
    lines += ["| model | layer | thinned as | filters | channels | columns | row / col / elem sparsity | FLOPs | "
              "FLOP % | ms orig | ms thinned | speedup |", "|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for res in [out["baseline"]] + out["variants"]:
        for r in res["layers"]:
            lines.append(
                f"| {r['model']} | {r['layer']} | {r['thinned_type']} | {r['filters_nz']}/{r['filters']} | "
                f"{r['channels_nz']}/{r['channels']} | {r['columns_nz']}/{r['columns']} | "
                f"{100 * r['row_sparsity']:.1f}% / {100 * r['col_sparsity']:.1f}% / {100 * r['elem_sparsity']:.1f}% | "
                f"{r['flops']:,} | {100 * r['flop_pct']:.1f}% | {r['time_ms']:.3f} | {r['time_thinned_ms']:.3f} | "
                + ("removed |" if r["thinned_type"] == "removed" else f"{r['speedup']:.2f}× |"))
    low = [r for res in out["variants"] for r in res["layers"] if "lowering_speedup" in r]
    if low:
        lines += ["", "## Lowered convs (shape-wise thinning) against a Conv2d of the same channel-thinned shape",
                  "", "Both compute the same function; the Conv2d (oneDNN) keeps the zero columns, the lowered conv "
                  "gathers only the kept columns and runs one GEMM.", "",
                  "| model | layer | columns kept | Conv2d ms | lowered ms | lowering speedup |", "|---|---|---|---:|---:|---:|"]
        for r in low:
            lines.append(f"| {r['model']} | {r['layer']} | {r['thinned_columns']} of {r['thinned_in'][0]}x"
                         f"{r['columns'] // max(r['channels'], 1)} | {r['same_shape_conv_ms']:.3f} | "
                         f"{r['lowered_ms']:.3f} | {r['lowering_speedup']:.2f}× |")
    if any(res["blocks"] for res in out["variants"]):
        lines += ["", "## Residual blocks", "", "| model | block | kept | ms orig | ms thinned | speedup |",
                  "|---|---|---|---:|---:|---:|"]
        for res in out["variants"]:
            for n, b in res["blocks"].items():
                sp = f"{b['speedup']:.2f}×" if b["kept"] else "(shortcut only)"
                lines.append(f"| {res['model']} | {n} | {'yes' if b['kept'] else 'removed'} | {b['time_ms']:.3f} | "
                             f"{b['time_thinned_ms']:.3f} | {sp} |")
    lines += ["", "Thinned models: " + ", ".join(
        f"{res['model']}: test error {100 * (1 - res['test_acc_thinned']):.2f}%, max |diff| {res['max_abs_diff']:.2e}"
        + (f", ONNX {res['onnx']}" if "onnx" in res else "") for res in out["variants"]) + ".",
        "", "![conv1 filters](conv1_filters.png)", "", "![sparsity per layer](sparsity.png)", ""]
    return "\n".join(lines)
