"""Per-layer FLOPs of conv/linear models, by tracing shapes with forward hooks.

Convention (as in the seeds' tables): only the multiply-accumulates of ``Conv2d``, ``Linear`` and
:class:`~sparseforge.ssl.thinning.LoweredConv2d` layers are counted, ``FLOPs = 2 * MACs`` per sample;
bias additions, BatchNorm, activations, pooling and residual additions are not counted.

* ``Conv2d``: ``MACs = C_out * (C_in / groups) * kh * kw * H_out * W_out``
* ``LoweredConv2d``: ``MACs = C_out * K * H_out * W_out`` (``K`` kept columns)
* ``Linear``: ``MACs = in_features * out_features`` (times any leading non-batch dims)
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .thinning import LoweredConv2d

__all__ = ["layer_flops", "model_flops", "layer_inputs"]

LAYERS = (nn.Conv2d, nn.Linear, LoweredConv2d)


def _macs(m: nn.Module, out: torch.Tensor) -> int:
    per_sample_out = math.prod(out.shape[1:])
    if isinstance(m, nn.Conv2d):
        kh, kw = m.kernel_size
        return per_sample_out * (m.in_channels // m.groups) * kh * kw
    if isinstance(m, LoweredConv2d):
        return per_sample_out * m.n_columns
    return per_sample_out * m.in_features


@torch.no_grad()
def _run_hooked(model: nn.Module, x: torch.Tensor, register) -> None:
    """Run ``model`` once on ``x`` in eval mode with ``register(name, module)`` hooks on every layer."""
    hooks = [register(n, m) for n, m in model.named_modules() if isinstance(m, LAYERS)]
    was = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was)
        for h in hooks:
            h.remove()


def layer_inputs(model: nn.Module, example_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{name: input tensor}`` of every conv/linear layer of ``model`` for ``example_input`` (eval mode)."""
    seen: dict[str, torch.Tensor] = {}
    _run_hooked(model, example_input, lambda n, m: m.register_forward_pre_hook(
        lambda mod, args: seen.setdefault(n, args[0].detach())))
    return seen


def layer_flops(model: nn.Module, example_input: torch.Tensor) -> list[dict]:
    """One row per conv/linear layer in forward order: ``layer`` (module name), ``type``, ``in_shape``,
    ``out_shape`` (per sample), ``params`` (weights and bias), ``macs`` and ``flops`` (= 2 MACs) per sample.
    ``example_input`` is any valid batch ``[B, ...]``; the model runs once in eval mode."""
    rows: list[dict] = []

    def hook(n: str):
        def fn(mod, args, out):
            macs = _macs(mod, out)
            rows.append(dict(layer=n, type=type(mod).__name__, in_shape=list(args[0].shape[1:]),
                             out_shape=list(out.shape[1:]),
                             params=sum(p.numel() for p in mod.parameters(recurse=False)), macs=macs, flops=2 * macs))
        return fn

    _run_hooked(model, example_input, lambda n, m: m.register_forward_hook(hook(n)))
    return rows


def model_flops(model: nn.Module, example_input: torch.Tensor) -> int:
    """Total forward FLOPs per sample (``2 * MACs`` of all conv/linear layers)."""
    return sum(r["flops"] for r in layer_flops(model, example_input))
