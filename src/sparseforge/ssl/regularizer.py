"""The group-Lasso regularizer of SSL as a training-loop callback, as a loss term or as a proximal step.

Objective (seed 002): ``E(W) = E_D(W) + lambda R(W) + sum_s lam_s sum_{g in s} ||w_g||`` with ``lambda R``
the optimizer's weight decay and ``s`` the :class:`~sparseforge.ssl.groups.GroupSet`\\ s.

* ``mode="loss"`` (what the seed's Caffe code does): the group term is added to the loss before
  ``backward`` and the optimizer follows its (sub)gradient ``lam * w_g / ||w_g||``. Groups never reach
  exactly zero this way; they hover at a norm of about the step size, so a ``threshold`` zeroes groups whose
  norm is below it at the end of every epoch and of training.
* ``mode="proximal"``: after every optimizer step each group is shrunk by the proximal operator of
  ``tau ||w_g||`` with ``tau = lr * lam``: ``w_g <- w_g * max(0, 1 - tau / ||w_g||)`` (block soft
  thresholding). Groups whose norm is at most ``tau`` land exactly on zero, and stay there while the data
  gradient is weaker than ``lam``. Groups whose norm after the shrink is below ``threshold`` are zeroed
  too. Overlapping kinds (filter + channel) are shrunk one group set after another (the usual
  approximation: the prox of a sum of overlapping norms has no closed form). With plain SGD this is
  proximal gradient descent; with momentum or Adam it is the common heuristic.

:class:`FreezeZeroGroups` keeps groups that are zero when training starts at zero (the fine-tuning
phase after SSL, when the learned structure is fixed).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import torch

from ..train import Callback, TrainState
from .groups import GroupSet

__all__ = ["GroupLasso", "FreezeZeroGroups", "group_penalty", "proximal_step", "threshold_groups", "zero_fractions"]

MODES = ("loss", "proximal")


def group_penalty(groups: Sequence[GroupSet]) -> torch.Tensor:
    """``sum_s lam_s sum_g ||w_g||`` over all group sets (a differentiable scalar)."""
    total = torch.zeros(())
    for gs in groups:
        if gs.lam:
            total = total + gs.penalty()
    return total


@torch.no_grad()
def proximal_step(gs: GroupSet, tau: float, threshold: float = 0.0) -> torch.Tensor:
    """Block soft-thresholding of every group of ``gs`` in place: ``w_g *= max(0, 1 - tau/||w_g||)``;
    groups whose norm after shrinking is below ``threshold`` become zero too. Returns the bool ``[G]`` mask
    of groups that are zero afterwards."""
    norms = gs.norms()
    factor = torch.clamp(1 - tau / torch.clamp(norms, min=torch.finfo(norms.dtype).tiny), min=0.0)
    factor = torch.where(norms * factor < threshold, torch.zeros_like(factor), factor)
    gs.scale_(factor)
    return factor == 0


@torch.no_grad()
def threshold_groups(groups: Sequence[GroupSet], threshold: float) -> int:
    """Set every group whose norm is below ``threshold`` exactly to zero; returns how many groups were
    newly zeroed."""
    newly = 0
    for gs in groups:
        norms = gs.norms()
        small = norms < threshold
        newly += int((small & (norms > 0)).sum())
        if small.any():
            gs.scale_((~small).to(norms.dtype))
    return newly


@torch.no_grad()
def zero_fractions(groups: Sequence[GroupSet]) -> dict[str, float]:
    """Fraction of exactly-zero groups per kind, over all layers: ``{"zero_filter": 0.6, ...}``."""
    zero: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    for gs in groups:
        zero[gs.kind] += int(gs.zero_mask().sum())
        total[gs.kind] += gs.n_groups
    return {f"zero_{k}": zero[k] / total[k] for k in total}


class GroupLasso(Callback):
    """Group-Lasso regularization of ``groups`` during :func:`sparseforge.train.fit`.

    Args:
        groups: the group sets with their coefficients (see :func:`sparseforge.ssl.ssl_groups`).
        mode: ``"proximal"`` (shrink after each step) or ``"loss"`` (add the term to the loss).
        threshold: group norm below which a group is set exactly to zero (after each proximal step, and in
            both modes at the end of every epoch and of training). 0 disables thresholding.

    Adds to each epoch's metrics ``ssl_penalty`` (``sum lam ||w_g||``) and ``zero_<kind>`` (fraction of
    zero groups per kind).
    """

    def __init__(self, groups: Sequence[GroupSet], *, mode: str = "proximal", threshold: float = 0.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
        if threshold < 0:
            raise ValueError(f"threshold={threshold}: must be >= 0")
        self.groups = [g for g in groups if g.lam > 0 or threshold > 0]
        self.mode = mode
        self.threshold = float(threshold)
        self._lr_group: dict[int, int] = {}

    def penalty(self) -> torch.Tensor:
        return group_penalty(self.groups)

    def on_train_begin(self, state: TrainState) -> None:
        self._lr_group = {id(p): i for i, g in enumerate(state.optimizer.param_groups) for p in g["params"]}

    def _lr(self, state: TrainState, gs: GroupSet) -> float:
        i = self._lr_group.get(id(gs.members[0].param))
        if i is None:
            raise ValueError(f"{gs.layer}/{gs.kind}: parameter is not optimized by this optimizer")
        return float(state.optimizer.param_groups[i]["lr"])

    def before_backward(self, state: TrainState, loss: torch.Tensor) -> torch.Tensor:
        if self.mode == "loss":
            return loss + self.penalty()
        return loss

    def after_step(self, state: TrainState) -> None:
        if self.mode == "proximal":
            for gs in self.groups:
                proximal_step(gs, self._lr(state, gs) * gs.lam, self.threshold)

    def on_epoch_end(self, state: TrainState) -> None:
        if self.threshold > 0:
            threshold_groups(self.groups, self.threshold)
        with torch.no_grad():
            state.metrics["ssl_penalty"] = float(self.penalty())
        state.metrics.update(zero_fractions(self.groups))

    def on_train_end(self, state: TrainState) -> None:
        if self.threshold > 0:
            threshold_groups(self.groups, self.threshold)


class FreezeZeroGroups(Callback):
    """Keeps every group of ``groups`` that is exactly zero at the start of training at zero after each
    optimizer step (momentum and weight decay would otherwise move it): fine-tuning with a fixed structure."""

    def __init__(self, groups: Sequence[GroupSet]) -> None:
        self.groups = list(groups)
        self._keep: list[torch.Tensor] = []

    def on_train_begin(self, state: TrainState) -> None:
        self._keep = [(~gs.zero_mask()).float() for gs in self.groups]

    def after_step(self, state: TrainState) -> None:
        for gs, keep in zip(self.groups, self._keep):
            if not bool(keep.all()):
                gs.scale_(keep)

    def on_epoch_end(self, state: TrainState) -> None:
        state.metrics.update(zero_fractions(self.groups))
