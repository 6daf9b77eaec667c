"""Sparse x dense products for a junction's pattern: the layout, the stock-ops path and the autograd Function.

Activations are *feature-major*: ``x_fm`` has shape ``[n_in, batch]``, so each left node's activations
are one contiguous row. For a pattern with CSR arrays ``(indptr, indices)`` and edge values ``values``
(``[edges]``, CSR order), the three products of a training step are

* forward:     ``y_fm[j] = sum_e values[e] * x_fm[indices[e]]`` over the edges ``e`` of right node ``j``
  (an ``embedding_bag`` with the activations as the table and right nodes as bags);
* grad input:  the same product over the transposed pattern, with ``values`` permuted once into its order;
* grad values: ``g[e] = <grad_y_fm[row(e)], x_fm[indices[e]]>`` (a sampled dense-dense product, SDDMM).

Every product costs O(edges * batch) time and O(edges) extra memory; nothing is ever densified.

:class:`EllProduct` runs these products with the backend chosen by :mod:`.backend`: the stock ops below
(portable: any device, any dtype) or the compiled CPU kernels of :mod:`.native` (same meaning, faster).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..topology import Pattern
from . import native
from .backend import resolve_backend

# torch marks CSR tensors as beta on every construction; sddmm builds one per backward pass.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


@dataclass(frozen=True)
class SparseLayout:
    """Index tensors of one pattern, precomputed once for forward and backward.

    Attributes (all int64 on one device):
        n_in, n_out: junction sizes.
        indptr: ``[n_out + 1]`` CSR row pointers; ``offsets = indptr[:-1]``.
        indices: ``[edges]`` left node of each edge (CSR order).
        ell: ``[n_out, d_in]`` view of ``indices`` when the in-degree is fixed, else None.
        t_indices, t_offsets: the transposed pattern (right node of each edge, grouped by left node).
        t_perm: ``[edges]``; edge ``e`` of the transposed pattern is edge ``t_perm[e]`` of this one.
        t_ell: ``[n_in, d_out]`` view of ``t_indices`` when the out-degree is fixed, else None.
        t_indptr: ``[n_in + 1]`` CSR row pointers of the transposed pattern (``t_offsets = t_indptr[:-1]``).
        group, t_group: ``G`` when every ``G`` consecutive rows of the pattern (of its transpose) share one
            index list (G in 8, 4, 2; else 1); the native kernels then reuse each gathered row ``G`` times.
    """

    n_in: int
    n_out: int
    indptr: torch.Tensor
    indices: torch.Tensor
    ell: torch.Tensor | None
    t_indices: torch.Tensor
    t_offsets: torch.Tensor
    t_perm: torch.Tensor
    t_ell: torch.Tensor | None
    t_indptr: torch.Tensor
    group: int = 1
    t_group: int = 1

    @classmethod
    def from_pattern(cls, pattern: Pattern, device: torch.device | str | None = None) -> SparseLayout:
        pt, perm = pattern.transpose_order()

        def t(a) -> torch.Tensor:
            return torch.as_tensor(a.copy(), dtype=torch.int64, device=device)

        indices, t_indices, t_indptr = t(pattern.indices), t(pt.indices), t(pt.indptr)
        return cls(
            n_in=pattern.n_in,
            n_out=pattern.n_out,
            indptr=t(pattern.indptr),
            indices=indices,
            ell=indices.view(pattern.n_out, -1) if pattern.is_fixed_in_degree and pattern.edges else None,
            t_indices=t_indices,
            t_offsets=t_indptr[:-1],
            t_perm=t(perm),
            t_ell=t_indices.view(pattern.n_in, -1) if pt.is_fixed_in_degree and pattern.edges else None,
            t_indptr=t_indptr,
            group=shared_index_group(pattern),
            t_group=shared_index_group(pt),
        )

    @property
    def edges(self) -> int:
        return int(self.indices.numel())

    @property
    def offsets(self) -> torch.Tensor:
        return self.indptr[:-1]

    def to(self, device: torch.device | str) -> SparseLayout:
        """The same layout on another device."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return SparseLayout(**moved)


