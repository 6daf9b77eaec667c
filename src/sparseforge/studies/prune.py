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

import copy
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from .. import io
from ..data import DataSplits, load_dataset
from ..nn import SparseMLP, lenet5, lenet_300_100
from ..prune import (Constant, Cubic, Linear, Piecewise, Pruner, Schedule, apply_masks, extract_masks,
                     layer_sparsity, mask_topology, masked_layers, prune_once, to_sparse)
from ..train import Callback, TrainConfig, evaluate, fit
from ..runs.plots import save_figure, subplots
from ..runs import RunStore, canonical
from ..runs.timing import best_time

MODELS = ("lenet300", "lenet5")
METHODS = ("one-shot", "iterative")
PARTS = ("sweep", "retrain", "bench")


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class ScheduleShape:
    """The shape of the iterative schedule; its final sparsity is each target of the sweep.

    Attributes:
        kind: "cubic" (Zhu & Gupta), "linear", "constant" (everything at ``start_epoch``) or "piecewise".
        initial: sparsity at ``start_epoch`` (cubic/linear).
        start_epoch, end_epoch: the ramp, in (fractional) epochs of the pruning run; ``end_epoch`` None =
            two thirds of the fine-tuning epochs (the last third retrains at the final sparsity).
        every: prune every this many optimizer steps; None = about 30 prunings over the ramp.
        points: piecewise only: ``(epoch, fraction of the target)`` pairs, both non-decreasing.
    """

    kind: str = "cubic"
    initial: float = 0.0
    start_epoch: float = 0.0
    end_epoch: float | None = None
    every: int | None = None
    points: tuple[tuple[float, float], ...] = ()

    def build(self, target: float, steps_per_epoch: int, epochs: int) -> Schedule:
        """The schedule in optimizer steps for a run of ``epochs`` epochs reaching ``target``."""
        start = int(round(self.start_epoch * steps_per_epoch))
        end_epoch = self.end_epoch if self.end_epoch is not None else 2 * epochs / 3
        end = max(start, int(round(end_epoch * steps_per_epoch)))
        every = self.every or max(1, (end - start) // 30)
        if self.kind == "cubic":
            return Cubic(initial=min(self.initial, target), target=target, start=start, end=end, every=every)
        if self.kind == "linear":
            return Linear(initial=min(self.initial, target), target=target, start=start, end=end, every=every)
        if self.kind == "constant":
            return Constant(sparsity=target, start=start)
        if self.kind == "piecewise":
            return Piecewise(tuple((int(round(e * steps_per_epoch)), f * target) for e, f in self.points))
        raise ValueError(f"schedule kind={self.kind!r}: choose cubic, linear, constant or piecewise")


@dataclass(frozen=True)
class PruneStudyConfig:
    """Settings of ``sparseforge prune`` (validated by the CLI's config model before they get here).

    Attributes:
        model: "lenet300" (LeNet-300-100) or "lenet5" (Caffe LeNet, conv 20/50, FC 500).
        dataset, data_root, limit, data_seed, val_size: the data (``limit`` samples per split; None = all).
        epochs, batch_size, lr: dense pre-training (Adam, cosine-decayed lr).
        finetune_epochs, finetune_lr: every pruned run (one-shot fine-tuning, or the iterative run).
        sparsities: targets of the sweep; methods: which of "one-shot", "iterative".
        scope: "layer" (each layer pruned to the target) or "global" (one magnitude ranking).
        schedule: shape of the iterative schedule.
        curve_points: accuracy samples per epoch recorded during iterative runs (0 = per epoch only).
        retrain_sparsities, retrain_seeds, retrain_epochs (None = ``epochs``), retrain_from (method
            whose structure is reused), random_control (also retrain random structures).
        bench_batches, bench_repeats, bench_threads: the speed benchmark.
        seed: seed of the dense model and of all shuffling.
        parts: which of "sweep", "retrain", "bench" to run.
    """

    model: str = "lenet300"
    dataset: str = "mnist"
    data_root: str | None = None
    limit: int | None = None
    data_seed: int = 0
    val_size: int | float | None = None
    epochs: int = 8
    batch_size: int = 128
    lr: float = 1e-3
    finetune_epochs: int = 6
    finetune_lr: float = 1e-3
    sparsities: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
    methods: tuple[str, ...] = METHODS
    scope: str = "layer"
    schedule: ScheduleShape = field(default_factory=ScheduleShape)
    curve_points: int = 4
    retrain_sparsities: tuple[float, ...] = (0.9, 0.95, 0.99)
    retrain_seeds: tuple[int, ...] = (1, 2, 3)
    retrain_epochs: int | None = None
    retrain_from: str = "iterative"
    random_control: bool = True
    bench_batches: tuple[int, ...] = (1, 64, 256)
    bench_repeats: int = 30
    bench_threads: int = 1
    seed: int = 0
    parts: tuple[str, ...] = PARTS

    def load_data(self) -> DataSplits:
        return load_dataset(self.dataset, root=self.data_root, seed=self.data_seed, limit=self.limit,
                            val_size=self.val_size)

    def pretrain_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           lr_schedule="cosine")

    def finetune_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.finetune_epochs, batch_size=self.batch_size, lr=self.finetune_lr,
                           seed=self.seed, lr_schedule="cosine")

    def retrain_config(self, seed: int) -> TrainConfig:
        return TrainConfig(epochs=self.retrain_epochs or self.epochs, batch_size=self.batch_size, lr=self.lr,
                           seed=seed, lr_schedule="cosine")


