"""Seed 001's conv nets with pre-defined sparse classifiers: the savings table beside the seed's numbers, and
test accuracy of the fully-connected vs the sparse classifier after the same (short) training.

Each model (``fc`` and ``sparse``) is a sub-run of the run directory with its own checkpoint, so a stopped run
resumes (the run directory is a run store tied to the settings); ``table.csv``, ``savings.csv`` and
``report.md`` are written atomically at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import io
from ..data import DataSplits, load_dataset
from ..runs import RunStore
from ..nn.conv_recipes import CONV_RECIPES, classifier_savings, conv_recipe
from ..train import Callback, TrainConfig, fit

__all__ = ["Conv2Config", "run_conv2", "savings_rows", "report_markdown"]


@dataclass(frozen=True)
class Conv2Config:
    """One conv2 comparison. ``epochs=0`` computes the savings table only (no data needed)."""

    recipe: str = "mnist-conv2"
    fan_out: tuple[int, ...] | None = None
    dataset: str | None = None  # default: the recipe's
    data_root: str | None = None
    epochs: int = 1
    limit: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.recipe not in CONV_RECIPES:
            raise ValueError(f"recipe={self.recipe!r} is not known; choose one of {sorted(CONV_RECIPES)}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"epochs={self.epochs!r} must be an integer >= 0")


def savings_rows(model: torch.nn.Module, recipe: str) -> list[dict]:
    """The savings table as rows ``quantity``, ``this model``, ``seed 001`` (units in the quantity's name)."""
    s = classifier_savings(model)
    seed = CONV_RECIPES[recipe].seed
    ours = [("CLs / total layers", f"{s['cl_layers']}/{s['total_layers']}"),
            ("overall CL density (%)", f"{100 * s['overall_cl_density']:.2f}"),
            ("conv params (M)", f"{s['conv_params'] / 1e6:.3f}"),
            ("conv ops (B, 2 per MAC)", f"{s['conv_ops'] / 1e9:.4f}"),
            ("FC CL params (M)", f"{s['fc_cl_params'] / 1e6:.3f}"),
            ("sparse CL params (M)", f"{s['sparse_cl_params'] / 1e6:.4f}"),
            ("overall param reduction (%)", f"{s['param_reduction_pct']:.2f}"),
            ("overall op reduction (%)", f"{s['op_reduction_pct']:.2f}")]
    theirs = ["2/6" if recipe.startswith("mnist") else "2/17"]
    if seed is None:
        theirs += [""] * 7
    else:
        theirs += [f"{seed.overall_cl_density_pct}", f"{seed.conv_params_m}", f"{seed.conv_ops_b}",
                   f"{seed.fc_cl_params_m}", f"{seed.sparse_cl_params_m}", f"{seed.param_reduction_pct}",
                   f"{seed.op_reduction_pct}"]
    col = f"seed 001 (fan-out {CONV_RECIPES[recipe].seed_fan_out})"
    return [{"quantity": q, "this model": v, col: t} for (q, v), t in zip(ours, theirs)]


def run_conv2(
    cfg: Conv2Config,
    run_dir: str | Path,
    *,
    data: DataSplits | None = None,
    callbacks_for: Callable[[str], Sequence[Callback]] = lambda label: (),
    overwrite: bool = False,
) -> dict:
    """Savings table, and (``epochs > 0``) FC vs sparse classifier trained identically from the same seed.

    ``run_dir`` is a :class:`~sparseforge.runs.RunStore` tied to ``cfg`` (other settings are refused naming
    the fields, unless ``overwrite``). Returns ``{"savings": rows, "accuracy": rows}``; accuracy rows have ``model``, ``fan_out``, ``params``,
    ``flops_per_sample``, ``test_acc``, ``val_acc``, ``train_time_s``.
    """
    run_dir = Path(run_dir)
    recipe = CONV_RECIPES[cfg.recipe]
    sparse = conv_recipe(cfg.recipe, fan_out=cfg.fan_out, seed=cfg.seed)
    savings = savings_rows(sparse, cfg.recipe)
    acc: list[dict] = []
    with RunStore(run_dir, cfg, command="conv2", overwrite=overwrite) as store:
        io.write_csv(run_dir / "savings.csv", savings)
        if cfg.epochs > 0:
            name = recipe.dataset if cfg.dataset is None else cfg.dataset
            data = data or load_dataset(name, root=cfg.data_root, seed=cfg.seed, limit=cfg.limit)
            if tuple(data.sample_shape) != recipe.in_shape or data.n_classes != recipe.n_classes:
                raise ValueError(f"dataset {data.name} has samples {data.sample_shape} and {data.n_classes} "
                                 f"classes; recipe {cfg.recipe!r} needs {recipe.in_shape} and {recipe.n_classes}")
            acc = [_train(cfg, label, data, store, callbacks_for) for label in ("fc", "sparse")]
            io.write_csv(run_dir / "table.csv", acc)
        io.write_text(run_dir / "report.md", report_markdown(cfg, sparse.topology.sizes, savings, acc))
    return {"savings": savings, "accuracy": acc}


def _train(cfg: Conv2Config, label: str, data: DataSplits, store: RunStore,
           callbacks_for: Callable[[str], Sequence[Callback]]) -> dict:
    """The row of the FC or sparse model: stored under ``label``, or trained now (resuming)."""
    done = store.result(label)
    if done is not None:
        return done
    torch.manual_seed(cfg.seed)  # same conv initialisation for both
    model = conv_recipe(cfg.recipe, fan_out=cfg.fan_out, dense=label == "fc", seed=cfg.seed)
    train_cfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                            lr_schedule="cosine")
    t0 = time.perf_counter()
    state = fit(model, data, train_cfg, callbacks=callbacks_for(label), run_dir=store.path(label), resume=True,
                settings={"conv2": store.hash, "label": label})
    row = dict(model=label, fan_out=[p.d_out for p in model.topology.patterns], cl_density=model.topology.rho_net,
               params=model.num_parameters(), flops_per_sample=model.flops_per_sample(),
               val_acc=state.history[-1]["val_acc"], test_acc=state.metrics["test_acc"],
               train_time_s=time.perf_counter() - t0)
    store.save_result(label, row)
    return row


def report_markdown(cfg: Conv2Config, sizes: Sequence[int], savings: list[dict], acc: list[dict]) -> str:
    r = CONV_RECIPES[cfg.recipe]
    lines = [f"# {cfg.recipe}: conv layers + pre-defined sparse classifier (seed 001)", "",
             f"Conv channels {list(r.channels)}, kernels {list(r.kernels)}, classifier "
             f"{list(sizes)} with fan-outs {list(cfg.fan_out or r.fan_out)} (seed: {r.seed_fan_out}). "
             f"{r.notes}", "", "| quantity | this model | seed 001 (fan-out " + r.seed_fan_out + ") |", "| --- | ---: | ---: |"]
    lines += ["| " + " | ".join(str(v) for v in s.values()) + " |" for s in savings]
    if acc:
        lines += ["", f"Accuracy after {cfg.epochs} epoch(s) on {r.dataset if cfg.dataset is None else cfg.dataset}"
                  f"{f' (first {cfg.limit} samples per split)' if cfg.limit else ''}, same seed and recipe:", "",
                  "| classifier | fan-out | CL density | params | FLOPs/sample | test acc |", "| --- | --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {a['model']} | {a['fan_out']} | {100 * a['cl_density']:.2f}% | {a['params']:,} | "
                  f"{a['flops_per_sample']:,} | {100 * a['test_acc']:.2f}% |" for a in acc]
    return "\n".join(lines) + "\n"

