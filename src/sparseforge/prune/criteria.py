"""Pruning criteria: which weights to remove to reach a sparsity, per layer or globally.

The importance of a weight is a score (default: its magnitude ``|w|``); pruning to sparsity ``s``
keeps the ``round((1 - s) n)`` highest-scoring weights. Already-pruned weights (mask 0) score
``-inf``, so masks only ever shrink (pruned weights never come back). Ties are broken by position, so
the sparsity reached is exact: ``round(s n)`` pruned weights per layer (``scope="layer"``), or
``round(s N)`` over all layers together (``scope="global"``, one magnitude threshold for the whole net).

The *threshold* of a layer is the largest score it pruned (the seeds' "weights below a threshold are
set to zero"); it is reported so that thresholds can be plotted over time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from .masked import MaskedLayer

__all__ = ["Score", "magnitude", "PruneResult", "compute_masks", "keep_top", "SCOPES"]

Score = Callable[[MaskedLayer], torch.Tensor]
SCOPES = ("layer", "global")


def magnitude(layer: MaskedLayer) -> torch.Tensor:
    """``|weight|`` (same shape as the weight): the classic criterion (Han et al. 2015; seed 004)."""
    return layer.weight.detach().abs()


@dataclass(frozen=True)
class PruneResult:
    """Masks and what was done, per layer: the new mask, the sparsity reached, the threshold (largest
    magnitude pruned now; 0.0 when nothing new was pruned) and how many weights were newly pruned."""

    masks: dict[str, torch.Tensor]
    sparsity: dict[str, float]
    threshold: dict[str, float]
    overall: float
    newly_pruned: dict[str, int]


def keep_top(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Bool mask (shape of ``scores``) that drops exactly the ``n_prune`` lowest scores (ties: lower index first)."""
    flat = scores.reshape(-1)
    n_prune = max(0, min(int(n_prune), flat.numel()))
    keep = torch.ones(flat.numel(), dtype=torch.bool, device=flat.device)
    if n_prune:
        order = torch.sort(flat, stable=True).indices
        keep[order[:n_prune]] = False
    return keep.view(scores.shape)


def _threshold(scores: torch.Tensor, keep: torch.Tensor) -> float:
    """Largest finite score that was pruned (0.0 when nothing was pruned)."""
    dropped = scores[~keep]
    dropped = dropped[torch.isfinite(dropped)]
    return float(dropped.max()) if dropped.numel() else 0.0


def _scores(layer: MaskedLayer, score: Score) -> torch.Tensor:
    s = score(layer).to(torch.float64)
    if tuple(s.shape) != tuple(layer.weight.shape):
        raise ValueError(f"score has shape {tuple(s.shape)}, weight has {tuple(layer.weight.shape)}")
    return torch.where(layer.mask != 0, s, torch.full_like(s, -torch.inf))


@torch.no_grad()
def compute_masks(
    layers: Mapping[str, MaskedLayer],
    sparsity: float | Mapping[str, float],
    *,
    scope: str = "layer",
    score: Score = magnitude,
) -> PruneResult:
    """Masks that prune ``layers`` to ``sparsity`` (does not change the layers; see ``Pruner``/``prune_once``).

    Args:
        layers: ``{name: masked layer}`` (e.g. :func:`~sparseforge.prune.masked.masked_layers`).
        sparsity: one fraction in [0, 1) for all layers, or ``{name: fraction}`` per layer (layer scope;
            layers not named keep their current mask).
        scope: ``"layer"`` (each layer reaches the sparsity) or ``"global"`` (the weights of all layers
            ranked together; layers end up with different sparsities, the total is exact).
        score: importance of each weight, higher = keep (default :func:`magnitude`).

    A target below a layer's current sparsity keeps the current mask (masks never grow back).
    """
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}: choose one of {SCOPES}")
    if not layers:
        raise ValueError("no masked layers to prune; call apply_masks(model) first")
    if isinstance(sparsity, Mapping):
        if scope == "global":
            raise ValueError("per-layer sparsity targets need scope='layer'")
        unknown = [n for n in sparsity if n not in layers]
        if unknown:
            raise KeyError(f"sparsity target for unknown layer {unknown[0]!r}; layers: {list(layers)}")
        targets = dict(sparsity)
    else:
        targets = {n: float(sparsity) for n in layers}
    for n, s in targets.items():
        if not 0.0 <= s < 1.0:
            raise ValueError(f"sparsity[{n}]={s}: must be in [0, 1)")

    masks, thresholds, newly = {}, {}, {}
    if scope == "layer":
        for name, layer in layers.items():
            if name not in targets:
                masks[name] = layer.mask != 0
                thresholds[name], newly[name] = 0.0, 0
                continue
            s = _scores(layer, score)
            n = s.numel()
            n_prune = max(round(targets[name] * n), n - layer.kept)
            keep = keep_top(s, n_prune)
            masks[name], thresholds[name] = keep, _threshold(s, keep)
            newly[name] = int(layer.mask.count_nonzero()) - int(keep.sum())
    else:
        scores = {name: _scores(layer, score) for name, layer in layers.items()}
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        total = flat.numel()
        already = sum(int((s == -torch.inf).sum()) for s in scores.values())
        n_prune = max(round(targets[next(iter(layers))] * total), already)
        keep_flat = keep_top(flat, n_prune)
        start = 0
        for name, s in scores.items():
            keep = keep_flat[start : start + s.numel()].view(s.shape)
            start += s.numel()
            masks[name], thresholds[name] = keep, _threshold(s, keep)
            newly[name] = int(layers[name].mask.count_nonzero()) - int(keep.sum())
    spars = {n: 1.0 - float(m.sum()) / m.numel() for n, m in masks.items()}
    total = sum(m.numel() for m in masks.values())
    overall = 1.0 - sum(float(m.sum()) for m in masks.values()) / total
    return PruneResult(masks=masks, sparsity=spars, threshold=thresholds, overall=overall, newly_pruned=newly)
