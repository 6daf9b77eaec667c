"""Pruning study (seed 004): one-shot vs iterative pruning, retraining on the pruned structure, speed.

Three recipes share one run directory and one trained dense model (sub-run ``dense/``):

* :func:`run_sweep` — for each target sparsity, *one-shot* (prune the trained dense net once by
  magnitude, then fine-tune) and *iterative* (start from the same dense net and prune along a rising
  schedule s(t) while training, e.g. Zhu & Gupta's cubic), with the same number of fine-tuning epochs.
  Rows: test accuracy (and, for one-shot, right after pruning), reached sparsity, per-layer table.
* :func:`run_retrain` — the structure (masks) of a pruned net, retrained from scratch with new random
  initialisations (several seeds), against random structures with the same per-layer counts. MLPs
  retrain as :class:`~sparseforge.nn.SparseMLP` (sparse compute); conv nets as masked dense models.
* :func:`run_bench` — the pruned MLP converted to sparse layers vs its dense version: forward and
  training-step time at several batch sizes, ratio = best dense / sparse (same run, explicit threads).

Every configuration is a sub-run with its own ``result.json`` (and training checkpoint), so an
interrupted study resumes where it stopped. Outputs: ``sweep.csv``, ``layers.csv``, ``retrain.csv``,
``bench.csv``, figures in ``figures/`` and ``report.md``.
"""

from __future__ import annotations

from .schema import (BenchSection, METHODS, MODELS, PARTS, PretrainSpec, PruneSection, PruneSpec, RetrainSection,
                     ScheduleSpec)
from .run import (bench_models, build_model, CallbacksFor, dense_model, kernel_backends, Notify, pruned_run,
                  run_bench, run_retrain, run_study, run_sweep)
from .report import plot_bench, plot_iterative, plot_retrain, plot_sweep, report_markdown, retrain_summary

__all__ = [
    "bench_models", "BenchSection", "build_model", "CallbacksFor", "dense_model", "kernel_backends", "METHODS",
    "MODELS", "Notify", "PARTS", "plot_bench", "plot_iterative", "plot_retrain", "plot_sweep", "PretrainSpec",
    "pruned_run", "PruneSection", "PruneSpec", "report_markdown", "retrain_summary", "RetrainSection",
    "run_bench", "run_retrain", "run_study", "run_sweep", "ScheduleSpec"
]