CallbacksFor = Callable[[str], Sequence[Callback]]
Notify = Callable[[str, dict], None]


def _no_callbacks(label: str) -> Sequence[Callback]:
    return ()


def _quiet(label: str, row: dict) -> None:
    return None


# ---------------------------------------------------------------------------------------------- models
def build_model(name: str, data: DataSplits) -> nn.Sequential:
    """The dense architecture ``name`` sized for ``data`` (input features/shape, number of classes)."""
    if name == "lenet300":
        return lenet_300_100(n_in=data.n_features, n_classes=data.n_classes)
    if name == "lenet5":
        shape = data.sample_shape
        if len(shape) != 3 or shape[1] != shape[2] or shape[1] < 16:
            raise ValueError(f"lenet5 needs square images of side >= 16 as [channels, side, side]; "
                             f"dataset {data.name} has samples of shape {shape}")
        return lenet5(in_channels=shape[0], n_classes=data.n_classes, image_size=shape[1])
    raise ValueError(f"model={name!r}: choose one of {MODELS}")


def _label(method: str, s: float) -> str:
    return f"{method}_s{100 * s:g}"


def _done(sub: Path) -> dict | None:
    f = sub / "result.json"
    return json.loads(f.read_text()) if f.exists() else None


def _steps_per_epoch(cfg: PruneStudyConfig, data: DataSplits) -> int:
    return math.ceil(len(data.train) / cfg.batch_size)


def dense_model(cfg: PruneStudyConfig, data: DataSplits, run_dir: Path,
                callbacks_for: CallbacksFor = _no_callbacks, notify: Notify = _quiet) -> tuple[nn.Module, dict]:
    """The trained dense model of the study (trains it in ``run_dir/dense`` the first time)."""
    sub = run_dir / "dense"
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, data)
    done = _done(sub)
    if done is None:
        state = fit(model, data, cfg.pretrain_config(), callbacks=callbacks_for("dense"), run_dir=sub, resume=True)
        row = dict(method="dense", target=0.0, sparsity=0.0, test_acc=state.metrics["test_acc"],
                   val_acc=state.metrics["val_acc"], params=sum(p.numel() for p in model.parameters()),
                   train_time_s=sum(h["epoch_time_s"] for h in state.history))
        io.torch_save(sub / "model.pt", model.state_dict())
        io.write_json(sub / "result.json", {"row": row, "history": state.history})
        notify("dense", row)
        return model, row
    model.load_state_dict(torch.load(sub / "model.pt", weights_only=True))
    return model, done["row"]


def _masked_model(cfg: PruneStudyConfig, data: DataSplits, sub: Path) -> nn.Module:
    """Rebuild a pruned sub-run's model (masked layers with its trained weights and masks)."""
    model = build_model(cfg.model, data)
    state = torch.load(sub / "model.pt", weights_only=True)
    masks = {k[: -len(".mask")]: v for k, v in state.items() if k.endswith(".mask")}
    apply_masks(model, masks)
    model.load_state_dict(state)
    return model


