"""The seed's trade-off (seed 003): the networks chosen by two searches at different w_c, side by side.

    for s in 0 1 2 3 4; do for w in 0.1 1; do
        sparseforge search run cnn-fashion --run-dir runs/wc --study wc$w-s$s --w-c $w --seed $s \
            --complexity flops --budget 36 --quiet
    done; done
    .venv/bin/python benchmarks/search_tradeoff.py runs/wc wc{0.1,1}-s{0,1,2,3,4} --out docs

For each search: the best trial's validation and test accuracy and parameters (from the search), and its
training time per epoch re-measured here on the search's data with 1 thread, as CPU time (robust to other
load on the machine; the least of ``--repeats`` epochs). Writes ``search_wc.md`` (a row per
search, then per w_c the mean best f and accuracies and the median parameters and time), ``search_wc.csv``
and ``search_wc.png`` (validation accuracy against the searched complexity of every trial, the chosen
networks starred).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

import torch
from matplotlib.ticker import NullFormatter

from sparseforge import io
from sparseforge.runs.plots import save_figure, subplots
from sparseforge.search import default_storage, load_search, summary, trial_rows
from sparseforge.search.objective import build_model, load_search_data
from sparseforge.train import count_flops, fit


def epoch_cpu_s(search, config: dict, data, repeats: int) -> tuple[float, int]:
    """CPU seconds of one training epoch of ``config`` (1 thread; ``epoch_cpu_s`` of :func:`fit`, training
    only), the least of ``repeats`` epochs (what the network costs when other load interferes least), and
    its forward FLOPs per sample."""
    times = []
    for r in range(repeats):
        model = build_model(search.spec, config, data, seed=r)
        flops = count_flops(model)
        tc = search.spec.train_config(config, seed=r)
        state = fit(model, data, replace(tc, epochs=1), progress=False)
        times.append(state.history[-1]["epoch_cpu_s"])
    return min(times), flops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("studies", nargs="+")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows, points = [], {}
    for name in a.studies:
        search = load_search(default_storage(a.run_dir), name, wait_s=0)
        best = summary(search)["best"]
        data = load_search_data(search.spec)
        t, flops = epoch_cpu_s(search, best["config"], data, a.repeats)
        rows.append(dict(study=name, w_c=search.spec.objective.w_c, f_c=search.spec.objective.complexity,
                         f=best["f"], val_acc=best["val_acc"], test_acc=best["test_acc"], params=best["params"],
                         mflops=flops / 1e6, batch_size=best["config"].get("batch_size"), epoch_cpu_s=t,
                         trials=len([r for r in trial_rows(search) if r["state"] == "COMPLETE"])))
        points[name] = ([r for r in trial_rows(search) if r["state"] == "COMPLETE"], best)
    head = ("| {} | trials | best f | val acc | test acc | parameters | MFLOPs / sample | batch | "
            "train CPU s / epoch (1 thread) |")
    rule = "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    lines = [head.format("search"), rule]
    for r in rows:
        lines.append(f"| {r['study']} (f_c {r['f_c']}, w_c {r['w_c']:g}) | {r['trials']} | {r['f']:.4f} | "
                     f"{100 * r['val_acc']:.1f}% | {100 * r['test_acc']:.1f}% | {r['params']:,} | {r['mflops']:.2f} | "
                     f"{r['batch_size']} | {r['epoch_cpu_s']:.2f} |")
    by_wc = {w: [r for r in rows if r["w_c"] == w] for w in sorted({r["w_c"] for r in rows})}
    lines += ["", head.format("w_c (searches)"), rule]
    for w, rs in by_wc.items():
        mean = {k: statistics.fmean(r[k] for r in rs) for k in ("f", "val_acc", "test_acc")}
        med = {k: statistics.median(r[k] for r in rs) for k in ("params", "mflops", "batch_size", "epoch_cpu_s")}
        lines.append(f"| {w:g} ({len(rs)}) | {rs[0]['trials']} each | mean {mean['f']:.4f} | mean "
                     f"{100 * mean['val_acc']:.1f}% | mean {100 * mean['test_acc']:.1f}% | median "
                     f"{med['params']:,.0f} | median {med['mflops']:.2f} | median {med['batch_size']:g} | "
                     f"median {med['epoch_cpu_s']:.2f} |")
    out = Path(a.out)
    io.write_text(out / "search_wc.md", "\n".join(lines) + "\n")
    io.write_csv(out / "search_wc.csv", rows)
    # x: what the searches counted as complexity (the first search's f_c)
    x_key, x_label = {"params": ("params", "parameters"), "flops": ("flops_per_sample", "forward FLOPs per sample"),
                      "time": ("epoch_cpu_s", "training CPU s per epoch (measured in the search)")}[rows[0]["f_c"]]
    fig, ax = subplots(figsize=(6.5, 4.2))
    for i, (w, rs) in enumerate(by_wc.items()):
        trs = [t for r in rs for t in points[r["study"]][0]]
        color = f"C{i}"
        ax.scatter([t[x_key] for t in trs], [100 * t["val_acc"] for t in trs], s=14, alpha=0.35, color=color,
                   label=f"w_c = {w:g}: all trials ({len(rs)} searches)")
        ax.scatter([points[r["study"]][1][x_key] for r in rs], [100 * points[r["study"]][1]["val_acc"] for r in rs],
                   marker="*", s=220, color=color, edgecolors="k", zorder=5,
                   label=f"w_c = {w:g}: chosen (median {statistics.median(r['epoch_cpu_s'] for r in rs):.2f} s/epoch)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # decade labels only (minor ones overlap)
    ax.set_xlabel(x_label)
    ax.set_ylabel("best validation accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Fashion-MNIST CNN search: f = f_p + w_c f_c")
    save_figure(fig, out / "search_wc.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
