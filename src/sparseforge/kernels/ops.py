"""The sparse products as registered ``torch.library`` ops (namespace ``sparseforge_ell``).

Four ops, each with a fake (meta) implementation so ``torch.compile(fullgraph=True)`` and
``torch.export`` trace through them without running them, and the training op with a registered autograd
formula built from the other two:

* ``linear(x_fm, values, bias, <layout>)``: ``[n_out, batch] = W x_fm (+ bias[:, None])``; differentiable in
  ``x_fm``, ``values`` and ``bias``;
* ``grad_input(gy, values, <transposed layout>)``: ``[n_in, batch] = W^T gy``;
* ``grad_values(gy, x_fm, <layout>)``: ``[edges]``, ``g[e] = <gy[row(e)], x_fm[indices[e]]>`` (SDDMM);
* ``inference(x_fm, values, bias, <layout>, lo, hi)``: the forward with bias and clamp fused, no autograd.

``<layout>`` is the index tensors of a :class:`~.ell.SparseLayout` (validated when it was built) plus its
ints; ``d_in``/``d_out`` are the fixed in/out-degree or 0 when it varies; ``block`` (last, default 1) is the
layout's block size (block patterns run the block kernels). Each op picks its implementation
when it runs (:func:`~.backend.resolve_backend`: native CPU kernels or stock PyTorch ops), so one compiled or
exported graph follows the backend setting. Eager calls (nothing tracing) run the same functions through a
plain ``autograd.Function``, without the op dispatch overhead. Activations are feature-major ``[nodes, batch]``; float32 and
float64 on the native path; half precision is computed in float32 by :func:`sparse_matmul_fm`.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .backend import resolve_backend
from .ell import PRODUCTS, SparseLayout

NAMESPACE = "sparseforge_ell"
#: dtypes computed as they are; others in :data:`UPCAST` run in float32 and are cast back.
COMPUTE_DTYPES = (torch.float32, torch.float64)
UPCAST = (torch.float16, torch.bfloat16)


def _layout(indptr: Tensor | None, indices: Tensor | None, group: int = 1, d_in: int = 0, n_in: int = 0,
            t_indptr: Tensor | None = None, t_indices: Tensor | None = None, t_perm: Tensor | None = None,
            t_group: int = 1, d_out: int = 0, block: int = 1) -> SparseLayout:
    """The layout the stock/native products read, from the op's (already validated) arguments; parts an op
    does not need are None."""
    n_out = indptr.numel() - 1 if indptr is not None else 0
    n_in = t_indptr.numel() - 1 if t_indptr is not None else n_in
    return SparseLayout._unchecked(
        n_in=n_in, n_out=n_out, indptr=indptr, indices=indices,
        ell=indices.view(n_out, d_in) if d_in else None, t_indices=t_indices,
        t_offsets=None if t_indptr is None else t_indptr[:-1], t_perm=t_perm,
        t_ell=t_indices.view(n_in, d_out) if d_out and t_indices is not None else None,
        t_indptr=t_indptr, group=group, t_group=t_group, block=block,
    )


def _products(x: Tensor):
    return PRODUCTS[resolve_backend(x.device, x.dtype)]


# ---------------------------------------------------------------------------------------- grad input
def _grad_input(gy: Tensor, values: Tensor, t_indptr: Tensor, t_indices: Tensor, t_perm: Tensor, t_group: int,
               d_out: int, block: int = 1) -> Tensor:
    """``[n_in, batch] = W^T gy`` for ``gy[n_out, batch]``; ``values`` in the pattern's (not the transpose's) order."""
    layout = _layout(None, None, t_indptr=t_indptr, t_indices=t_indices, t_perm=t_perm, t_group=t_group, d_out=d_out,
                     block=block)
    return _products(gy)[0](layout, values.reshape(-1), gy.contiguous(), transposed=True)


grad_input = torch.library.custom_op(f"{NAMESPACE}::grad_input", _grad_input, mutates_args=())


@grad_input.register_fake
def _(gy, values, t_indptr, t_indices, t_perm, t_group, d_out, block=1):
    return gy.new_empty((t_indptr.shape[0] - 1, gy.shape[1]))


# --------------------------------------------------------------------------------------- grad values
def _grad_values(gy: Tensor, x_fm: Tensor, indptr: Tensor, indices: Tensor, group: int, n_in: int,
                 block: int = 1) -> Tensor:
    """``[edges]``: ``g[e] = <gy[row(e)], x_fm[indices[e]]>`` for ``gy[n_out, batch]``, ``x_fm[n_in, batch]``."""
    layout = _layout(indptr, indices, group, n_in=n_in, block=block)
    return _products(x_fm)[1](layout, gy.contiguous(), x_fm)


grad_values = torch.library.custom_op(f"{NAMESPACE}::grad_values", _grad_values, mutates_args=())


@grad_values.register_fake
def _(gy, x_fm, indptr, indices, group, n_in, block=1):
    return x_fm.new_empty((indices.shape[0],))


# ------------------------------------------------------------------------------------------- forward
def _linear(x_fm: Tensor, values: Tensor, bias: Optional[Tensor], indptr: Tensor, indices: Tensor,
           t_indptr: Tensor, t_indices: Tensor, t_perm: Tensor, group: int, t_group: int, d_in: int,
           d_out: int, block: int = 1) -> Tensor:
    """``[n_out, batch] = W x_fm (+ bias[:, None])`` for ``x_fm[n_in, batch]`` (the bias added in the kernel)."""
    layout = _layout(indptr, indices, group, d_in, block=block)
    return _products(x_fm)[0](layout, values.reshape(-1), x_fm, bias=None if bias is None else bias.contiguous())


linear = torch.library.custom_op(f"{NAMESPACE}::linear", _linear, mutates_args=())


@linear.register_fake
def _(x_fm, values, bias, indptr, indices, t_indptr, t_indices, t_perm, group, t_group, d_in, d_out, block=1):
    return x_fm.new_empty((indptr.shape[0] - 1, x_fm.shape[1]))


def _linear_setup(ctx, inputs, output) -> None:
    x_fm, values, bias, indptr, indices, t_indptr, t_indices, t_perm, group, t_group, d_in, d_out, *rest = inputs
    block = rest[0] if rest else 1  # the default may or may not be among the inputs
    ctx.save_for_backward(x_fm, values, indptr, indices, t_indptr, t_indices, t_perm)
    ctx.ints = (group, t_group, d_out, block)


def _linear_backward(ctx, gy: Tensor):
    """Gradients of :func:`linear`'s inputs (None for the layout)."""
    x_fm, values, indptr, indices, t_indptr, t_indices, t_perm = ctx.saved_tensors
    group, t_group, d_out, block = ctx.ints
    gx = gv = gb = None
    if ctx.needs_input_grad[0]:
        gx = grad_input(gy, values, t_indptr, t_indices, t_perm, t_group, d_out, block)
    if ctx.needs_input_grad[1]:
        gv = grad_values(gy, x_fm, indptr, indices, group, x_fm.shape[0], block).view(values.shape)
    if ctx.needs_input_grad[2]:
        gb = gy.sum(1)
    return (gx, gv, gb) + (None,) * 10


