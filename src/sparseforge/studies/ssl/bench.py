"""CPU forward time of an original vs its thinned model: whole model, residual blocks and every
conv/linear layer on its own traced input (explicit threads; original and thinned timed alternately)."""

from __future__ import annotations

import torch
from torch import nn

from ...runs.timing import interleaved_times
from ...ssl import layer_inputs


# ---------------------------------------------------------------------------------------------- timing
@torch.no_grad()
def time_pair(a: nn.Module, xa: torch.Tensor, b: nn.Module, xb: torch.Tensor, repeats: int = 10,
              number: int = 5) -> tuple[float, float]:
    """Seconds per forward call of ``a(xa)`` and ``b(xb)``: min over ``repeats`` of the mean of ``number``
    calls, the two timed alternately so that both see the same machine load (after one warm-up call each).
    Uses the current torch thread setting."""
    t = interleaved_times({0: lambda: a(xa), 1: lambda: b(xb)}, repeats, warmup=1, number=number)
    return t[0], t[1]


def submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


@torch.no_grad()
def benchmark(original: nn.Module, thinned: nn.Module, x: torch.Tensor, *, threads: int = 1, repeats: int = 10,
              number: int = 5) -> dict:
    """CPU forward time (ms) of ``original`` vs ``thinned`` on batch ``x``: per conv/linear layer of the
    original (on its own traced input; a layer absent from the thinned model, e.g. inside a removed residual
    block, has thinned time 0), per residual block (top-level children with a ``branch``), and whole model.
    Returns ``{"threads", "batch", "layers": {name: (orig_ms, thin_ms)}, "blocks": {...}, "model": (o, t)}``.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    was = (original.training, thinned.training)
    original.eval()
    thinned.eval()
    try:
        ins_o, ins_t = layer_inputs(original, x), layer_inputs(thinned, x)
        layers = {}
        for name, xo in ins_o.items():
            mo, mt = original.get_submodule(name), submodule(thinned, name)
            if mt is not None and name in ins_t:
                to, tt = time_pair(mo, xo, mt, ins_t[name], repeats, number)
            else:                                   # removed (inside a removed residual block)
                to, tt = time_pair(mo, xo, nn.Identity(), xo, repeats, number)[0], 0.0
            layers[name] = (1e3 * to, 1e3 * tt)
        blocks = {}
        block_names = [n for n, m in original.named_children() if isinstance(getattr(m, "branch", None), nn.Module)]
        if block_names:
            feats_o = _child_inputs(original, x)
            feats_t = _child_inputs(thinned, x)
            for n in block_names:
                to, tt = time_pair(original.get_submodule(n), feats_o[n], thinned.get_submodule(n), feats_t[n],
                                   repeats, number)
                blocks[n] = (1e3 * to, 1e3 * tt)
        to, tt = time_pair(original, x, thinned, x, repeats, number)
        whole = (1e3 * to, 1e3 * tt)
    finally:
        torch.set_num_threads(prev)
        original.train(was[0])
        thinned.train(was[1])
    return {"threads": threads, "batch": int(x.shape[0]), "layers": layers, "blocks": blocks, "model": whole}


@torch.no_grad()
def _child_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {}
    for n, m in model.named_children():
        out[n] = x
        x = m(x)
    return out