def gather_sum(ell: torch.Tensor | None, flat: torch.Tensor, offsets: torch.Tensor,
               table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[j] = sum_e weights[e] * table[idx[e]]`` over the edges of row ``j``.

    Args:
        ell: ``[rows, d]`` fixed-degree indices (fast path) or None.
        flat, offsets: CSR indices ``[edges]`` and row starts ``[rows]`` (used when ``ell`` is None).
        table: ``[n, batch]`` feature-major activations.
        weights: ``[edges]`` edge values in the same order as the indices.
    Returns:
        ``[rows, batch]``.
    """
    table = table.contiguous()
    if ell is not None:
        return F.embedding_bag(ell, table, per_sample_weights=weights.view(ell.shape), mode="sum")
    return F.embedding_bag(flat, table, offsets=offsets, per_sample_weights=weights, mode="sum",
                           include_last_offset=False)


def sddmm(layout: SparseLayout, grad_y_fm: torch.Tensor, x_fm: torch.Tensor) -> torch.Tensor:
    """Sampled product ``g[e] = <grad_y_fm[row(e)], x_fm[indices[e]]>``, shape ``[edges]``.

    ``grad_y_fm``: ``[n_out, batch]``; ``x_fm``: ``[n_in, batch]``.
    """
    # zeros, not empty: sampled_addmm multiplies the input by beta=0, and 0 * (uninitialised NaN) is NaN
    pattern = torch.sparse_csr_tensor(
        layout.indptr, layout.indices, torch.zeros(layout.edges, dtype=x_fm.dtype, device=x_fm.device),
        size=(layout.n_out, layout.n_in), check_invariants=False,
    )
    return torch.sparse.sampled_addmm(pattern, grad_y_fm, x_fm.t(), beta=0.0).values()


def shared_index_group(pattern: Pattern) -> int:
    """Largest ``G`` in (8, 4, 2) such that every ``G`` consecutive rows of ``pattern`` have identical index
    lists (fixed in-degree only), else 1."""
    if not pattern.edges or not pattern.is_fixed_in_degree:
        return 1
    ell = pattern.ell()
    for g in (8, 4, 2):
        if pattern.n_out % g == 0:
            blocks = ell.reshape(pattern.n_out // g, g, -1)
            if np.array_equal(blocks, np.broadcast_to(blocks[:, :1], blocks.shape)):
                return g
    return 1


def stock_spmm(layout: SparseLayout, values: torch.Tensor, x_fm: torch.Tensor, transposed: bool = False,
               bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """The pattern (or, with ``transposed``, its transpose) times ``x_fm``, plus ``bias[rows]`` per row when
    given, clamped to ``clamp = (lo, hi)`` when given; ``values`` in the pattern's edge order."""
    if transposed:
        y = gather_sum(layout.t_ell, layout.t_indices, layout.t_offsets, x_fm, values.index_select(0, layout.t_perm))
    else:
        y = gather_sum(layout.ell, layout.indices, layout.offsets, x_fm, values)
    if bias is not None:
        y.add_(bias[:, None])
    return y if clamp is None else y.clamp_(*clamp)


#: backend name -> (spmm, sddmm) with the signatures of :func:`stock_spmm` and :func:`sddmm`.
PRODUCTS = {"stock": (stock_spmm, sddmm), "native": (native.spmm, native.sddmm)}


class EllProduct(torch.autograd.Function):
    """``y_fm = W x_fm (+ bias[:, None])`` for the sparse ``W`` given by ``(layout, values)``; the bias is added
    inside the product (no extra pass over ``y``).

    The backend (:func:`~sparseforge.kernels.resolve_backend`) is chosen at forward time from the tensors'
    device and dtype and kept for the backward pass.
    """

    @staticmethod
    def forward(ctx, x_fm: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None,
                layout: SparseLayout) -> torch.Tensor:
        flat_values = values.reshape(-1)
        ctx.layout = layout
        ctx.products = PRODUCTS[resolve_backend(x_fm.device, x_fm.dtype)]
        ctx.save_for_backward(x_fm, flat_values)
        ctx.values_shape = values.shape
        return ctx.products[0](layout, flat_values, x_fm, bias=None if bias is None else bias.contiguous())

    @staticmethod
    def backward(ctx, grad_y_fm: torch.Tensor):
        layout: SparseLayout = ctx.layout
        spmm, sampled = ctx.products
        x_fm, flat_values = ctx.saved_tensors
        grad_y_fm = grad_y_fm.contiguous()
        grad_x = grad_v = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = spmm(layout, flat_values, grad_y_fm, transposed=True)
        if ctx.needs_input_grad[1]:
            grad_v = sampled(layout, grad_y_fm, x_fm).view(ctx.values_shape)
        if ctx.needs_input_grad[2]:
            grad_b = grad_y_fm.sum(1)
        return grad_x, grad_v, grad_b, None


def sparse_matmul_fm(x_fm: torch.Tensor, values: torch.Tensor, layout: SparseLayout,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable ``[n_out, batch] = W[n_out, n_in] @ x_fm[n_in, batch] (+ bias[n_out, None])`` for a
    sparse ``W``.

    ``values`` holds one entry per edge in CSR order, shaped ``[edges]`` or ``[n_out, d_in]``.
    """
    _check_operands(x_fm, values, layout, bias)
    return EllProduct.apply(x_fm, values, bias, layout)


@torch.no_grad()
def sparse_inference_fm(x_fm: torch.Tensor, values: torch.Tensor, layout: SparseLayout,
                        bias: torch.Tensor | None = None, clamp: tuple[float, float] | None = None) -> torch.Tensor:
    """Inference only (no autograd): ``[n_out, batch] = clamp(W @ x_fm + bias[:, None], lo, hi)``.

    The bias and the clamp (e.g. ``(0, 32)``: a ReLU capped at 32, as in the Sparse DNN Graph Challenge) are
    applied inside the product while each output row is in cache, so a layer costs one pass over its output.
    """
    _check_operands(x_fm, values, layout, bias)
    if clamp is not None and not (len(clamp) == 2 and clamp[0] <= clamp[1]):
        raise ValueError(f"clamp must be (lo, hi) with lo <= hi, got {clamp!r}")
    spmm = PRODUCTS[resolve_backend(x_fm.device, x_fm.dtype)][0]
    return spmm(layout, values.reshape(-1), x_fm, bias=bias, clamp=None if clamp is None else tuple(map(float, clamp)))


def _check_operands(x_fm: torch.Tensor, values: torch.Tensor, layout: SparseLayout, bias: torch.Tensor | None) -> None:
    if x_fm.dim() != 2 or x_fm.shape[0] != layout.n_in:
        raise ValueError(f"x_fm must be [n_in={layout.n_in}, batch], got {tuple(x_fm.shape)}")
    if values.numel() != layout.edges or values.dtype != x_fm.dtype:
        raise ValueError(f"values must hold one {x_fm.dtype} per edge ({layout.edges}), got "
                         f"{values.numel()} of {values.dtype}")
    if bias is not None and (bias.shape != (layout.n_out,) or bias.dtype != x_fm.dtype):
        raise ValueError(f"bias must be [n_out={layout.n_out}] of {x_fm.dtype}, got {tuple(bias.shape)} of {bias.dtype}")