linear.register_autograd(_linear_backward, setup_context=_linear_setup)


class _EagerLinear(torch.autograd.Function):
    """:func:`linear` with the same formulas on a :class:`SparseLayout`, without the op dispatch (used when
    nothing traces): a registered custom op with twelve arguments costs ~25-120 us more per call in eager
    mode (measured at 1024^2, batch 1, one thread), 2-4x the whole product at small batches."""

    @staticmethod
    def forward(ctx, x_fm: Tensor, values: Tensor, bias: Tensor | None, layout: SparseLayout) -> Tensor:
        ctx.layout, ctx.products = layout, _products(x_fm)
        ctx.save_for_backward(x_fm, values)
        return ctx.products[0](layout, values.reshape(-1), x_fm, bias=None if bias is None else bias.contiguous())

    @staticmethod
    def backward(ctx, gy: Tensor):
        (x_fm, values), layout, (spmm, sampled) = ctx.saved_tensors, ctx.layout, ctx.products
        gy = gy.contiguous()
        gx = spmm(layout, values.reshape(-1), gy, transposed=True) if ctx.needs_input_grad[0] else None
        gv = sampled(layout, gy, x_fm).view(values.shape) if ctx.needs_input_grad[1] else None
        gb = gy.sum(1) if ctx.needs_input_grad[2] else None
        return gx, gv, gb, None