# ---------------------------------------------------------------------------------------------- sweep
def run_sweep(cfg: PruneStudyConfig, run_dir: str | Path, *, data: DataSplits | None = None,
              callbacks_for: CallbacksFor = _no_callbacks, notify: Notify = _quiet) -> tuple[list[dict], list[dict]]:
    """One-shot vs iterative pruning at every target sparsity; returns ``(rows, layer_rows)``.

    A row: ``method``, ``target``, ``sparsity`` (reached, over all pruned layers), ``test_acc``,
    ``val_acc``, ``acc_after_prune`` (one-shot: before fine-tuning), ``params`` (kept weights + biases).
    A layer row: ``method``, ``target``, ``layer``, ``kind``, ``shape``, ``kept``, ``sparsity``,
    ``threshold`` (largest pruned magnitude; iterative: at its last pruning).
    """
    run_dir = Path(run_dir)
    data = data or cfg.load_data()
    dense, dense_row = dense_model(cfg, data, run_dir, callbacks_for, notify)
    dense_state = {k: v.clone() for k, v in dense.state_dict().items()}
    rows, layer_rows = [dense_row], []
    for s in cfg.sparsities:
        for method in cfg.methods:
            done = pruned_run(cfg, data, run_dir, method, s, dense_state=dense_state,
                              callbacks_for=callbacks_for, notify=notify)
            rows.append(done["row"])
            layer_rows += done["layers"]
    io.write_csv(run_dir / "sweep.csv", rows)
    io.write_csv(run_dir / "layers.csv", layer_rows)
    plot_sweep(rows, run_dir / "figures" / "accuracy_vs_sparsity.png",
               title=f"{cfg.model} on {data.name}: one-shot vs iterative ({cfg.scope} magnitude)")
    for s in cfg.sparsities:
        sub = run_dir / _label("iterative", s)
        if (sub / "result.json").exists():
            plot_iterative(json.loads((sub / "result.json").read_text()), run_dir / "figures" / f"iterative_s{100 * s:g}.png")
    return rows, layer_rows


def pruned_run(cfg: PruneStudyConfig, data: DataSplits, run_dir: Path, method: str, s: float, *,
               dense_state: dict | None = None, callbacks_for: CallbacksFor = _no_callbacks,
               notify: Notify = _quiet) -> dict:
    """The sub-run ``<method>_s<percent>``: its stored result, or run it now (from the dense model)."""
    label = _label(method, s)
    sub = run_dir / label
    done = _done(sub)
    if done is not None:
        return done
    if dense_state is None:
        dense_state = dense_model(cfg, data, run_dir, callbacks_for, notify)[0].state_dict()
    done = _pruned_train(cfg, data, dense_state, method, s, sub, callbacks_for(label))
    notify(label, done["row"])
    return done


def _pruned_train(cfg: PruneStudyConfig, data: DataSplits, dense_state: dict, method: str, s: float, sub: Path,
                  callbacks: Sequence[Callback]) -> dict:
    spe = _steps_per_epoch(cfg, data)
    model = build_model(cfg.model, data)
    model.load_state_dict(dense_state)
    acc_after_prune = None
    pruner = None
    thresholds: dict[str, float] = {}
    if method == "one-shot":
        result = prune_once(model, s, scope=cfg.scope)
        thresholds = result.threshold
        _, acc_after_prune = evaluate(model, data.test)
        cbs = list(callbacks)
    elif method == "iterative":
        schedule = cfg.schedule.build(s, spe, cfg.finetune_epochs)
        eval_every = max(1, spe // cfg.curve_points) if cfg.curve_points else None
        pruner = Pruner(model, schedule, scope=cfg.scope, eval_every=eval_every)
        cbs = [pruner, *callbacks]
    else:
        raise ValueError(f"method={method!r}: choose one of {METHODS}")
    t0 = time.perf_counter()
    state = fit(model, data, cfg.finetune_config(), callbacks=cbs, run_dir=sub, resume=True)
    if pruner is not None:
        thresholds = pruner.thresholds
    table = layer_sparsity(model)
    overall = table[-1]
    row = dict(method=method, target=s, sparsity=overall["sparsity"], test_acc=state.metrics["test_acc"],
               val_acc=state.metrics["val_acc"], acc_after_prune=acc_after_prune,
               params=sum(l.num_parameters() for l in masked_layers(model).values()),
               train_time_s=time.perf_counter() - t0)
    layers = [dict(method=method, target=s, **r, threshold=thresholds.get(r["layer"])) for r in table]
    io.torch_save(sub / "model.pt", model.state_dict())
    out = {"row": row, "layers": layers, "history": state.history}
    if pruner is not None:
        out["prune_log"] = pruner.log
        out["curve"] = pruner.curve
        out["schedule"] = pruner.schedule.to_dict()
        out["steps_per_epoch"] = spe
        io.write_csv(sub / "prune_log.csv", pruner.log)
    io.write_json(sub / "result.json", out)
    return out


# ---------------------------------------------------------------------------------------------- retrain
def _random_masks(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Masks with the same number of kept weights per layer at random positions."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, m in masks.items():
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=g)[: int(m.sum())]] = True
        out[name] = flat.view(m.shape)
    return out


