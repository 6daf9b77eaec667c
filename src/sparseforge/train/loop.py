"""One training loop for every model in sparseforge, with callbacks, metrics, checkpoints and resume.

Pruning schedules and regularizers plug in through :class:`Callback` hooks (the pattern of Distiller's
``policy.py``): ``on_train_begin``, ``on_epoch_begin``, ``before_backward`` (may add a loss term),
``after_step`` (may modify weights, e.g. apply masks or a proximal step), ``on_epoch_end`` (may add
metrics), ``on_train_end``. The loop never prints; progress goes to callbacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import io
from ..data import ArrayDataset, DataSplits
from ..nn.zoo import count_flops, count_parameters
from .checkpoint import load_checkpoint, save_checkpoint

CHECKPOINT = "checkpoint.pt"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (validated at the CLI/config boundary).

    Attributes:
        epochs: passes over the training split.
        batch_size: samples per step.
        optimizer: "adam" or "sgd".
        lr: learning rate.
        momentum: SGD momentum (ignored by Adam).
        weight_decay: L2 coefficient as the optimizer's ``weight_decay`` (gradient += weight_decay * w,
            i.e. the seeds' ``lambda ||w||^2`` with ``weight_decay = 2 lambda``); biases are not decayed.
        lr_schedule: "constant", "exponential" (lr * lr_decay**epoch), "cosine" (to 0 at the last epoch)
            or "step" (lr * lr_decay every ``lr_step`` epochs).
        lr_decay, lr_step: schedule parameters.
        seed: seeds initialisation-independent randomness of the loop (shuffling).
        eval_batch_size: batch size for evaluation.
    """

    epochs: int = 10
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    lr_decay: float = 1.0
    lr_step: int = 10
    seed: int = 0
    eval_batch_size: int = 2048


