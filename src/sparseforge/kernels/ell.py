"""Sparse x dense products for a junction's pattern, built from stock PyTorch ops (the portable path).

Activations are *feature-major*: ``x_fm`` has shape ``[n_in, batch]``, so each left node's activations
are one contiguous row. For a pattern with CSR arrays ``(indptr, indices)`` and edge values ``values``
(``[edges]``, CSR order), the three products of a training step are

* forward:     ``y_fm[j] = sum_e values[e] * x_fm[indices[e]]`` over the edges ``e`` of right node ``j``
  (an ``embedding_bag`` with the activations as the table and right nodes as bags);
* grad input:  the same product over the transposed pattern, with ``values`` permuted once into its order;
* grad values: ``g[e] = <grad_y_fm[row(e)], x_fm[indices[e]]>`` (a sampled dense-dense product, SDDMM).

Every product costs O(edges * batch) time and O(edges) extra memory; nothing is ever densified.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..topology import Pattern

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

    @classmethod
    def from_pattern(cls, pattern: Pattern, device: torch.device | str | None = None) -> SparseLayout:
        pt, perm = pattern.transpose_order()

        def t(a) -> torch.Tensor:
            return torch.as_tensor(a.copy(), dtype=torch.int64, device=device)

        indices, t_indices = t(pattern.indices), t(pt.indices)
        return cls(
            n_in=pattern.n_in,
            n_out=pattern.n_out,
            indptr=t(pattern.indptr),
            indices=indices,
            ell=indices.view(pattern.n_out, -1) if pattern.is_fixed_in_degree and pattern.edges else None,
            t_indices=t_indices,
            t_offsets=t(pt.indptr[:-1]),
            t_perm=t(perm),
            t_ell=t_indices.view(pattern.n_in, -1) if pt.is_fixed_in_degree and pattern.edges else None,
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
    pattern = torch.sparse_csr_tensor(
    # zeros, not empty: sampled_addmm multiplies the input by beta=0, and 0 * (uninitialised NaN) is NaN
        layout.indptr, layout.indices, torch.zeros(layout.edges, dtype=x_fm.dtype, device=x_fm.device),
        size=(layout.n_out, layout.n_in), check_invariants=False,
    )
    return torch.sparse.sampled_addmm(pattern, grad_y_fm, x_fm.t(), beta=0.0).values()


class EllProduct(torch.autograd.Function):
    """``y_fm = W x_fm`` for the sparse ``W`` given by ``(layout, values)``; stock-ops implementation."""

    @staticmethod
    def forward(ctx, x_fm: torch.Tensor, values: torch.Tensor, layout: SparseLayout) -> torch.Tensor:
        flat_values = values.reshape(-1)
        ctx.layout = layout
        ctx.save_for_backward(x_fm, flat_values)
        ctx.values_shape = values.shape
        return gather_sum(layout.ell, layout.indices, layout.offsets, x_fm, flat_values)

    @staticmethod
    def backward(ctx, grad_y_fm: torch.Tensor):
        layout: SparseLayout = ctx.layout
        x_fm, flat_values = ctx.saved_tensors
        grad_y_fm = grad_y_fm.contiguous()
        grad_x = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_x = gather_sum(layout.t_ell, layout.t_indices, layout.t_offsets, grad_y_fm,
                                flat_values[layout.t_perm])
        if ctx.needs_input_grad[1]:
            grad_v = sddmm(layout, grad_y_fm, x_fm).view(ctx.values_shape)
        return grad_x, grad_v, None


def sparse_matmul_fm(x_fm: torch.Tensor, values: torch.Tensor, layout: SparseLayout) -> torch.Tensor:
    """Differentiable ``[n_out, batch] = W[n_out, n_in] @ x_fm[n_in, batch]`` for a sparse ``W``.

    ``values`` holds one entry per edge in CSR order, shaped ``[edges]`` or ``[n_out, d_in]``.
    """
    if x_fm.dim() != 2 or x_fm.shape[0] != layout.n_in:
        raise ValueError(f"x_fm must be [n_in={layout.n_in}, batch], got {tuple(x_fm.shape)}")
    return EllProduct.apply(x_fm, values, layout)
