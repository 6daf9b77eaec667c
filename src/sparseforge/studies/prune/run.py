"""The pruning study's runners: the dense model, the one-shot vs iterative sweep, retraining the pruned
structure from scratch, the sparse-vs-dense speed benchmark, and :func:`run_study` for all of them."""

from __future__ import annotations

import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from ... import io
from ...data import DataSplits
from ...errors import RunError
from ...nn import SparseMLP
from ...nn.zoo import build_model as zoo_model
from ...prune import (Pruner, apply_masks, extract_masks, layer_sparsity, mask_topology, masked_layers, prune_once,
                      to_sparse)
from ...runs import RunStore, canonical
from ...runs.timing import best_time
from ...train import Callback, evaluate, fit, load_checkpoint, save_checkpoint
from .report import plot_bench, plot_iterative, plot_retrain, plot_sweep, report_markdown
from .schema import METHODS, PARTS, PruneSpec


CallbacksFor = Callable[[str], Sequence[Callback]]
Notify = Callable[[str, dict], None]


def _no_callbacks(label: str) -> Sequence[Callback]:
    return ()


def _quiet(label: str, row: dict) -> None:
    return None


# ---------------------------------------------------------------------------------------------- models
def build_model(name: str, data: DataSplits) -> nn.Module:
    """The dense architecture ``name`` (one of :data:`MODELS`) sized for ``data``."""
    return zoo_model(name, data.sample_shape, data.n_classes)


MODEL = "model.pt"  # a finished sub-run's trained weights (and masks)


def _label(method: str, s: float) -> str:
    return f"{method}_s{100 * s:g}"


def _done(sub: Path) -> dict | None:
    f = sub / "result.json"
    return json.loads(f.read_text()) if f.exists() else None


def _steps_per_epoch(cfg: PruneSpec, data: DataSplits) -> int:
    return math.ceil(len(data.train) / cfg.pretrain.batch_size)


