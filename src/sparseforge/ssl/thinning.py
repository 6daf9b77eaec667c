"""Thinning: physically remove zeroed structures, giving a smaller dense PyTorch model.

Length (over 500 lines, on purpose): the three kinds of removal share one walk over producer -> per-channel
-> consumer chains and must agree on which channels exist; splitting them would split that walk.

This is the one mechanism of sparseforge that removes structures (SSL uses it, and so does pruning):
zero the weights of the structures to remove, then call :func:`thin`.

* **Filters / channels** (and FC rows / columns): in an ``nn.Sequential``, a producer (``Conv2d``,
  ``Linear``, :class:`LoweredConv2d`) is followed by per-channel modules (BatchNorm, activations, pooling,
  dropout, ``Flatten``) and then a consumer. Output channel ``c`` of the producer is removed when either the
  consumer ignores it (its weights on ``c`` are all zero) or the producer's filter ``c`` is all zero: then the
  channel is a constant (the filter's bias, carried through BN/activation/pooling), whose effect on the
  consumer is folded into the consumer's bias when it is exact (always for a ``Linear``; for a conv when
  the constant's response is spatially uniform, i.e. no zero padding or a zero constant). The producer's
  filter, the BatchNorm's channel and the consumer's input channel go together; a ``Flatten`` in between
  is handled (the channel's ``H*W`` features are removed from the ``Linear``).
* **Shapes** (``(c, kh, kw)`` columns of the lowered weight matrix): a conv with all-zero columns becomes a
  :class:`LoweredConv2d`, an im2col gather of only the kept columns followed by one dense GEMM (the
  lowering of Caffe and the seed).
* **Depth**: a residual block (a module with ``branch``, ``shortcut`` and the class attribute
  ``zero_branch_is_shortcut = True``, e.g. :class:`sparseforge.nn.resnet.BasicBlock`, whose output is
  exactly ``shortcut(x)`` when ``branch`` outputs zero) is replaced by its shortcut when its branch is
  identically zero (:func:`is_zero_module`).

The thinned model computes the same function as the original **in eval mode** (BatchNorm with running
statistics), up to float rounding. It holds only plain PyTorch modules (and :class:`LoweredConv2d`), so it
saves with ``torch.save``, reloads, and exports to ONNX.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LoweredConv2d",
    "remove_filters",
    "remove_channels",
    "remove_bn_channels",
    "lower_conv",
    "zero_columns",
    "thin",
    "is_zero_module",
]

PRODUCERS: tuple[type, ...]  # set below, after LoweredConv2d
PASSTHROUGH = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid,
    nn.Tanh, nn.Hardtanh, nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.Flatten,
)


# ------------------------------------------------------------------------------------ lowered conv
class LoweredConv2d(nn.Module):
    """A convolution computed as im2col over a subset of the ``(c, kh, kw)`` columns plus one dense GEMM.

    ``weight`` ``[out_channels, K]`` holds the kept columns of the lowered weight matrix
    ``W.reshape(out_channels, C*kh*kw)``; ``columns`` ``[K]`` (int64 buffer) says which columns
    (``c*kh*kw + i*kw + j``). For an input ``x`` ``[B, C, H, W]`` the forward gathers the ``K`` kept rows of
    the im2col matrix with one ``index_select`` from the zero-padded input (``[K, B*Ho*Wo]``, nothing else
    is materialised), multiplies by ``weight`` in one GEMM and adds ``bias``: output
    ``[B, out_channels, Ho, Wo]``, equal to ``F.conv2d`` with the full weight whose dropped columns are zero.
    Cost: ``out_channels*K*Ho*Wo`` MACs per sample instead of ``out_channels*C*kh*kw*Ho*Wo``, plus the
    gather of ``K*Ho*Wo`` values. The gather index depends on the input shape and is cached (for the last
    shape seen; batches larger than ``max_index_elements / (K*Ho*Wo)`` are processed in chunks).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, columns: torch.Tensor, in_channels: int,
                 kernel_size: tuple[int, int], stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 dilation: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        columns = torch.as_tensor(columns, dtype=torch.long).reshape(-1)
        if weight.ndim != 2 or weight.shape[1] != columns.numel():
            raise ValueError(f"weight {tuple(weight.shape)} must be [out_channels, {columns.numel()}]")
        self.in_channels = int(in_channels)
        self.out_channels = int(weight.shape[0])
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.stride = tuple(int(s) for s in stride)
        self.padding = tuple(int(p) for p in padding)
        self.dilation = tuple(int(d) for d in dilation)
        full = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        if columns.numel() and (int(columns.min()) < 0 or int(columns.max()) >= full):
            raise ValueError(f"columns must be in [0, {full})")
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.register_buffer("columns", columns.clone())
        self._index_cache: dict[tuple, torch.Tensor] = {}

    @property
    def n_columns(self) -> int:
        return int(self.columns.numel())

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"columns={self.n_columns}/{self.in_channels * kh * kw}, stride={self.stride}, "
                f"padding={self.padding}, bias={self.bias is not None}")

    def output_size(self, h: int, w: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1

    #: Largest gather index (elements) cached per input shape; larger batches are processed in chunks.
    max_index_elements = 1 << 22

    def _index(self, chunk: int, c: int, h: int, w: int, device: torch.device) -> torch.Tensor:
        """Flat gather index ``[K * chunk * L]`` into ``chunk`` zero-padded samples, ordered (k, b, l)."""
        key = (chunk, h, w, str(device), self.columns.data_ptr(), self.n_columns)
        idx = self._index_cache.get(key)
        if idx is None:
            (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
            hp, wp = h + 2 * ph, w + 2 * pw
            ho, wo = self.output_size(h, w)
            cols = self.columns.to(device)
            ch, r = cols // (kh * kw), cols % (kh * kw)
            i, j = r // kw, r % kw
            base = ch * (hp * wp) + i * dh * wp + j * dw                      # [K]
            oy = torch.arange(ho, device=device) * sh
            ox = torch.arange(wo, device=device) * sw
            off = (oy[:, None] * wp + ox[None, :]).reshape(-1)                 # [L]
            sample = torch.arange(chunk, device=device) * (c * hp * wp)        # [chunk]
            idx = (base[:, None, None] + sample[None, :, None] + off[None, None, :]).reshape(-1)
            self._index_cache = {key: idx}
        return idx

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"LoweredConv2d expects {self.in_channels} input channels, got {c}")
        ho, wo = self.output_size(h, w)
        L = ho * wo
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        x = x.contiguous()
        chunk = max(1, min(b, self.max_index_elements // max(1, self.n_columns * L)))
        outs = []
        for s in range(0, b, chunk):
            xb = x[s:s + chunk]
            n = xb.shape[0]
            cols = xb.reshape(-1).index_select(0, self._index(n, c, h, w, x.device)).view(self.n_columns, n * L)
            if self.bias is not None:
                out = torch.addmm(self.bias[:, None], self.weight, cols)      # [N, n*L]
            else:
                out = torch.mm(self.weight, cols)
            outs.append(out.view(self.out_channels, n, ho, wo).permute(1, 0, 2, 3))
        return (outs[0] if len(outs) == 1 else torch.cat(outs, 0)).contiguous()

    def dense_weight(self) -> torch.Tensor:
        """The equivalent ``Conv2d`` weight ``[out_channels, in_channels, kh, kw]`` (dropped columns zero)."""
        kh, kw = self.kernel_size
        full = self.weight.new_zeros(self.out_channels, self.in_channels * kh * kw)
        full[:, self.columns] = self.weight.detach()
        return full.view(self.out_channels, self.in_channels, kh, kw)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._index_cache = {}


PRODUCERS = (nn.Conv2d, nn.Linear, LoweredConv2d)


def _new_param(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone())


def _keep_index(keep: torch.Tensor | Sequence[int], n: int, what: str) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.long).reshape(-1)
    if keep.numel() and (int(keep.min()) < 0 or int(keep.max()) >= n):
        raise ValueError(f"{what}: indices must be in [0, {n})")
    if keep.numel() != torch.unique(keep).numel():
        raise ValueError(f"{what}: indices must be distinct")
    return keep


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     1, bias, conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)


# ------------------------------------------------------------------------------------ low-level surgery
def remove_filters(module: nn.Module, keep: torch.Tensor | Sequence[int]) -> nn.Module:
    """A new layer with only output channels / rows ``keep`` of ``module`` (``Conv2d``, ``Linear`` or
    :class:`LoweredConv2d`); weights copied. The caller fixes up the layers that read its output."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError("grouped convolutions are not supported")
        keep = _keep_index(keep, module.out_channels, "remove_filters")
        new = _conv_like(module, module.in_channels, keep.numel(), module.bias is not None)
    elif isinstance(module, nn.Linear):
        keep = _keep_index(keep, module.out_features, "remove_filters")
        new = nn.Linear(module.in_features, keep.numel(), module.bias is not None,
                        device=module.weight.device, dtype=module.weight.dtype)
    elif isinstance(module, LoweredConv2d):
        keep = _keep_index(keep, module.out_channels, "remove_filters")
        return LoweredConv2d(module.weight[keep], None if module.bias is None else module.bias[keep],
                             module.columns, module.in_channels, module.kernel_size, module.stride,
                             module.padding, module.dilation)
    else:
        raise TypeError(f"remove_filters: unsupported layer {type(module).__name__}")
    with torch.no_grad():
        new.weight.copy_(module.weight[keep])
        if module.bias is not None:
            new.bias.copy_(module.bias[keep])
    new.train(module.training)
    return new


def remove_channels(module: nn.Module, keep: torch.Tensor | Sequence[int], *, spatial: int = 1) -> nn.Module:
    """A new layer reading only input channels ``keep`` of ``module`` (``Conv2d``, ``Linear`` or
    :class:`LoweredConv2d`). For a ``Linear`` after ``Flatten`` of ``[C, H, W]`` maps, pass
    ``spatial=H*W``: channel ``c`` is the features ``c*H*W ... (c+1)*H*W - 1``."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError("grouped convolutions are not supported")
        keep = _keep_index(keep, module.in_channels, "remove_channels")
        new = _conv_like(module, keep.numel(), module.out_channels, module.bias is not None)
        with torch.no_grad():
            new.weight.copy_(module.weight[:, keep])
    elif isinstance(module, nn.Linear):
        if module.in_features % spatial:
            raise ValueError(f"remove_channels: in_features={module.in_features} is not a multiple of spatial={spatial}")
        keep = _keep_index(keep, module.in_features // spatial, "remove_channels")
        feats = (keep[:, None] * spatial + torch.arange(spatial)[None, :]).reshape(-1)
        new = nn.Linear(feats.numel(), module.out_features, module.bias is not None,
                        device=module.weight.device, dtype=module.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(module.weight[:, feats])
    elif isinstance(module, LoweredConv2d):
        keep = _keep_index(keep, module.in_channels, "remove_channels")
        kk = module.kernel_size[0] * module.kernel_size[1]
        new_c = torch.full((module.in_channels,), -1, dtype=torch.long)
        new_c[keep] = torch.arange(keep.numel())
        c = module.columns // kk
        sel = new_c[c] >= 0
        cols = new_c[c[sel]] * kk + module.columns[sel] % kk
        return LoweredConv2d(module.weight[:, sel], module.bias, cols, keep.numel(), module.kernel_size,
                             module.stride, module.padding, module.dilation)
    else:
        raise TypeError(f"remove_channels: unsupported layer {type(module).__name__}")
    if module.bias is not None:
        with torch.no_grad():
            new.bias.copy_(module.bias)
    new.train(module.training)
    return new


def remove_bn_channels(bn: nn.modules.batchnorm._BatchNorm, keep: torch.Tensor | Sequence[int]) -> nn.Module:
    """A new BatchNorm with only channels ``keep`` (affine parameters and running statistics copied)."""
    keep = _keep_index(keep, bn.num_features, "remove_bn_channels")
    new = type(bn)(keep.numel(), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                   device=(bn.weight.device if bn.affine else None))
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[keep])
            new.bias.copy_(bn.bias[keep])
        if bn.track_running_stats and bn.running_mean is not None:
            new.running_mean.copy_(bn.running_mean[keep])
            new.running_var.copy_(bn.running_var[keep])
            new.num_batches_tracked.copy_(bn.num_batches_tracked)
    new.train(bn.training)
    return new


def zero_columns(conv: nn.Module) -> torch.Tensor:
    """Bool ``[C*kh*kw]``: which columns of a conv's lowered weight matrix are all zero."""
    if isinstance(conv, LoweredConv2d):
        kh, kw = conv.kernel_size
        z = torch.ones(conv.in_channels * kh * kw, dtype=torch.bool)
        z[conv.columns] = (conv.weight == 0).all(0)
        return z
    return (conv.weight.detach() == 0).all(0).reshape(-1)


def lower_conv(conv: nn.Conv2d, keep_columns: torch.Tensor | Sequence[int] | None = None) -> LoweredConv2d:
    """Shape-wise thinning: a :class:`LoweredConv2d` with only ``keep_columns`` of ``conv``'s lowered weight
    matrix (default: the columns that are not all zero)."""
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError("lower_conv: needs an nn.Conv2d with groups=1, zero padding and numeric padding")
    w = conv.weight.detach().reshape(conv.out_channels, -1)
    if keep_columns is None:
        keep = torch.nonzero(~zero_columns(conv)).reshape(-1)
    else:
        keep = _keep_index(keep_columns, w.shape[1], "lower_conv")
    return LoweredConv2d(w[:, keep], conv.bias, keep, conv.in_channels, conv.kernel_size, conv.stride,
                         conv.padding, conv.dilation).train(conv.training)


# ------------------------------------------------------------------------------------ zero tests
def _rows_zero(m: nn.Module) -> torch.Tensor:
    """Bool ``[out]``: output channels whose weights are all zero."""
    w = m.weight.detach()
    return (w.reshape(w.shape[0], -1) == 0).all(1)


def _cols_zero(m: nn.Module, spatial: int) -> torch.Tensor:
    """Bool ``[in_channels]``: input channels the layer ignores (all its weights on them are zero)."""
    w = m.weight.detach()
    if isinstance(m, nn.Conv2d):
        return (w == 0).all(0).reshape(w.shape[1], -1).all(1)
    if isinstance(m, nn.Linear):
        return (w == 0).all(0).reshape(-1, spatial).all(1)
    kk = m.kernel_size[0] * m.kernel_size[1]
    used = torch.zeros(m.in_channels, dtype=torch.bool)
    nz = (w != 0).any(0)
    used[(m.columns[nz] // kk)] = True
    return ~used


def is_zero_module(seq: nn.Module) -> bool:
    """True when ``seq`` (e.g. a residual branch, an ``nn.Sequential``) outputs exactly zero for every input
    in eval mode: a trailing BatchNorm with zero scale and shift (followed only by modules mapping 0 to 0),
    or a last producer whose weights and bias are all zero (followed likewise)."""
    kids = list(seq) if isinstance(seq, nn.Sequential) else [seq]
    for k in range(len(kids) - 1, -1, -1):
        m = kids[k]
        tail = kids[k + 1:]
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            if bool((m.weight == 0).all()) and bool((m.bias == 0).all()):
                return _maps_zero_to_zero(tail)
        elif isinstance(m, PRODUCERS):
            if bool((m.weight == 0).all()) and (m.bias is None or bool((m.bias == 0).all())):
                return _maps_zero_to_zero(tail)
            return False
        elif not isinstance(m, PASSTHROUGH):
            return False
    return False


@torch.no_grad()
def _maps_zero_to_zero(mods: Sequence[nn.Module]) -> bool:
    for m in mods:
        if not isinstance(m, PASSTHROUGH):
            return False
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.affine:
                z = m.bias - m.weight * m.running_mean / torch.sqrt(m.running_var + m.eps) if m.track_running_stats else m.bias
            else:
                z = -m.running_mean if m.track_running_stats else torch.zeros(1)
            if not bool((z == 0).all()):
                return False
        elif isinstance(m, nn.Sigmoid):
            return False
    return True


# ------------------------------------------------------------------------------------ chain thinning
@torch.no_grad()
def _forward_inputs(seq: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    xs = []
    for m in seq:
        xs.append(x)
        x = m(x)
    xs.append(x)
    return xs


def _passthrough_forward(mods: Sequence[nn.Module], z: torch.Tensor) -> torch.Tensor:
    for m in mods:
        z = m(z)
    return z


@torch.no_grad()
def _fold_dead(P: nn.Module, mods: Sequence[nn.Module], Q: nn.Module, p_out: torch.Tensor, dead: torch.Tensor,
               spatial: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For dead output channels of P (all-zero filters), the constant they carry through ``mods`` and its
    effect on Q. Returns (foldable bool [C], bias delta [Q.out]) where only foldable channels contribute."""
    C = p_out.shape[1]
    foldable = torch.zeros(C, dtype=torch.bool)
    delta = torch.zeros(Q.weight.shape[0], dtype=Q.weight.dtype)
    idx = torch.nonzero(dead).reshape(-1)
    if idx.numel() == 0:
        return foldable, delta
    bias = P.bias.detach() if P.bias is not None else torch.zeros(C, dtype=p_out.dtype)
    shape = (1,) + tuple(p_out.shape[1:])
    z = torch.zeros(shape, dtype=p_out.dtype)
    view = (1, C) + (1,) * (len(shape) - 2)
    z += (bias * dead.to(bias.dtype)).reshape(view)
    a_full = _passthrough_forward(mods, z)              # [1, C, H', W'] or [1, C*spatial] or [1, C]
    a = a_full.reshape(1, C, -1) if isinstance(Q, nn.Linear) else a_full
    for c in idx.tolist():
        v = a[0, c]
        if bool((v == 0).all()):
            foldable[c] = True
        elif isinstance(Q, nn.Linear):
            wq = Q.weight.detach().reshape(Q.out_features, C, -1)[:, c]  # [M, spatial]
            delta += (wq * v.reshape(1, -1)).sum(1)
            foldable[c] = True
        else:
            # a convolution: a constant map's response is uniform only without border (padding) effects
            inp = torch.zeros_like(a_full)
            inp[0, c] = v
            wq = Q.dense_weight() if isinstance(Q, LoweredConv2d) else Q.weight
            r = F.conv2d(inp, wq, None, Q.stride, Q.padding, Q.dilation)[0]
            first = r[:, :1, :1]
            tol = 1e-6 * float(r.abs().max()) + 1e-12
            if torch.allclose(r, first.expand_as(r), rtol=0.0, atol=tol):
                delta += first.reshape(-1)
                foldable[c] = True
    return foldable, delta


def _chain_pairs(seq: nn.Sequential) -> list[tuple[int, int]]:
    kids = list(seq)
    pairs = []
    for i, m in enumerate(kids):
        if not isinstance(m, PRODUCERS):
            continue
        j = i + 1
        while j < len(kids) and isinstance(kids[j], PASSTHROUGH):
            j += 1
        if j < len(kids) and isinstance(kids[j], PRODUCERS):
            between = kids[i + 1:j]
            # after a Flatten only 1-D per-feature modules are allowed; no BatchNorm1d
            flat = [k for k, b in enumerate(between) if isinstance(b, nn.Flatten)]
            if flat and any(isinstance(b, nn.modules.batchnorm._BatchNorm) for b in between[flat[0]:]):
                continue
            pairs.append((i, j))
    return pairs


@torch.no_grad()
def _thin_chain(seq: nn.Sequential, x: torch.Tensor) -> None:
    for i, j in _chain_pairs(seq):
        xs = _forward_inputs(seq, x)
        P, Q = seq[i], seq[j]
        mods = [seq[k] for k in range(i + 1, j)]
        p_out, q_in = xs[i + 1], xs[j]
        C = p_out.shape[1]
        spatial = 1
        if isinstance(Q, nn.Linear) and p_out.ndim > 2:
            if q_in.shape[-1] % C:
                continue
            spatial = q_in.shape[-1] // C
        elif isinstance(Q, nn.Linear) and q_in.shape[-1] != C:
            continue
        elif not isinstance(Q, nn.Linear) and (q_in.ndim != 4 or q_in.shape[1] != C):
            continue
        unused = _cols_zero(Q, spatial)
        dead = _rows_zero(P) & ~unused
        foldable, delta = _fold_dead(P, mods, Q, p_out, dead, spatial)
        remove = unused | foldable
        if not bool(remove.any()):
            continue
        keep = torch.nonzero(~remove).reshape(-1)
        if keep.numel() == 0:                       # keep one channel so every layer stays valid
            keep = torch.zeros(1, dtype=torch.long)
            delta = delta - _single_channel_effect(P, mods, Q, p_out, 0, spatial, foldable, delta)
        newP = remove_filters(P, keep)
        newQ = remove_channels(Q, keep, spatial=spatial)
        if bool((delta != 0).any()):
            if newQ.bias is None:
                newQ = _with_bias(newQ)
            newQ.bias.add_(delta.to(newQ.bias.dtype))
        seq[i], seq[j] = newP, newQ
        for k in range(i + 1, j):
            if isinstance(seq[k], nn.modules.batchnorm._BatchNorm):
                seq[k] = remove_bn_channels(seq[k], keep)


def _single_channel_effect(P, mods, Q, p_out, c, spatial, foldable, delta) -> torch.Tensor:
    """When every channel is removable we keep channel ``c``; undo its folded contribution if it was folded."""
    if not bool(foldable[c]):
        return torch.zeros_like(delta)
    only = torch.zeros_like(foldable)
    only[c] = True
    _, d = _fold_dead(P, mods, Q, p_out, only, spatial)
    return d


def _with_bias(m: nn.Module) -> nn.Module:
    if isinstance(m, LoweredConv2d):
        return LoweredConv2d(m.weight, m.weight.new_zeros(m.out_channels), m.columns, m.in_channels,
                             m.kernel_size, m.stride, m.padding, m.dilation)
    if isinstance(m, nn.Conv2d):
        new = _conv_like(m, m.in_channels, m.out_channels, True)
        with torch.no_grad():
            new.weight.copy_(m.weight)
            new.bias.zero_()
        return new
    new = nn.Linear(m.in_features, m.out_features, True, device=m.weight.device, dtype=m.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(m.weight)
        new.bias.zero_()
    return new


# ------------------------------------------------------------------------------------ the entry point
def _record_sequential_inputs(model: nn.Module, x: torch.Tensor) -> dict[int, torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            hooks.append(m.register_forward_pre_hook(lambda mod, args: seen.setdefault(id(mod), args[0].detach())))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _replace_blocks(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        branch = getattr(child, "branch", None)
        if (getattr(child, "zero_branch_is_shortcut", False) and isinstance(branch, nn.Module)
                and is_zero_module(branch)):
            setattr(module, name, child.shortcut)
        else:
            _replace_blocks(child)


def _thin_tree(module: nn.Module, inputs: dict[int, torch.Tensor]) -> None:
    for child in module.children():
        _thin_tree(child, inputs)
    if isinstance(module, nn.Sequential) and id(module) in inputs:
        _thin_chain(module, inputs[id(module)])


def _lower_tree(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if (isinstance(child, nn.Conv2d) and child.groups == 1 and child.padding_mode == "zeros"
                and not isinstance(child.padding, str) and bool(zero_columns(child).any())):
            setattr(module, name, lower_conv(child))
        else:
            _lower_tree(child)


@torch.no_grad()
def thin(model: nn.Module, example_input: torch.Tensor, *, filters: bool = True, shapes: bool = True,
         depth: bool = True, inplace: bool = False) -> nn.Module:
    """Remove every zeroed structure of ``model`` and return the smaller dense model (a deep copy unless
    ``inplace``), in the original's train/eval mode.

    Args:
        model: an ``nn.Sequential`` (e.g. :func:`sparseforge.nn.lenet5`) or any module whose layers sit in
            ``nn.Sequential`` containers (e.g. :func:`sparseforge.nn.resnet.resnet20`).
        example_input: a batch ``[B, ...]`` of valid input (shapes are traced with it; values do not matter).
        filters: remove zero filters / unused channels (and FC rows / columns) between adjacent layers.
        shapes: turn convs that still have all-zero ``(c, kh, kw)`` columns into :class:`LoweredConv2d`.
        depth: replace residual blocks whose branch is identically zero by their shortcut.

    The result equals ``model`` in eval mode within float rounding (see the module docstring for what is
    removed and when a dead filter's constant output can be folded into the next layer's bias).
    """
    was_training = model.training
    out = model if inplace else copy.deepcopy(model)
    out.eval()
    if depth:
        _replace_blocks(out)
    if filters:
        _thin_tree(out, _record_sequential_inputs(out, example_input[:1]))
    if shapes:
        _lower_tree(out)
    out.train(was_training)
    return out