@dataclass
class TrainState:
    """What callbacks see and may change. ``metrics`` holds the current epoch's row."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    data: DataSplits
    epoch: int = 0
    step: int = 0
    batch: int = 0
    n_batches: int = 0
    loss: float = math.nan
    history: list[dict] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    settings: dict | None = None
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)


class Callback:
    """Base class: override the hooks you need. Hooks run in the order the callbacks were given.

    A callback that reports progress itself sets ``shows_progress = True``; :func:`fit` then leaves out its
    default report."""

    shows_progress: bool = False

    def on_train_begin(self, state: TrainState) -> None: ...

    def on_epoch_begin(self, state: TrainState) -> None: ...

    def before_backward(self, state: TrainState, loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to differentiate (add regularizer terms here)."""
        return loss

    def after_step(self, state: TrainState) -> None: ...

    def on_batch_end(self, state: TrainState) -> None: ...

    def on_epoch_end(self, state: TrainState) -> None: ...

    def on_train_end(self, state: TrainState) -> None: ...

    def state_dict(self) -> dict:
        """Callback state saved in checkpoints (for resume)."""
        return {}

    def load_state_dict(self, state: dict) -> None: ...


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam or SGD; L2 decay on weights only (parameters with more than one element per output)."""
    decay = [p for n, p in model.named_parameters() if p.requires_grad and not n.endswith("bias")]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and n.endswith("bias")]
    groups = [dict(params=decay, weight_decay=cfg.weight_decay), dict(params=no_decay, weight_decay=0.0)]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    raise ValueError(f"optimizer={cfg.optimizer!r}: choose 'adam' or 'sgd'")


def lr_factor(cfg: TrainConfig, epoch: int) -> float:
    """Multiplier of the base learning rate during ``epoch`` (0-based): a pure function of the epoch."""
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "exponential":
        return cfg.lr_decay**epoch
    if cfg.lr_schedule == "step":
        return cfg.lr_decay ** (epoch // max(cfg.lr_step, 1))
    if cfg.lr_schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
    raise ValueError(f"lr_schedule={cfg.lr_schedule!r}: choose constant, exponential, step or cosine")


@torch.no_grad()
def evaluate(model: nn.Module, data: ArrayDataset, batch_size: int = 2048) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction in [0, 1]) of ``model`` on ``data``."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    for s in range(0, len(data), batch_size):
        x, y = data.x[s : s + batch_size], data.y[s : s + batch_size]
        out = model(x)
        total_loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    n = max(len(data), 1)
    return total_loss / n, correct / n


def _call(callbacks: Sequence[Callback], hook: str, state: TrainState) -> None:
    for cb in callbacks:
        getattr(cb, hook)(state)


def fit(
    model: nn.Module,
    data: DataSplits,
    config: TrainConfig,
    *,
    callbacks: Iterable[Callback] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = None,
    settings: Any = None,
) -> TrainState:
    """Train ``model`` on ``data.train``, validating on ``data.val`` after every epoch.

    With ``run_dir``, every epoch appends a row to ``metrics.csv``/``metrics.json`` and writes
    ``checkpoint.pt`` (model, optimizer, epoch, history, callback states), each written atomically, with a
    checksum and the hash of the settings (see :mod:`.checkpoint`; the previous one is kept). With
    ``resume=True`` and a checkpoint present, training continues after the last finished epoch; the
    shuffling order depends only on ``(seed, epoch)``, so a resumed run sees the same batches.

    ``settings``: what else the run depends on (model, data: any JSON-able value), hashed into the
    checkpoint together with ``config`` (all but ``epochs``, which may grow on resume). Resuming under other
    settings raises :class:`~sparseforge.errors.ConfigError` naming the fields; a damaged checkpoint falls
    back to the previous one (``state.notes`` says so, ``on_train_begin`` callbacks can show it) or raises
    :class:`~sparseforge.errors.RunError` when none is good. ``state.resumed_from`` is the epoch resumed at.

    Returns the final :class:`TrainState`; ``state.history`` has one dict per epoch with ``epoch``,
    ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``, ``epoch_time_s`` (training only, wall
    clock), ``epoch_cpu_s`` (the same as CPU seconds of this process, all its threads: what the epoch
    cost, hardly moved by other processes on a shared machine), ``lr``, ``params``, ``flops_per_sample`` and whatever callbacks added; after the last epoch
    ``state.metrics`` also has ``test_loss`` and ``test_acc``.

    ``progress``: one line per epoch on stderr (:class:`~sparseforge.train.progress.EpochLog`). None (the
    default): on unless a callback shows progress itself (``shows_progress``); False: quiet; True: always.
    """
    callbacks = list(callbacks)
    if progress or (progress is None and not any(getattr(cb, "shows_progress", False) for cb in callbacks)):
        from .progress import EpochLog

        callbacks.append(EpochLog())  # last: the checkpointed states of the given callbacks keep their places
    optimizer = make_optimizer(model, config)
    run_dir = Path(run_dir) if run_dir is not None else None
    state = TrainState(model=model, optimizer=optimizer, config=config, data=data, run_dir=run_dir)
    state.settings = checkpoint_settings(config, settings)
    loaded = load_checkpoint(run_dir / CHECKPOINT, settings=state.settings) if resume and run_dir else None
    if loaded is not None:
        ckpt = loaded.payload
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state.epoch, state.step, state.history = ckpt["epoch"], ckpt["step"], ckpt["history"]
        state.resumed_from, state.notes = state.epoch, [*loaded.skipped]
        if loaded.skipped:
            state.notes.append(f"resumed from the previous checkpoint {loaded.path} (epoch {state.epoch})")
        for cb, s in zip(callbacks, ckpt.get("callbacks", [])):
            cb.load_state_dict(s)

    start_epoch = state.epoch
    n = len(data.train)
    state.n_batches = math.ceil(n / config.batch_size)
    _call(callbacks, "on_train_begin", state)
    model.train()
    while state.epoch < config.epochs:
        for g in optimizer.param_groups:
            g["lr"] = config.lr * lr_factor(config, state.epoch)
        state.metrics = {"epoch": state.epoch + 1}
        _call(callbacks, "on_epoch_begin", state)
        gen = torch.Generator().manual_seed(config.seed * 100_003 + state.epoch)
        order = torch.randperm(n, generator=gen)
        loss_sum, correct, t0, c0 = 0.0, 0, time.perf_counter(), time.process_time()
        for b in range(state.n_batches):
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            x, y = data.train.x[idx], data.train.y[idx]
            out = model(x)
            loss = F.cross_entropy(out, y)
            state.batch, state.loss = b, loss.item()
            total = loss
            for cb in callbacks:
                total = cb.before_backward(state, total)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            state.step += 1
            _call(callbacks, "after_step", state)
            loss_sum += state.loss * len(idx)
            correct += (out.detach().argmax(1) == y).sum().item()
            _call(callbacks, "on_batch_end", state)
        epoch_time, epoch_cpu = time.perf_counter() - t0, time.process_time() - c0
        val_loss, val_acc = evaluate(model, data.val, config.eval_batch_size) if len(data.val) else (math.nan, math.nan)
        state.metrics.update(
            train_loss=loss_sum / n,
            train_acc=correct / n,
            val_loss=val_loss,
            val_acc=val_acc,
            epoch_time_s=epoch_time,
            epoch_cpu_s=epoch_cpu,
            lr=optimizer.param_groups[0]["lr"],
            params=count_parameters(model),
            flops_per_sample=count_flops(model),
        )
        state.epoch += 1
        _call(callbacks, "on_epoch_end", state)
        state.history.append(dict(state.metrics))
        if run_dir is not None:
            _save(state, callbacks)
    test_loss, test_acc = evaluate(model, data.test, config.eval_batch_size)
    state.metrics = dict(state.history[-1]) if state.history else {}
    state.metrics.update(test_loss=test_loss, test_acc=test_acc)
    _call(callbacks, "on_train_end", state)
    if run_dir is not None and (state.epoch != start_epoch or not (run_dir / "result.json").exists()):
        io.write_json(run_dir / "result.json", {"config": asdict(config), "final": state.metrics})
    return state


def checkpoint_settings(config: TrainConfig, settings: Any = None) -> dict:
    """What a checkpoint of :func:`fit` is tied to: the train config but ``epochs`` (it may grow on
    resume), and the caller's ``settings``."""
    train = {k: v for k, v in asdict(config).items() if k != "epochs"}
    return {"train": train, **({"run": settings} if settings is not None else {})}


def _save(state: TrainState, callbacks: Sequence[Callback]) -> None:
    assert state.run_dir is not None
    io.write_csv(state.run_dir / METRICS_CSV, state.history)
    io.write_json(state.run_dir / METRICS_JSON, state.history)
    save_checkpoint(
        state.run_dir / CHECKPOINT,
        dict(
            model=state.model.state_dict(),
            optimizer=state.optimizer.state_dict(),
            epoch=state.epoch,
            step=state.step,
            history=state.history,
            config=asdict(state.config),
            callbacks=[cb.state_dict() for cb in callbacks],
        ),
        settings=state.settings,
    )