def tracing() -> bool:
    """True under torch.compile / torch.export, where the registered ops (fake kernels) must be used."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


# ----------------------------------------------------------------------------------------- inference
def _inference(x_fm: Tensor, values: Tensor, bias: Optional[Tensor], indptr: Tensor, indices: Tensor, group: int,
              d_in: int, lo: Optional[float], hi: Optional[float], block: int = 1) -> Tensor:
    """``[n_out, batch] = clamp(W x_fm + bias[:, None], lo, hi)`` (bias and clamp optional, fused)."""
    layout = _layout(indptr, indices, group, d_in, block=block)
    clamp = None if lo is None or hi is None else (lo, hi)
    return _products(x_fm)[0](layout, values.reshape(-1), x_fm, bias=bias, clamp=clamp)


inference = torch.library.custom_op(f"{NAMESPACE}::inference", _inference, mutates_args=())


@inference.register_fake
def _(x_fm, values, bias, indptr, indices, group, d_in, lo, hi, block=1):
    return x_fm.new_empty((indptr.shape[0] - 1, x_fm.shape[1]))


# ------------------------------------------------------------------------------------ public entries
def degree(ell: Tensor | None) -> int:
    """The fixed degree of an ELL view, 0 for None (variable degree): the ``d_in``/``d_out`` op argument."""
    return 0 if ell is None else int(ell.shape[1])


def sparse_matmul_fm(x_fm: Tensor, values: Tensor, layout: SparseLayout, bias: Tensor | None = None) -> Tensor:
    """Differentiable ``[n_out, batch] = W[n_out, n_in] @ x_fm[n_in, batch] (+ bias[n_out, None])`` for a
    sparse ``W``.

    ``values`` holds one entry per edge in CSR order, shaped ``[edges]`` or ``[n_out, d_in]``, of ``x_fm``'s
    dtype. float16/bfloat16 operands are computed in float32 and the result cast back (like autocast).
    """
    check_operands(x_fm, values, layout, bias)
    return linear_fm(x_fm, values, bias, layout)


def linear_fm(x_fm: Tensor, values: Tensor, bias: Tensor | None, layout: SparseLayout,
              tensors: tuple[Tensor, ...] | None = None) -> Tensor:
    """:func:`sparse_matmul_fm` on operands already checked against ``layout``. Under torch.compile/export it
    is the registered op :func:`linear`, on ``tensors`` = ``(indptr, indices, t_indptr, t_indices, t_perm)``
    when given (a module's buffers: export then sees buffers, not constants), else on the layout's."""
    if x_fm.dtype in UPCAST:
        return linear_fm(x_fm.float(), values.float(), None if bias is None else bias.float(), layout,
                         tensors).to(x_fm.dtype)
    if not tracing():
        return _EagerLinear.apply(x_fm, values, bias, layout)
    t = tensors or (layout.indptr, layout.indices, layout.t_indptr, layout.t_indices, layout.t_perm)
    return linear(x_fm, values, bias, *t, layout.group, layout.t_group, degree(layout.ell), degree(layout.t_ell),
                  layout.block)


@torch.no_grad()
def sparse_inference_fm(x_fm: Tensor, values: Tensor, layout: SparseLayout, bias: Tensor | None = None,
                        clamp: tuple[float, float] | None = None) -> Tensor:
    """Inference only (no autograd): ``[n_out, batch] = clamp(W @ x_fm + bias[:, None], lo, hi)``.

    The bias and the clamp (e.g. ``(0, 32)``: a ReLU capped at 32, as in the Sparse DNN Graph Challenge) are
    applied inside the product while each output row is in cache, so a layer costs one pass over its output.
    """
    check_operands(x_fm, values, layout, bias)
    if clamp is not None and not (len(clamp) == 2 and clamp[0] <= clamp[1]):
        raise ValueError(f"clamp must be (lo, hi) with lo <= hi, got {clamp!r}")
    if x_fm.dtype in UPCAST:
        y = sparse_inference_fm(x_fm.float(), values.float(), layout, None if bias is None else bias.float(), clamp)
        return y.to(x_fm.dtype)
    lo, hi = (None, None) if clamp is None else map(float, clamp)
    op = inference if tracing() else _inference
    return op(x_fm, values, bias, layout.indptr, layout.indices, layout.group, degree(layout.ell), lo, hi,
              layout.block)


def check_operands(x_fm: Tensor, values: Tensor, layout: SparseLayout, bias: Tensor | None) -> None:
    if x_fm.dim() != 2 or x_fm.shape[0] != layout.n_in:
        raise ValueError(f"x_fm must be [n_in={layout.n_in}, batch], got {tuple(x_fm.shape)}")
    allowed = COMPUTE_DTYPES + UPCAST
    if x_fm.dtype not in allowed:
        raise ValueError(f"x_fm has dtype {x_fm.dtype}; sparse products take "
                         f"{', '.join(str(d).removeprefix('torch.') for d in allowed)}")
    if values.dtype != x_fm.dtype:
        raise ValueError(f"x_fm is {x_fm.dtype} but the values are {values.dtype}: give inputs of the layer's dtype "
                         f"(x.to({values.dtype})) or convert the layer (.to({x_fm.dtype}))")
    if values.numel() != layout.edges:
        raise ValueError(f"values must hold one entry per edge ({layout.edges}), got {values.numel()}")
    if bias is not None and (bias.shape != (layout.n_out,) or bias.dtype != x_fm.dtype):
        raise ValueError(f"bias must be [n_out={layout.n_out}] of {x_fm.dtype}, got {tuple(bias.shape)} of {bias.dtype}")
    if x_fm.device != values.device or x_fm.device != layout.indices.device:
        raise ValueError(f"x_fm is on {x_fm.device}, values on {values.device}, the layout on "
                         f"{layout.indices.device}; move them to one device")
