"""Masked Linear and Conv2d layers for dense-then-sparse training, and in-place wrapping of a model.

One small abstraction, as in ``torch/nn/utils/prune.py``: a masked layer keeps its dense ``weight``
parameter and a ``mask`` buffer of the same shape (1 = kept, 0 = pruned) and computes with
``weight * mask``. The gradient reaching ``weight`` is therefore ``grad(weight * mask) * mask``:
exactly zero on pruned entries, so a fresh optimizer (SGD, momentum, Adam, weight decay) never moves
them. :func:`apply_masks` wraps a model's ``nn.Linear`` / ``nn.Conv2d`` layers *in place* (the wrapped
layers share the original parameter tensors), :func:`remove` makes the pruning permanent (plain layers
with the zeros baked into ``weight``), :func:`extract_masks` returns the structure.

Masked layers are dense compute: they are never faster than the dense model. For speed, convert with
:func:`sparseforge.prune.convert.to_sparse`.
"""

from __future__ import annotations

from typing import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MaskedLayer",
    "MaskedLinear",
    "MaskedConv2d",
    "apply_masks",
    "remove",
    "masked_layers",
    "extract_masks",
    "prunable_layers",
    "layer_sparsity",
    "removable_groups",
]


def _rebuilt_as(cls: type, src: nn.Module) -> nn.Module:
    """An instance of ``cls`` with ``src``'s hyperparameters, sharing its parameter and buffer tensors and
    children (not its ``mask`` buffer); the module's own dicts and sets (hooks, ...) are shallow copies."""
    new = cls.__new__(cls)
    new.__dict__.update({k: (v.copy() if isinstance(v, (dict, set)) else v) for k, v in src.__dict__.items()})
    new._buffers.pop("mask", None)
    new._non_persistent_buffers_set.discard("mask")
    return new


class MaskedLayer:
    """Mixin of :class:`MaskedLinear` and :class:`MaskedConv2d`: a ``mask`` buffer shaped like ``weight``."""

    weight: nn.Parameter
    mask: torch.Tensor

    def _init_mask(self, mask: torch.Tensor | None) -> None:
        m = torch.ones_like(self.weight, dtype=self.weight.dtype) if mask is None else mask
        if tuple(m.shape) != tuple(self.weight.shape):
            raise ValueError(f"mask has shape {tuple(m.shape)}, weight has {tuple(self.weight.shape)}")
        self.register_buffer("mask", (m != 0).to(self.weight.dtype).to(self.weight.device))  # type: ignore[attr-defined]
        self.apply_mask()

    @torch.no_grad()
    def set_mask(self, mask: torch.Tensor) -> None:
        """Replace the mask (any dtype; nonzero = kept) and zero the pruned weights."""
        if tuple(mask.shape) != tuple(self.weight.shape):
            raise ValueError(f"mask has shape {tuple(mask.shape)}, weight has {tuple(self.weight.shape)}")
        self.mask.copy_(mask != 0)
        self.apply_mask()

    @torch.no_grad()
    def apply_mask(self) -> None:
        """Zero the stored weights where the mask is 0 (so the parameter itself is sparse)."""
        self.weight.mul_(self.mask)

    def masked_weight(self) -> torch.Tensor:
        """``weight * mask`` (differentiable): what the layer computes with."""
        return self.weight * self.mask

    @property
    def kept(self) -> int:
        """Number of unpruned weights."""
        return int(self.mask.count_nonzero())

    @property
    def sparsity(self) -> float:
        """Fraction of weights pruned, in [0, 1]."""
        return 1.0 - self.kept / self.mask.numel()

    def num_parameters(self) -> int:
        """Kept weights plus biases (what a sparse format would store)."""
        b = getattr(self, "bias", None)
        return self.kept + (b.numel() if b is not None else 0)


class MaskedLinear(MaskedLayer, nn.Linear):
    """``nn.Linear`` computing ``x (weight * mask)^T + bias``; ``mask`` buffer ``[out_features, in_features]``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, mask: torch.Tensor | None = None,
                 *, device=None, dtype=None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._init_mask(mask)

    @classmethod
    def wrap(cls, layer: nn.Linear, mask: torch.Tensor | None = None) -> MaskedLinear:
        """A masked layer sharing ``layer``'s parameter tensors (no copy)."""
        m = _rebuilt_as(cls, layer)
        m._init_mask(mask)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)

    def unwrap(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the pruned weights set to zero (shares the parameter tensors)."""
        self.apply_mask()
        return _rebuilt_as(nn.Linear, self)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sparsity={self.sparsity:.4f}"


class MaskedConv2d(MaskedLayer, nn.Conv2d):
    """``nn.Conv2d`` computing with ``weight * mask``; ``mask`` buffer ``[out_channels, in_channels/groups, kh, kw]``."""

    def __init__(self, *args, mask: torch.Tensor | None = None, **kwargs) -> None:
        nn.Conv2d.__init__(self, *args, **kwargs)
        self._init_mask(mask)

    @classmethod
    def wrap(cls, layer: nn.Conv2d, mask: torch.Tensor | None = None) -> MaskedConv2d:
        """A masked conv sharing ``layer``'s parameters and hyperparameters (no copy)."""
        m = _rebuilt_as(cls, layer)
        m._init_mask(mask)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)

    def unwrap(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the pruned weights zeroed (shares the parameter tensors)."""
        self.apply_mask()
        return _rebuilt_as(nn.Conv2d, self)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", sparsity={self.sparsity:.4f}"


PRUNABLE = (nn.Linear, nn.Conv2d)


def _set_child(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{qualified name: layer}`` of every ``nn.Linear`` / ``nn.Conv2d`` (masked or not), in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE)}


def masked_layers(model: nn.Module) -> dict[str, MaskedLayer]:
    """``{qualified name: layer}`` of the masked layers, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MaskedLayer)}


