"""The seed's trade-off (seed 003): the networks chosen by two searches at different w_c, side by side.

    sparseforge search run cnn-fashion --run-dir runs/wc --study wc0.1 --w-c 0.1
    sparseforge search run cnn-fashion --run-dir runs/wc --study wc1 --w-c 1
    .venv/bin/python benchmarks/search_tradeoff.py runs/wc wc0.1 wc1 --out docs

For each search: the best trial's validation and test accuracy and parameters (from the search), and its
training time per epoch re-measured here on the search's data with 1 thread, as thread CPU time (robust to
other load on the machine; the median of ``--repeats`` epochs). Writes ``search_wc.md`` (the table) and
``search_wc.png`` (validation accuracy against parameters of every trial of both searches, the chosen
networks starred).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from sparseforge import io
from sparseforge.runs.plots import save_figure, subplots
from sparseforge.search import default_storage, load_search, summary, trial_rows
from sparseforge.search.objective import build_model, load_search_data
from sparseforge.train import fit


def epoch_cpu_s(search, config: dict, data, repeats: int) -> float:
    """Median thread CPU seconds of one training epoch of ``config`` (1 thread)."""
    times = []
    for r in range(repeats):
        model = build_model(search.spec, config, data, seed=r)
        tc = search.spec.train_config(config, seed=r)
        t0 = time.thread_time()
        fit(model, data, replace(tc, epochs=1))
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("studies", nargs="+")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="docs")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows, points = [], {}
    for name in a.studies:
        search = load_search(default_storage(a.run_dir), name, wait_s=0)
        best = summary(search)["best"]
        data = load_search_data(search.spec)
        t = epoch_cpu_s(search, best["config"], data, a.repeats)
        rows.append(dict(study=name, w_c=search.spec.objective.w_c, f=best["f"], val_acc=best["val_acc"],
                         test_acc=best["test_acc"], params=best["params"], epoch_cpu_s=t,
                         trials=len([r for r in trial_rows(search) if r["state"] == "COMPLETE"])))
        points[name] = ([r for r in trial_rows(search) if r["state"] == "COMPLETE"], best)
    lines = ["| w_c | trials | best f | val acc | test acc | parameters | train CPU s / epoch (1 thread) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['w_c']:g} | {r['trials']} | {r['f']:.4f} | {100 * r['val_acc']:.1f}% | "
                     f"{100 * r['test_acc']:.1f}% | {r['params']:,} | {r['epoch_cpu_s']:.2f} |")
    out = Path(a.out)
    io.write_text(out / "search_wc.md", "\n".join(lines) + "\n")
    io.write_csv(out / "search_wc.csv", rows)
    fig, ax = subplots(figsize=(6.5, 4.2))
    for (name, (trs, best)), r in zip(points.items(), rows):
        sc = ax.scatter([t["params"] for t in trs], [100 * t["val_acc"] for t in trs], s=18, alpha=0.6,
                        label=f"w_c = {r['w_c']:g}: all trials")
        ax.scatter([best["params"]], [100 * best["val_acc"]], marker="*", s=260, color=sc.get_facecolor()[0],
                   edgecolors="k", zorder=5, label=f"w_c = {r['w_c']:g}: chosen ({r['epoch_cpu_s']:.2f} s/epoch)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("best validation accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Fashion-MNIST CNN search: f = f_p + w_c f_c")
    save_figure(fig, out / "search_wc.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