def run_retrain(cfg: PruneStudyConfig, run_dir: str | Path, *, data: DataSplits | None = None,
                callbacks_for: CallbacksFor = _no_callbacks, notify: Notify = _quiet) -> list[dict]:
    """Train from scratch on the pruned structure (and on random structures) with several seeds.

    The structure comes from the sweep's ``retrain_from`` run at each sparsity (run first if missing).
    A row: ``structure`` ("pruned" or "random"), ``target``, ``sparsity``, ``seed``, ``test_acc``,
    ``best_val_acc``, ``final_val_acc``, ``epoch_time_s``, ``val_curve`` (val accuracy per epoch).
    """
    run_dir = Path(run_dir)
    data = data or cfg.load_data()
    rows = []
    for s in cfg.retrain_sparsities:
        pruned_run(cfg, data, run_dir, cfg.retrain_from, s, callbacks_for=callbacks_for, notify=notify)
        src = run_dir / _label(cfg.retrain_from, s)
        masks = extract_masks(_masked_model(cfg, data, src))
        structures = [("pruned", masks)]
        if cfg.random_control:
            structures.append(("random", _random_masks(masks, seed=cfg.seed + 7919)))
        for kind, mk in structures:
            for seed in cfg.retrain_seeds:
                label = f"retrain_{kind}_s{100 * s:g}_seed{seed}"
                sub = run_dir / label
                done = _done(sub)
                if done is None:
                    done = _retrain_run(cfg, data, mk, seed, sub, callbacks_for(label))
                    done["row"].update(structure=kind, target=s)
                    io.write_json(sub / "result.json", done)
                    notify(label, done["row"])
                rows.append(done["row"])
    io.write_csv(run_dir / "retrain.csv", [{k: v for k, v in r.items() if k != "val_curve"} for r in rows])
    plot_retrain(rows, run_dir / "figures" / "retrain_curves.png",
                 title=f"{cfg.model} on {data.name}: retraining the pruned structure from scratch")
    return rows


def _retrain_run(cfg: PruneStudyConfig, data: DataSplits, masks: dict[str, torch.Tensor], seed: int, sub: Path,
                 callbacks: Sequence[Callback]) -> dict:
    if cfg.model == "lenet300":
        topology = mask_topology(apply_masks(build_model(cfg.model, data), masks))
        torch.manual_seed(seed)
        model: nn.Module = SparseMLP(topology)  # fresh init with each node's real fan-in, sparse compute
    else:
        torch.manual_seed(seed)
        model = apply_masks(build_model(cfg.model, data), masks)  # fresh dense init, pruned weights zeroed
    state = fit(model, data, cfg.retrain_config(seed), callbacks=callbacks, run_dir=sub, resume=True)
    curve = [h["val_acc"] for h in state.history]
    n_kept = sum(int(m.sum()) for m in masks.values())
    n_all = sum(m.numel() for m in masks.values())
    row = dict(seed=seed, sparsity=1 - n_kept / n_all, test_acc=state.metrics["test_acc"],
               best_val_acc=max(curve), final_val_acc=curve[-1],
               epoch_time_s=statistics.mean(h["epoch_time_s"] for h in state.history), val_curve=curve)
    return {"row": row, "history": state.history}


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


# ---------------------------------------------------------------------------------------------- bench
def kernel_backends() -> list[tuple[str, Callable[[], object]]]:
    """``(name, context factory)`` for each sparse-kernel backend usable here ("stock", "native"), or the
    default alone when this build of the kernels has no backend switch."""
    try:
        from ..kernels import resolve_backend, use_backend
    except ImportError:  # kernels without selectable backends
        from contextlib import nullcontext

        return [("default", nullcontext)]
    out = [("stock", lambda: use_backend("stock"))]
    with use_backend("auto"):
        if resolve_backend("cpu", torch.float32) == "native":
            out.append(("native", lambda: use_backend("native")))
    return out


