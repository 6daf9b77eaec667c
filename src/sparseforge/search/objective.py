"""The search objective ``f = f_p + w_c f_c`` (seed 003) and the training of one trial's network.

* ``f_p = 1 - best validation accuracy`` over the trial's epochs;
* ``f_c`` = complexity / complexity of the reference network (the search's defaults, updated by
  ``objective.reference``): stored trainable values (``"params"``: edges + biases, so pre-defined
  sparsity counts), forward FLOPs per sample (``"flops"``: 2 per multiply-add of the convolutions and of
  the classifier's edges; a machine-independent stand-in for the seed's time, known before training), or
  mean training time per epoch (``"time"``, the seed's measure, taken as the process's CPU seconds,
  ``epoch_cpu_s``, which other processes on a shared machine hardly move, unlike wall time);
* the value minimised is ``log10(f)`` with ``objective.log10`` (Deep-n-Cheap's choice), else ``f``.

Training uses :func:`sparseforge.train.fit` with a callback that reports f after every epoch, so a
pruner can stop clearly bad trials (:class:`ReportCallback`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data import DataSplits
from ..nn.zoo import build_model as build_zoo_model, model_cost
from ..train import Callback, TrainState, count_flops, count_parameters, fit
from .space import MODEL_KEYS, SearchSpec


def objective_value(f_p: float, f_c: float, w_c: float, log10: bool) -> float:
    """``f = f_p + w_c * f_c``, or ``log10(f)`` (floored at 1e-12)."""
    f = f_p + w_c * f_c
    return math.log10(max(f, 1e-12)) if log10 else f


def load_search_data(spec: SearchSpec) -> DataSplits | None:
    """The dataset of the search (its ``data`` section); None for a synthetic benchmark."""
    if spec.model == "synthetic":
        return None
    return spec.data.load()


def build_model(spec: SearchSpec, config: dict[str, Any], data: DataSplits, seed: int) -> nn.Module:
    """The network of a full configuration (see :data:`sparseforge.search.space.MODEL_KEYS`);
    initialised from ``torch.manual_seed(seed)``; the pattern uses ``seed`` too."""
    torch.manual_seed(seed)
    return build_zoo_model(spec.model, data.sample_shape, data.n_classes, family=spec.family, seed=seed,
                           **_model_options(spec, config))


def _model_options(spec: SearchSpec, config: dict[str, Any]) -> dict[str, Any]:
    """The model builder's options in a full configuration (list lengths are implied by the lists)."""
    keys = [k for k in MODEL_KEYS[spec.model] if k not in ("hidden_layers", "conv_layers", "fc_layers")]
    return {k: config[k] for k in keys if k in config}


def complexity_floor(spec: SearchSpec, data: DataSplits | None,
                     reference: float) -> Callable[[dict[str, Any]], float] | None:
    """The least value the objective can take at a full configuration, known before training it: with
    ``f_c`` = parameters (or FLOPs) / ``reference`` and ``f_p >= 0``, a network's value is at least
    ``objective_value(0, f_c)`` (``log10(w_c f_c)`` with ``objective.log10``). A network whose floor is
    not below the best value seen cannot become the best trial, whatever it learns, so a sampler need not
    train it. None where ``f_c`` is not known in advance (``complexity: time``, a synthetic benchmark) or
    ``w_c = 0``. The returned function caches by network (~0.5 ms per new one, no weights built)."""
    o = spec.objective
    if spec.model == "synthetic" or o.complexity == "time" or o.w_c <= 0 or data is None:
        return None
    cache: dict[str, float] = {}

    def floor(config: dict[str, Any]) -> float:
        opts = _model_options(spec, config)
        key = json.dumps(opts, sort_keys=True, default=str)
        if key not in cache:
            params, flops = model_cost(spec.model, data.sample_shape, data.n_classes, family=spec.family, **opts)
            n = params if o.complexity == "params" else flops
            cache[key] = objective_value(0.0, n / reference, o.w_c, o.log10)
        return cache[key]

    return floor


def reference_complexity(spec: SearchSpec, data: DataSplits) -> float:
    """Complexity of the reference network: its parameter count, its FLOPs per sample, or (``"time"``)
    its training CPU seconds per epoch (one epoch of :func:`fit`); 1 for a synthetic benchmark."""
    if spec.model == "synthetic":
        return 1.0
    cfg = spec.reference_config()
    model = build_model(spec, cfg, data, seed=0)
    if spec.objective.complexity == "params":
        return float(count_parameters(model))
    if spec.objective.complexity == "flops":
        return float(count_flops(model))
    tc = spec.train_config(cfg, seed=0)
    state = fit(model, data, replace(tc, epochs=1), progress=False)
    return float(state.history[-1]["epoch_cpu_s"])