def apply_masks(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None = None,
    *,
    layers: Iterator[str] | list[str] | None = None,
) -> nn.Module:
    """Wrap ``model``'s Linear/Conv2d layers in place as masked layers; returns ``model``.

    Args:
        masks: ``{layer name: mask}`` to start from (e.g. :func:`extract_masks` of another model of the
            same architecture); layers not named start fully kept. Pruned weights are zeroed at once.
        layers: names of the layers to wrap (default: those in ``masks``, else every Linear/Conv2d).

    Already-masked layers are kept (their mask replaced when ``masks`` names them). The wrapped layers
    share the original parameters, so an optimizer built before or after wrapping trains the same tensors.
    """
    masks = dict(masks or {})
    candidates = prunable_layers(model)
    names = list(layers) if layers is not None else (list(masks) if masks else list(candidates))
    unknown = [n for n in list(names) + list(masks) if n not in candidates]
    if unknown:
        raise KeyError(f"no Linear/Conv2d layer named {unknown[0]!r}; prunable layers: {list(candidates)}")
    for name in names:
        layer = candidates[name]
        mask = masks.get(name)
        if isinstance(layer, MaskedLayer):
            if mask is not None:
                layer.set_mask(mask)
            continue
        cls = MaskedLinear if isinstance(layer, nn.Linear) else MaskedConv2d
        _set_child(model, name, cls.wrap(layer, mask))  # type: ignore[arg-type]
    return model


def remove(model: nn.Module) -> nn.Module:
    """Make pruning permanent: masked layers become plain Linear/Conv2d with zeros in ``weight``.

    Zero filters/channels of convs can then be removed physically by the structured-sparsity code
    (``sparseforge.ssl``), which works on zero weights; see :func:`removable_groups`.
    """
    for name, layer in list(masked_layers(model).items()):
        _set_child(model, name, layer.unwrap())  # type: ignore[attr-defined]
    return model


def extract_masks(model: nn.Module, *, zeros: bool = False) -> dict[str, torch.Tensor]:
    """The structure of a pruned model: ``{layer name: bool mask shaped like weight}``.

    Masked layers give their masks; with ``zeros=True`` plain Linear/Conv2d layers give ``weight != 0``.
    """
    out = {n: (m.mask != 0).detach().clone() for n, m in masked_layers(model).items()}
    if zeros:
        for n, m in prunable_layers(model).items():
            if n not in out:
                out[n] = (m.weight != 0).detach().clone()
    return out


def layer_sparsity(model: nn.Module) -> list[dict]:
    """One row per masked layer: name, kind, shape, weights, kept, sparsity; and an ``overall`` row."""
    rows, total, kept = [], 0, 0
    for name, layer in masked_layers(model).items():
        n = layer.mask.numel()
        rows.append(dict(layer=name, kind=type(layer).__name__.replace("Masked", ""),
                         shape="x".join(map(str, layer.weight.shape)), weights=n, kept=layer.kept,
                         sparsity=layer.sparsity))
        total += n
        kept += layer.kept
    if rows:
        rows.append(dict(layer="overall", kind="", shape="", weights=total, kept=kept, sparsity=1 - kept / total))
    return rows


def removable_groups(mask: torch.Tensor) -> dict[str, list[int]]:
    """Which whole output units / input units of a layer are pruned away (all-zero in ``mask``).

    For a conv mask ``[out, in, kh, kw]``: ``filters`` (output channels with no kept weight) and
    ``channels`` (input channels no filter reads). For a linear mask ``[out, in]``: output and input
    neurons. These are what conv thinning removes physically (owned by ``sparseforge.ssl``).
    """
    m = mask != 0
    dims_out = tuple(range(1, m.dim()))
    dims_in = (0,) + tuple(range(2, m.dim()))
    filters = (~m.any(dim=dims_out)).nonzero().flatten().tolist()
    channels = (~m.any(dim=dims_in)).nonzero().flatten().tolist()
    return {"filters": filters, "channels": channels}
