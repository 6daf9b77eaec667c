"""The main job: pre-defined sparse MLPs trained from scratch on MNIST against their FC twin.

For each overall density, an N=(784, 112, 10) network is designed (last junction dense, as the seeds
advise, where the budget allows), trained from scratch with the same recipe as the FC net, and its test
accuracy, parameter count, FLOPs and training time per epoch are recorded. Every configuration is a
sub-run with its own checkpoint, so an interrupted demo resumes where it stopped; the run directory is a
:class:`~sparseforge.runs.RunStore` tied to the settings, so a rerun with other settings is refused (or,
with ``overwrite``, starts again) instead of reporting new settings over old numbers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..data import DataSplits, load_dataset
from ..nn import SparseMLP
from ..runs import RunStore
from ..runs.plots import plot_metric_vs_density
from ..runs.report import write_report
from ..topology import allocate_density, design
from ..train import Callback, TrainConfig, fit

DEFAULT_DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02)


@dataclass(frozen=True)
class DemoConfig:
    """Settings of ``sparseforge demo`` (defaults: a few minutes on 2 cores)."""

    net: tuple[int, ...] | None = None  # None: (inputs of the data, 112, classes of the data)
    densities: tuple[float, ...] = DEFAULT_DENSITIES
    dataset: str = "mnist"
    epochs: int = 15
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0
    limit: int | None = None

    def sizes(self, data: DataSplits) -> tuple[int, ...]:
        """The layer sizes: ``net``, or ``(data.n_features, 112, data.n_classes)`` when ``net`` is None."""
        return tuple(self.net) if self.net else (data.n_features, 112, data.n_classes)

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           lr_schedule="cosine")


def run_demo(
    cfg: DemoConfig,
    run_dir: str | Path,
    *,
    data: DataSplits | None = None,
    callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (),
    overwrite: bool = False,
) -> list[dict]:
    """Train every configuration (resuming finished/partial ones) and write the table, plot and report.

    ``run_dir`` is refused (:class:`~sparseforge.errors.ConfigError` naming the fields) when it holds a demo
    made with other settings, unless ``overwrite`` (then it is cleared first).

    Returns one row per density: ``rho_net``, ``fan_out``, ``params``, ``flops_per_sample``, ``test_acc``,
    ``val_acc``, ``epoch_time_s`` (mean over epochs), ``train_time_s``.
    """
    run_dir = Path(run_dir)
    with RunStore(run_dir, cfg, command="demo", overwrite=overwrite) as store:
        data = data or load_dataset(cfg.dataset, seed=cfg.seed, limit=cfg.limit)
        net = cfg.sizes(data)
        rows = [_density_run(cfg, data, net, rho, store, callbacks_for) for rho in cfg.densities]
        write_outputs(rows, run_dir, cfg, net)
    return rows


def _density_run(cfg: DemoConfig, data: DataSplits, net: tuple[int, ...], rho: float, store: RunStore,
                 callbacks_for: Callable[[str], Sequence[Callback]]) -> dict:
    """The row of one density: stored in ``store`` under its label, or trained now (resuming)."""
    fan_out = allocate_density(net, rho)
    topo = design(net, fan_out=fan_out, seed=cfg.seed)
    label = "fc" if topo.rho_net == 1 else f"rho{100 * rho:g}"
    done = store.result(label)
    if done is not None:
        return done["row"]
    torch.manual_seed(cfg.seed)
    model = SparseMLP(topo)
    t0 = time.perf_counter()
    state = fit(model, data, cfg.train_config(), callbacks=callbacks_for(label), run_dir=store.path(label),
                resume=True, settings={"demo": store.hash, "label": label})
    hist = state.history
    row = dict(
        label=label,
        target_density=rho,
        rho_net=topo.rho_net,
        fan_out=list(fan_out),
        fan_in=[p.d_in for p in topo.patterns],
        junction_densities=[round(d, 4) for d in topo.densities],
        params=model.num_parameters(),
        flops_per_sample=model.flops_per_sample(),
        epochs=len(hist),
        val_acc=hist[-1]["val_acc"],
        test_acc=state.metrics["test_acc"],
        epoch_time_s=sum(h["epoch_time_s"] for h in hist) / len(hist),
        train_time_s=time.perf_counter() - t0,
    )
    store.save_result(label, {"row": row, "history": hist})
    return row


def write_outputs(rows: list[dict], run_dir: Path, cfg: DemoConfig, net: Sequence[int]) -> None:
    """table.csv, accuracy_vs_density.png and report.md in ``run_dir``."""
    fc = next((r for r in rows if r["rho_net"] == 1), None)
    figure = lambda path: plot_metric_vs_density(  # noqa: E731
        [r for r in rows if r["rho_net"] < 1], path, title=f"{cfg.dataset}, N={tuple(net)}, {cfg.epochs} epochs",
        baseline=fc["test_acc"] if fc else None)
    write_report(run_dir, report_markdown(rows, cfg, net), tables={"table.csv": rows},
                 figures={"accuracy_vs_density.png": figure})


def report_markdown(rows: list[dict], cfg: DemoConfig, net: Sequence[int]) -> str:
    fc = next((r for r in rows if r["rho_net"] == 1), None)
    lines = [
        f"# Pre-defined sparsity on {cfg.dataset}",
        "",
        f"Network N_net = {tuple(net)}; every model trained from scratch for {cfg.epochs} epochs "
        f"(Adam, lr {cfg.lr:g} cosine-decayed, batch {cfg.batch_size}, seed {cfg.seed}). "
        "Sparse junctions have fixed in- and out-degrees chosen before training (structured family).",
        "",
        "| rho_net | fan-out | junction densities | params | FLOPs/sample | test acc | vs FC | s/epoch |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = f"{100 * (r['test_acc'] - fc['test_acc']):+.2f}" if fc else "n/a"
        lines.append(
            f"| {100 * r['rho_net']:.2f}% | {r['fan_out']} | {[f'{100 * d:.1f}%' for d in r['junction_densities']]} "
            f"| {r['params']:,} | {r['flops_per_sample']:,} | {100 * r['test_acc']:.2f}% | {delta} | {r['epoch_time_s']:.2f} |"
        )
    lines += ["", "![accuracy vs density](accuracy_vs_density.png)", ""]
    return "\n".join(lines)