def dense_model(cfg: PruneSpec, data: DataSplits, run_dir: Path,
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
        save_checkpoint(sub / MODEL, model.state_dict())
        io.write_json(sub / "result.json", {"row": row, "history": state.history})
        notify("dense", row)
        return model, row
    model.load_state_dict(_trained_state(sub))
    return model, done["row"]


def _trained_state(sub: Path) -> dict:
    """The state dict a finished sub-run saved (checksummed: a damaged file is refused, never loaded)."""
    loaded = load_checkpoint(sub / MODEL, check_settings=False)
    if loaded is None:
        raise RunError(f"{sub / MODEL} is missing though {sub / 'result.json'} says the sub-run finished; "
                       "rerun with --overwrite")
    return loaded.payload


def _masked_model(cfg: PruneSpec, data: DataSplits, sub: Path) -> nn.Module:
    """Rebuild a pruned sub-run's model (masked layers with its trained weights and masks)."""
    model = build_model(cfg.model, data)
    state = _trained_state(sub)
    masks = {k[: -len(".mask")]: v for k, v in state.items() if k.endswith(".mask")}
    apply_masks(model, masks)
    model.load_state_dict(state)
    return model


# ---------------------------------------------------------------------------------------------- sweep
def run_sweep(cfg: PruneSpec, run_dir: str | Path, *, data: DataSplits | None = None,
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
    for s in cfg.prune.sparsities:
        for method in cfg.prune.methods:
            done = pruned_run(cfg, data, run_dir, method, s, dense_state=dense_state,
                              callbacks_for=callbacks_for, notify=notify)
            rows.append(done["row"])
            layer_rows += done["layers"]
    io.write_csv(run_dir / "sweep.csv", rows)
    io.write_csv(run_dir / "layers.csv", layer_rows)
    plot_sweep(rows, run_dir / "figures" / "accuracy_vs_sparsity.png",
               title=f"{cfg.model} on {data.name}: one-shot vs iterative ({cfg.prune.scope} magnitude)")
    for s in cfg.prune.sparsities:
        sub = run_dir / _label("iterative", s)
        if (sub / "result.json").exists():
            plot_iterative(json.loads((sub / "result.json").read_text()), run_dir / "figures" / f"iterative_s{100 * s:g}.png")
    return rows, layer_rows


def pruned_run(cfg: PruneSpec, data: DataSplits, run_dir: Path, method: str, s: float, *,
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


def _pruned_train(cfg: PruneSpec, data: DataSplits, dense_state: dict, method: str, s: float, sub: Path,
                  callbacks: Sequence[Callback]) -> dict:
    spe = _steps_per_epoch(cfg, data)
    model = build_model(cfg.model, data)
    model.load_state_dict(dense_state)
    acc_after_prune = None
    pruner = None
    thresholds: dict[str, float] = {}
    if method == "one-shot":
        result = prune_once(model, s, scope=cfg.prune.scope)
        thresholds = result.threshold
        _, acc_after_prune = evaluate(model, data.test)
        cbs = list(callbacks)
    elif method == "iterative":
        schedule = cfg.prune.schedule.build(s, spe, cfg.prune.finetune_epochs)
        eval_every = max(1, spe // cfg.prune.curve_points) if cfg.prune.curve_points else None
        pruner = Pruner(model, schedule, scope=cfg.prune.scope, eval_every=eval_every)
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
    save_checkpoint(sub / MODEL, model.state_dict())
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


def run_retrain(cfg: PruneSpec, run_dir: str | Path, *, data: DataSplits | None = None,
                callbacks_for: CallbacksFor = _no_callbacks, notify: Notify = _quiet) -> list[dict]:
    """Train from scratch on the pruned structure (and on random structures) with several seeds.

    The structure comes from the sweep's ``retrain_from`` run at each sparsity (run first if missing).
    A row: ``structure`` ("pruned" or "random"), ``target``, ``sparsity``, ``seed``, ``test_acc``,
    ``best_val_acc``, ``final_val_acc``, ``epoch_time_s``, ``val_curve`` (val accuracy per epoch).
    """
    run_dir = Path(run_dir)
    data = data or cfg.load_data()
    rows = []
    for s in cfg.retrain.sparsities:
        pruned_run(cfg, data, run_dir, cfg.retrain.from_method, s, callbacks_for=callbacks_for, notify=notify)
        src = run_dir / _label(cfg.retrain.from_method, s)
        masks = extract_masks(_masked_model(cfg, data, src))
        structures = [("pruned", masks)]
        if cfg.retrain.random_control:
            structures.append(("random", _random_masks(masks, seed=cfg.seed + 7919)))
        for kind, mk in structures:
            for seed in cfg.retrain.seeds:
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


def _retrain_run(cfg: PruneSpec, data: DataSplits, masks: dict[str, torch.Tensor], seed: int, sub: Path,
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


# ---------------------------------------------------------------------------------------------- bench
def kernel_backends() -> list[tuple[str, Callable[[], object]]]:
    """``(name, context factory)`` for each sparse-kernel backend usable here ("stock", "native"), or the
    default alone when this build of the kernels has no backend switch."""
    try:
        from ...kernels import resolve_backend, use_backend
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


def run_bench(cfg: PruneSpec, run_dir: str | Path, *, data: DataSplits | None = None,
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
    for s in cfg.prune.sparsities:
        src = next((run_dir / _label(m, s) for m in ("iterative", "one-shot") if _done(run_dir / _label(m, s))), None)
        if src is not None:
            pruned = _masked_model(cfg, data, src)
        else:
            pruned = copy.deepcopy(dense)
            prune_once(pruned, s, scope=cfg.prune.scope)
        sp = to_sparse(pruned)
        for backend, context in kernel_backends():
            with context():
                timing = bench_models(dense, pruned, cfg.bench.batches, sample_shape=data.sample_shape,
                                      repeats=cfg.bench.repeats, threads=cfg.bench.threads)
            for t in timing:
                row = dict(target=s, sparsity=layer_sparsity(pruned)[-1]["sparsity"], backend=backend,
                           source=src.name if src else "one-shot (no fine-tuning)", params=sp.num_parameters(),
                           dense_params=sum(p.numel() for p in dense.parameters()), threads=cfg.bench.threads, **t)
                rows.append(row)
                notify(f"bench s{100 * s:g} {backend} batch {t['batch']}", row)
    io.write_csv(run_dir / "bench.csv", rows)
    plot_bench(rows, run_dir / "figures" / "speedup.png",
               title=f"{cfg.model}: sparse (converted) vs dense, {cfg.bench.threads} thread(s)")
    return rows


# ---------------------------------------------------------------------------------------------- all
def run_study(cfg: PruneSpec, run_dir: str | Path, *, data: DataSplits | None = None,
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
    with RunStore(run_dir, settings, command="prune", overwrite=overwrite, mutable=("bench",)):
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
