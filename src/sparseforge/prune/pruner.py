"""One-shot pruning (:func:`prune_once`) and iterative pruning in the training loop (:class:`Pruner`).

Iterative pruning (Han et al. 2015; Zhu & Gupta 2017; seed 004) alternates pruning and retraining so
that the sparsity follows a rising schedule ``s(t)``: after every optimizer step the :class:`Pruner`
asks the schedule for the target at the current step and, when it rose, prunes the lowest-magnitude
surviving weights to reach it. Between prunings the surviving weights retrain (masked gradient).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from ..train import Callback, TrainState, evaluate
from .criteria import PruneResult, Score, compute_masks, magnitude
from .masked import MaskedLayer, apply_masks, masked_layers
from .schedules import Schedule

__all__ = ["Pruner", "prune_once", "prune_below", "mask_optimizer_state"]


def _targets(layers: Iterable[str], schedule: Schedule | Mapping[str, Schedule], step: int) -> dict[str, float]:
    if isinstance(schedule, Mapping):
        return {n: float(schedule[n](step)) for n in layers if n in schedule}
    s = float(schedule(step))
    return {n: s for n in layers}


@torch.no_grad()
def mask_optimizer_state(optimizer: torch.optim.Optimizer, layers: Iterable[MaskedLayer]) -> None:
    """Zero the optimizer's per-weight state (momentum, Adam moments) of pruned weights.

    Without this, momentum accumulated before a pruning would keep moving a just-pruned weight even
    though its gradient is now zero.
    """
    for layer in layers:
        st = optimizer.state.get(layer.weight, {})
        for v in st.values():
            if isinstance(v, torch.Tensor) and v.shape == layer.weight.shape:
                v.mul_(layer.mask.to(v.dtype))


def _set_masks(model: nn.Module, result: PruneResult) -> None:
    layers = masked_layers(model)
    for name, mask in result.masks.items():
        layers[name].set_mask(mask)


def prune_once(
    model: nn.Module,
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "layer",
    score: Score = magnitude,
    layers: Iterable[str] | None = None,
) -> PruneResult:
    """One-shot pruning: wrap ``model``'s layers as masked (in place) and prune them to ``sparsity``.

    Args:
        sparsity: fraction of weights to remove, one for all, or ``{layer name: fraction}``.
        scope: ``"layer"`` (every layer reaches it) or ``"global"`` (one magnitude ranking over all).
        score: importance of each weight (default ``|w|``).
        layers: names of the Linear/Conv2d layers to prune (default: all, or those in ``sparsity``).

    Then fine-tune with :func:`sparseforge.train.fit`: the masked layers keep pruned weights at zero.
    """
    if layers is None and isinstance(sparsity, Mapping):
        layers = list(sparsity)
    apply_masks(model, layers=None if layers is None else list(layers))
    mls = masked_layers(model)
    if layers is not None:
        mls = {n: mls[n] for n in layers}
    result = compute_masks(mls, sparsity, scope=scope, score=score)
    _set_masks(model, result)
    return result


@torch.no_grad()
def prune_below(model: nn.Module, threshold: float | Mapping[str, float]) -> dict[str, float]:
    """The seeds' one-time pruning: ``weights[|weights| < threshold] = 0`` (per layer thresholds allowed).

    Wraps the layers as masked; returns ``{layer name: sparsity reached}``.
    """
    names = list(threshold) if isinstance(threshold, Mapping) else None
    apply_masks(model, layers=names)
    out = {}
    for name, layer in masked_layers(model).items():
        if names is not None and name not in names:
            continue
        t = threshold[name] if isinstance(threshold, Mapping) else threshold
        layer.set_mask((layer.mask != 0) & (layer.weight.abs() >= t))
        out[name] = layer.sparsity
    return out


class Pruner(Callback):
    """Iterative pruning as a training-loop callback: the sparsity follows ``schedule`` step by step.

    Args:
        model: the model to prune; its Linear/Conv2d layers (or ``layers``) are wrapped as masked layers
            *now*, in place, so build the ``Pruner`` before calling ``fit``.
        schedule: a :class:`~sparseforge.prune.schedules.Schedule` (sparsity vs optimizer step) for every
            layer, or ``{layer name: Schedule}`` for per-layer targets (``scope="layer"`` only).
        scope: ``"layer"`` or ``"global"`` magnitude ranking (see :func:`compute_masks`).
        score: importance of each weight (default ``|w|``).
        layers: names of the layers to prune (default: all Linear/Conv2d, or the keys of ``schedule``).
        eval_every: also record validation accuracy every this many steps (``curve``; None = off).

    During training, after every optimizer step: prune when the scheduled sparsity rose (and zero the
    optimizer state of the newly pruned weights), then re-zero pruned weights. At the end of each epoch
    it adds to ``state.metrics``: ``sparsity`` (overall, reached), ``target_sparsity``, and per layer
    ``sparsity/<name>`` and ``threshold/<name>``. ``log`` has one row per pruning event (step, epoch,
    target, reached sparsity and threshold per layer); ``curve`` the optional accuracy samples. Both are
    saved in checkpoints, so a resumed run continues the same schedule.
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: Schedule | Mapping[str, Schedule],
        *,
        scope: str = "layer",
        score: Score = magnitude,
        layers: Iterable[str] | None = None,
        eval_every: int | None = None,
    ) -> None:
        if isinstance(schedule, Mapping) and scope != "layer":
            raise ValueError("per-layer schedules need scope='layer'")
        if layers is None and isinstance(schedule, Mapping):
            layers = list(schedule)
        apply_masks(model, layers=None if layers is None else list(layers))
        all_masked = masked_layers(model)
        self.names = list(layers) if layers is not None else list(all_masked)
        self.model = model
        self.schedule = schedule
        self.scope = scope
        self.score = score
        self.eval_every = eval_every
        self.applied: dict[str, float] = {n: 0.0 for n in self.names}
        self.thresholds: dict[str, float] = {n: 0.0 for n in self.names}
        self.log: list[dict] = []
        self.curve: list[dict] = []

    # ------------------------------------------------------------------ helpers
    @property
    def layers(self) -> dict[str, MaskedLayer]:
        mls = masked_layers(self.model)
        return {n: mls[n] for n in self.names}

    def sparsity(self) -> dict[str, float]:
        """Reached sparsity per layer, and ``overall`` over the pruned layers."""
        layers = self.layers
        out = {n: l.sparsity for n, l in layers.items()}
        total = sum(l.mask.numel() for l in layers.values())
        out["overall"] = 1.0 - sum(l.kept for l in layers.values()) / total
        return out

    def target(self, step: int) -> float:
        """Scheduled overall target at ``step`` (weighted by layer size for per-layer schedules)."""
        t = _targets(self.names, self.schedule, step)
        sizes = {n: l.mask.numel() for n, l in self.layers.items()}
        return sum(t.get(n, 0.0) * sizes[n] for n in self.names) / sum(sizes.values())

    def prune_to(self, step: int, optimizer: torch.optim.Optimizer | None = None, epoch: int = 0) -> bool:
        """Prune to the schedule's target at ``step`` if it rose; returns whether anything was pruned."""
        targets = _targets(self.names, self.schedule, step)
        rose = {n: s for n, s in targets.items() if s > self.applied.get(n, 0.0) + 1e-12}
        if not rose:
            return False
        layers = self.layers
        if self.scope == "global":
            result = compute_masks(layers, next(iter(targets.values())), scope="global", score=self.score)
        else:
            result = compute_masks(layers, rose, scope="layer", score=self.score)
        for name in result.masks:
            layers[name].set_mask(result.masks[name])
            if result.newly_pruned[name] > 0:
                self.thresholds[name] = result.threshold[name]
        self.applied.update(targets if self.scope == "global" else rose)
        if optimizer is not None:
            mask_optimizer_state(optimizer, layers.values())
        reached = self.sparsity()
        row = dict(step=step, epoch=epoch, target=self.target(step), sparsity=reached["overall"])
        row.update({f"sparsity/{n}": reached[n] for n in self.names})
        row.update({f"threshold/{n}": self.thresholds[n] for n in self.names})
        self.log.append(row)
        return True

    # ------------------------------------------------------------------ callback hooks
    def on_train_begin(self, state: TrainState) -> None:
        self.prune_to(state.step, state.optimizer, state.epoch)
        if self.eval_every and state.step == 0 and len(state.data.val):
            _, acc = evaluate(state.model, state.data.val, state.config.eval_batch_size)
            self.curve.append(dict(step=0, val_acc=acc, sparsity=self.sparsity()["overall"]))

    @torch.no_grad()
    def after_step(self, state: TrainState) -> None:
        self.prune_to(state.step, state.optimizer, state.epoch + (state.batch + 1) / max(state.n_batches, 1))
        for layer in self.layers.values():
            layer.apply_mask()
        if self.eval_every and state.step % self.eval_every == 0 and len(state.data.val):
            _, acc = evaluate(state.model, state.data.val, state.config.eval_batch_size)
            self.curve.append(dict(step=state.step, val_acc=acc, sparsity=self.sparsity()["overall"]))

    def on_epoch_end(self, state: TrainState) -> None:
        reached = self.sparsity()
        state.metrics["sparsity"] = reached["overall"]
        state.metrics["target_sparsity"] = self.target(state.step)
        for n in self.names:
            state.metrics[f"sparsity/{n}"] = reached[n]
            state.metrics[f"threshold/{n}"] = self.thresholds[n]

    def state_dict(self) -> dict:
        return dict(applied=dict(self.applied), thresholds=dict(self.thresholds), log=list(self.log),
                    curve=list(self.curve))

    def load_state_dict(self, state: dict) -> None:
        self.applied = dict(state.get("applied", self.applied))
        self.thresholds = dict(state.get("thresholds", self.thresholds))
        self.log = list(state.get("log", []))
        self.curve = list(state.get("curve", []))