def bench_models(dense: nn.Module, pruned: nn.Module, batches: Sequence[int], *, sample_shape: Sequence[int],
                 repeats: int = 30, threads: int = 1) -> list[dict]:
    """Time the dense model and the sparse conversion of the pruned one; ratio = best dense / sparse.

    Dense baselines: the dense model as is (``nn.Linear``, batch-major) and its feature-major version
    (``to_sparse`` of an unpruned copy: ``DenseLinear`` GEMMs without transposes in between); the best of
    the two is the reference. Times: inference forward (``no_grad``) and a training step (forward +
    backward of a sum, no optimizer); each the minimum over ``repeats`` runs taken in 3 interleaved
    rounds. Returns one row per batch size (times in ms).
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        dense = dense.eval()
        dense_fm = to_sparse(apply_masks(copy.deepcopy(dense)), inplace=True).eval()
        sparse = to_sparse(pruned).eval()
        models = (("dense", dense), ("dense_fm", dense_fm), ("sparse", sparse))
        rows = []
        for b in batches:
            x = torch.rand(b, *sample_shape)

            def step(m: nn.Module) -> Callable[[], None]:
                return lambda: m(x).sum().backward()

            fwd = {name: math.inf for name, _ in models}
            train = dict(fwd)
            for _ in range(3):  # interleaved rounds: a load spike on the shared machine hits every model
                with torch.no_grad():
                    for name, m in models:
                        fwd[name] = min(fwd[name], best_time(lambda m=m: m(x), max(1, repeats // 3), warmup=3))
                for name, m in models:
                    train[name] = min(train[name], best_time(step(m), max(2, repeats // 9), warmup=3))
            with torch.no_grad():
                err = float((sparse(x) - pruned.eval()(x)).abs().max())
            best_f = min(fwd["dense"], fwd["dense_fm"])
            best_t = min(train["dense"], train["dense_fm"])
            rows.append(dict(batch=b, dense_fwd_ms=1e3 * fwd["dense"], dense_fm_fwd_ms=1e3 * fwd["dense_fm"],
                             sparse_fwd_ms=1e3 * fwd["sparse"], speedup_fwd=best_f / fwd["sparse"],
                             dense_train_ms=1e3 * train["dense"], dense_fm_train_ms=1e3 * train["dense_fm"],
                             sparse_train_ms=1e3 * train["sparse"], speedup_train=best_t / train["sparse"],
                             max_abs_diff=err))
        return rows
    finally:
        torch.set_num_threads(prev)


def run_bench(cfg: PruneStudyConfig, run_dir: str | Path, *, data: DataSplits | None = None,
              callbacks_for: CallbacksFor = _no_callbacks, notify: Notify = _quiet) -> list[dict]:
    """Speed of the pruned model converted to sparse layers vs the dense model, per sparsity and batch.

    Uses the sweep's iterative (else one-shot) runs; a missing one is one-shot pruned from the dense
    model without fine-tuning (same structure statistics, untuned accuracy). A row: ``target``,
    ``sparsity``, ``params`` (sparse), ``dense_params``, and :func:`bench_models`'s timings and ratios.
    """
    run_dir = Path(run_dir)
    data = data or cfg.load_data()
    dense, _ = dense_model(cfg, data, run_dir, callbacks_for, notify)
    rows = []
    for s in cfg.sparsities:
        src = next((run_dir / _label(m, s) for m in ("iterative", "one-shot") if _done(run_dir / _label(m, s))), None)
        if src is not None:
            pruned = _masked_model(cfg, data, src)
        else:
            pruned = copy.deepcopy(dense)
            prune_once(pruned, s, scope=cfg.scope)
        sp = to_sparse(pruned)
        for backend, context in kernel_backends():
            with context():
                timing = bench_models(dense, pruned, cfg.bench_batches, sample_shape=data.sample_shape,
                                      repeats=cfg.bench_repeats, threads=cfg.bench_threads)
            for t in timing:
                row = dict(target=s, sparsity=layer_sparsity(pruned)[-1]["sparsity"], backend=backend,
                           source=src.name if src else "one-shot (no fine-tuning)", params=sp.num_parameters(),
                           dense_params=sum(p.numel() for p in dense.parameters()), threads=cfg.bench_threads, **t)
                rows.append(row)
                notify(f"bench s{100 * s:g} {backend} batch {t['batch']}", row)
    io.write_csv(run_dir / "bench.csv", rows)
    plot_bench(rows, run_dir / "figures" / "speedup.png",
               title=f"{cfg.model}: sparse (converted) vs dense, {cfg.bench_threads} thread(s)")
    return rows


# ---------------------------------------------------------------------------------------------- all
def run_study(cfg: PruneStudyConfig, run_dir: str | Path, *, data: DataSplits | None = None,
              callbacks_for: CallbacksFor = _no_callbacks, notify: Notify = _quiet,
              overwrite: bool = False) -> dict[str, list[dict]]:
    """The parts in ``cfg.parts`` in order, then ``report.md``; returns ``{part: rows}`` (+ ``layers``).

    ``run_dir`` is a :class:`~sparseforge.runs.RunStore` tied to every setting but ``parts`` and
    ``threads`` (which parts to run now does not change any result) and the benchmark's (measured anew on
    every run): a rerun with other settings is refused naming the fields, unless ``overwrite``; finished
    sub-runs are reused, interrupted ones resume.
    """
    run_dir = Path(run_dir)
    for p in cfg.parts:
        if p not in PARTS:
            raise ValueError(f"part {p!r}: choose from {PARTS}")
    settings = {k: v for k, v in canonical(cfg).items() if k not in ("parts", "threads")}
    bench = ("bench", "bench_batches", "bench_repeats", "bench_threads")  # measured anew on every run
    with RunStore(run_dir, settings, command="prune", overwrite=overwrite, mutable=bench):
        data = data or cfg.load_data()
        out: dict[str, list[dict]] = {}
        kw = dict(data=data, callbacks_for=callbacks_for, notify=notify)
        if "sweep" in cfg.parts:
            out["sweep"], out["layers"] = run_sweep(cfg, run_dir, **kw)
        if "retrain" in cfg.parts:
            out["retrain"] = run_retrain(cfg, run_dir, **kw)
        if "bench" in cfg.parts:
            out["bench"] = run_bench(cfg, run_dir, **kw)
        io.write_text(run_dir / "report.md", report_markdown(cfg, out, data.name))
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


def report_markdown(cfg: PruneStudyConfig, out: dict[str, list[dict]], dataset: str) -> str:
    lines = [
        f"# Pruning study: {cfg.model} on {dataset}",
        "",
        f"Dense model trained {cfg.epochs} epochs (Adam, lr {cfg.lr:g} cosine, batch {cfg.batch_size}, seed "
        f"{cfg.seed}); every pruned run then trains {cfg.finetune_epochs} epochs (lr {cfg.finetune_lr:g} cosine) "
        f"from the dense weights. Magnitude pruning, scope `{cfg.scope}`; iterative schedule "
        f"`{cfg.schedule.kind}` (ramp {cfg.schedule.start_epoch:g} -> "
        f"{cfg.schedule.end_epoch if cfg.schedule.end_epoch is not None else round(2 * cfg.finetune_epochs / 3, 2)} "
        f"epochs). Data limit per split: {cfg.limit or 'none (full)'}.",
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
        figs = [f"figures/iterative_s{100 * s:g}.png" for s in cfg.sparsities if "iterative" in cfg.methods]
        if figs:
            lines += ["### Iterative pruning over time (sparsity, threshold, accuracy)", ""]
            lines += [f"![{f}]({f})" for f in figs] + [""]
    if "retrain" in out:
        lines += ["## Retraining the pruned structure from scratch (test accuracy across seeds)", "",
                  f"Structure of the `{cfg.retrain_from}` runs; new random initialisations, seeds "
                  f"{list(cfg.retrain_seeds)}, {cfg.retrain_epochs or cfg.epochs} epochs. `random`: same kept count "
                  "per layer at random positions.", "",
                  "| structure | target | seeds | mean | std | min | max |", "|---|---:|---:|---:|---:|---:|---:|"]
        for r in retrain_summary(out["retrain"]):
            lines.append(f"| {r['structure']} | {100 * r['target']:g}% | {r['seeds']} | {_pct(r['mean_acc'])} | "
                         f"{100 * r['std_acc']:.2f} | {_pct(r['min_acc'])} | {_pct(r['max_acc'])} |")
        lines += ["", "![retrain curves](figures/retrain_curves.png)", ""]
    if "bench" in out:
        lines += ["## Speed: pruned model converted to SparseLinear vs dense", "",
                  f"{cfg.bench_threads} torch thread(s); best of {cfg.bench_repeats} runs; ratio = best dense "
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
