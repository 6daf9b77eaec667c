"""Training loop of the hardware model: epochs of :func:`train_step_fixed` (bit-accurate) or
:func:`train_step_float` (its float64 twin) over numpy arrays, resumable from a checkpoint.

Takes explicit arguments (arrays, epochs, batch size, learning-rate shift, seed), not a study's config.
Every random choice derives from ``seed``: the sample order of epoch ``e`` from
``SeedSequence(seed, spawn_key=(1, e))``, stochastic rounding from ``(2, e)``, evaluation from ``(3,)``;
so a resumed run continues exactly as an uninterrupted one.

Checkpoint: the project's format (:mod:`sparseforge.train.checkpoint`: checksummed, the settings hash
inside, the previous file kept), holding the weights ``w{j}``, biases ``b{j}`` and the history, written
after every epoch; a damaged newest file falls back to the previous one, none left good is an error.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..train import checkpoint
from .fixed_point import FixedMLP, FloatMLP, forward_fixed, forward_float, train_step_fixed, train_step_float

__all__ = ["float_twin", "load_checkpoint", "predict_classes", "save_checkpoint", "train_epochs"]


def float_twin(fixed: FixedMLP, weights: Sequence[np.ndarray], hidden: str) -> FloatMLP:
    """The float64 network with ``fixed``'s connectivity, the float ``weights`` ``[n_out, d_max]`` per
    junction, zero biases and ``hidden`` nonlinearity."""
    return FloatMLP(fixed.plans, tuple(np.asarray(w, dtype=np.float64) for w in weights),
                    tuple(np.zeros(p.pattern.n_out) for p in fixed.plans), hidden)  # type: ignore[arg-type]


def predict_classes(net: FixedMLP | FloatMLP, x: np.ndarray, n_classes: int, rng: np.random.Generator | None = None,
                    chunk: int = 1000) -> np.ndarray:
    """Class decisions ``[n]`` for inputs ``x`` ``[n, N_0]``: argmax over the first ``n_classes`` outputs
    (ties: the lowest class, like a comparator chain); fixed point compares the output codes."""
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        o = forward_fixed(net, xb, rng=rng).acts[-1] if isinstance(net, FixedMLP) else forward_float(net, xb)[0][-1]
        out.append(np.argmax(o[:, :n_classes], axis=1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def save_checkpoint(path: Path, net: FixedMLP | FloatMLP, history: list[dict], settings: Any = None) -> None:
    """Weights, biases and ``history`` at ``path`` (checksummed, atomic; tied to ``settings``)."""
    arrays = {f"w{j}": w for j, w in enumerate(net.weights)}
    arrays.update({f"b{j}": b for j, b in enumerate(net.biases)})
    checkpoint.save_checkpoint(path, {"arrays": arrays, "history": history}, settings=settings)


def load_checkpoint(path: Path, like: FixedMLP | FloatMLP,
                    settings: Any = None) -> tuple[FixedMLP | FloatMLP, list[dict]] | None:
    """``like`` with the weights and biases of the newest good checkpoint at ``path``, and its history;
    None when there is none. With ``settings`` the checkpoint must have been made under them
    (:class:`~sparseforge.errors.ConfigError` naming the fields otherwise)."""
    loaded = checkpoint.load_checkpoint(path, settings=settings, check_settings=settings is not None)
    if loaded is None:
        return None
    z, J = loaded.payload["arrays"], len(like.weights)
    ws = tuple(z[f"w{j}"] for j in range(J))
    bs = tuple(z[f"b{j}"] for j in range(J))
    return dataclasses.replace(like, weights=ws, biases=bs), loaded.payload["history"]


def train_epochs(
    net: FixedMLP | FloatMLP,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
    epochs: int,
    batch_size: int,
    lr_shift: int,
    seed: int,
    checkpoint_path: Path | None = None,
    checkpoint_settings: Any = None,
    row: dict | None = None,
    notify: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Train ``net`` for ``epochs`` passes over ``x_train`` ``[n, N_0]`` / ``y_train`` ``[n]`` (labels),
    ``batch_size`` samples per update, learning rate ``2**-lr_shift``; resumes from ``checkpoint_path`` when
    a checkpoint is there (made under ``checkpoint_settings``), and writes it after every epoch. Returns the history: one row per epoch, epoch 0 = the
    initial net, each ``{**row, epoch, test_acc, train_loss, saturated, weights_changed (fraction of the
    edges), epoch_time_s (seconds)}``; ``notify(row)`` after every trained epoch."""
    row = dict(row or {})
    history: list[dict] = []
    if checkpoint_path is not None:
        loaded = load_checkpoint(checkpoint_path, net, checkpoint_settings)
        if loaded is not None:
            net, history = loaded
    eval_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3,)))
    lr = 2.0 ** -lr_shift
    edges = [int(p.valid.sum()) for p in net.plans]

    def evaluate(epoch: int, **extra) -> dict:
        pred = predict_classes(net, x_test, n_classes, eval_rng)
        acc = float(np.mean(pred == y_test)) if len(pred) else float("nan")
        return dict(row, epoch=epoch, test_acc=acc, **extra)

    def save() -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, net, history, checkpoint_settings)

    if not history:
        history.append(evaluate(0, train_loss=None, saturated=0, weights_changed=None, epoch_time_s=0.0))
        save()
    n, B = len(y_train), batch_size
    for epoch in range(len(history), epochs + 1):
        order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, epoch))).permutation(n)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, epoch)))
        before = net.weights
        t0 = time.perf_counter()
        loss = 0.0
        sat = 0
        for i in range(0, n, B):
            idx = order[i : i + B]
            if isinstance(net, FixedMLP):
                net, st = train_step_fixed(net, x_train[idx], y_train[idx], lr_shift=lr_shift, rng=rng)
            else:
                net, st = train_step_float(net, x_train[idx], y_train[idx], lr=lr)
            loss += st.loss * st.batch
            sat += st.saturated
        dt = time.perf_counter() - t0
        changed = sum(int(np.count_nonzero((a != b) & p.valid)) for a, b, p in zip(before, net.weights, net.plans))
        history.append(evaluate(epoch, train_loss=loss / max(n, 1), saturated=sat,
                                weights_changed=changed / sum(edges), epoch_time_s=dt))
        save()
        if notify:
            notify(history[-1])
    return history