class ReportCallback(Callback):
    """After every epoch: compute f so far (best validation accuracy so far) and call
    ``report(value, epoch)``; ``report`` may raise (e.g. ``optuna.TrialPruned``) to stop the trial."""

    def __init__(self, spec: SearchSpec, reference: float, report: Callable[[float, int], None] | None) -> None:
        self.spec, self.reference, self.report = spec, reference, report
        self.best_val = 0.0

    def f_c(self, history: Sequence[dict]) -> float:
        """Normalised complexity after the epochs of ``history`` (metrics with ``params``,
        ``flops_per_sample`` and ``epoch_cpu_s``; mean over the epochs for ``time``)."""
        kind = self.spec.objective.complexity
        if kind in ("params", "flops"):
            return history[-1]["params" if kind == "params" else "flops_per_sample"] / self.reference
        times = [h.get("epoch_cpu_s", h["epoch_time_s"]) for h in history]  # wall time: older checkpoints
        return (sum(times) / len(times)) / self.reference

    def on_train_begin(self, state: TrainState) -> None:
        self.best_val = max([h["val_acc"] for h in state.history], default=0.0)

    def on_epoch_end(self, state: TrainState) -> None:
        m = state.metrics
        if m["val_acc"] == m["val_acc"]:  # not NaN
            self.best_val = max(self.best_val, float(m["val_acc"]))
        f_c = self.f_c([*state.history, m])
        o = self.spec.objective
        value = objective_value(1 - self.best_val, f_c, o.w_c, o.log10)
        m["search_f_c"], m["search_value"] = f_c, value
        if self.report is not None:
            self.report(value, int(m["epoch"]))


def synthetic_f(spec: SearchSpec, config: dict[str, Any], seed: int | None = None) -> float:
    """``f_p`` of the synthetic benchmark (:class:`~sparseforge.search.space.SyntheticSection`) at a full
    configuration; noise-free with ``seed=None``."""
    syn = spec.synthetic
    if syn is None:
        raise ValueError(f"synthetic_f needs model: synthetic, got model {spec.model!r}")

    def g(v: Any, o: Any, p: Any) -> float:
        if p.type in ("categorical", "bool"):
            return float(v != o)
        d = p.to_unit(v) - p.to_unit(o)
        return (d * d + 0.05 * (1 - math.cos(4 * math.pi * d))) / 1.1

    terms = []
    for name, o in syn.optimum.items():
        p, v = spec.space[name], config[name]
        items = list(v) if isinstance(v, (list, tuple)) else [v]
        terms.append(sum(g(x, o, p) for x in items) / len(items) if items else 0.0)
    f = sum(terms) / len(terms)
    if seed is not None and syn.noise > 0:
        f += syn.noise * float(np.random.default_rng([seed, 12345]).standard_normal())
    return f


def _synthetic_trial(spec: SearchSpec, config: dict[str, Any], seed: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    f_p = synthetic_f(spec, config, seed)
    o = spec.objective
    return dict(value=objective_value(f_p, 0.0, o.w_c, o.log10), f=f_p, f_p=f_p, f_c=0.0, val_acc=1 - f_p,
                test_acc=None, params=0, flops_per_sample=None, epoch_time_s=0.0, epoch_cpu_s=0.0, epochs=1,
                train_s=time.perf_counter() - t0, rho_net=None)


def train_trial(spec: SearchSpec, config: dict[str, Any], data: DataSplits | None, *, seed: int, reference: float,
                run_dir: str | Path | None = None, report: Callable[[float, int], None] | None = None,
                callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Build and train the network of ``config``; return its metrics and objective.

    Returns a dict with ``value`` (what is minimised), ``f``, ``f_p``, ``f_c``, ``val_acc`` (best),
    ``test_acc`` (after the last epoch), ``params``, ``flops_per_sample``, ``epoch_time_s`` and
    ``epoch_cpu_s`` (means),
    ``epochs``, ``train_s`` (wall time of the training including evaluation) and ``rho_net`` (the
    classifier's overall density). With ``run_dir`` the training checkpoints there and resumes.
    A synthetic benchmark (``model: synthetic``) evaluates its function instead (``f_c = 0``).
    """
    if spec.model == "synthetic":
        return _synthetic_trial(spec, config, seed)
    assert data is not None
    model = build_model(spec, config, data, seed)
    tc = spec.train_config(config, seed=seed)
    cb = ReportCallback(spec, reference, report)
    t0 = time.perf_counter()
    state = fit(model, data, tc, callbacks=[cb, *callbacks], run_dir=run_dir, resume=run_dir is not None,
                progress=False)
    train_s = time.perf_counter() - t0
    hist = state.history
    best_val = max(h["val_acc"] for h in hist)
    params = count_parameters(model)
    f_c = cb.f_c(hist)
    o = spec.objective
    topo = getattr(model, "topology", None) or getattr(getattr(model, "classifier", None), "topology", None)
    return dict(
        value=objective_value(1 - best_val, f_c, o.w_c, o.log10),
        f=(1 - best_val) + o.w_c * f_c, f_p=1 - best_val, f_c=f_c,
        val_acc=best_val, test_acc=state.metrics.get("test_acc"), params=params,
        flops_per_sample=hist[-1].get("flops_per_sample"),
        epoch_time_s=sum(h["epoch_time_s"] for h in hist) / len(hist),
        epoch_cpu_s=sum(h.get("epoch_cpu_s", h["epoch_time_s"]) for h in hist) / len(hist), epochs=len(hist),
        train_s=train_s,
        rho_net=topo.rho_net if topo is not None else None,
    )
