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
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from ..topology import Pattern
from . import native, triton_ell
from .backend import resolve_backend

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
        block: ``b`` when the pattern is made of dense ``b x b`` blocks at multiples of ``b`` (b in 16, 8, 4,
            :func:`block_size`; its transpose then is one too), else 1; the native CPU kernels then run the
            register-blocked block kernels (``csrc/block.cpp``).

    Every invariant is checked when a layout is built (also through ``dataclasses.replace`` and :meth:`to`):
    a layout that exists is safe to hand to the kernels, which only re-check sizes. A broken one raises
    :class:`ValueError` naming the field and what is wrong (O(edges) work, once per layout).
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
    block: int = 1

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
            block=block_size(pattern),
        )

    def __post_init__(self) -> None:
        _validate(self)

    @classmethod
    def _unchecked(cls, **values) -> SparseLayout:
        """A layout from fields already validated (inside the registered ops): no O(edges) checks."""
        layout = object.__new__(cls)
        layout.__dict__.update(_DEFAULTS, **values)  # not setattr: the dataclass is frozen (and this is hot)
        return layout

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


_DEFAULTS = {f.name: f.default for f in fields(SparseLayout)}


def _validate(layout: SparseLayout) -> None:
    """Raise ValueError unless ``layout`` is a consistent pattern + transpose (see :class:`SparseLayout`)."""
    def bad(field: str, what: str) -> ValueError:
        return ValueError(f"SparseLayout.{field}: {what}")

    for name in ("n_in", "n_out", "group", "t_group", "block"):
        v = getattr(layout, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise bad(name, f"must be a positive int, got {v!r}")
    tensors = {f.name: getattr(layout, f.name) for f in fields(layout)
               if f.name not in ("n_in", "n_out", "group", "t_group", "block")}
    device = None
    for name, t in tensors.items():
        if t is None and name in ("ell", "t_ell"):
            continue
        if not isinstance(t, torch.Tensor):
            raise bad(name, f"must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype != torch.int64:
            raise bad(name, f"must be int64, got {t.dtype}")
        if device is None:
            device = t.device
        elif t.device != device:
            raise bad(name, f"is on {t.device}, the other index tensors on {device}")
    n_in, n_out = layout.n_in, layout.n_out
    for name, n, idx_name, bound in (("indptr", n_out, "indices", n_in), ("t_indptr", n_in, "t_indices", n_out)):
        ptr, idx = tensors[name], tensors[idx_name]
        if ptr.dim() != 1 or ptr.numel() != n + 1:
            raise bad(name, f"must be 1-D with {n + 1} entries, got shape {tuple(ptr.shape)}")
        if idx.dim() != 1:
            raise bad(idx_name, f"must be 1-D, got shape {tuple(idx.shape)}")
        if int(ptr[0]) != 0 or int(ptr[-1]) != idx.numel():
            raise bad(name, f"must run from 0 to edges={idx.numel()}, got {int(ptr[0])} .. {int(ptr[-1])}")
        if n and bool((ptr[1:] < ptr[:-1]).any()):
            raise bad(name, "must be non-decreasing")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= bound):
            raise bad(idx_name, f"must lie in [0, {bound}), got [{int(idx.min())}, {int(idx.max())}]")
    edges = tensors["indices"].numel()
    if tensors["t_indices"].numel() != edges or tensors["t_perm"].shape != (edges,):
        raise bad("t_perm", f"the transpose must have edges={edges} entries, got t_indices "
                  f"{tuple(tensors['t_indices'].shape)}, t_perm {tuple(tensors['t_perm'].shape)}")
    if not torch.equal(tensors["t_offsets"], tensors["t_indptr"][:-1]):
        raise bad("t_offsets", "must equal t_indptr[:-1]")
    perm = tensors["t_perm"]
    if edges:
        if int(perm.min()) < 0 or int(perm.max()) >= edges or bool(
                (torch.bincount(perm, minlength=edges) != 1).any()):
            raise bad("t_perm", f"must be a permutation of range({edges})")
        rows = torch.repeat_interleave(torch.arange(n_out, device=device), tensors["indptr"].diff())
        t_rows = torch.repeat_interleave(torch.arange(n_in, device=device), tensors["t_indptr"].diff())
        if not (torch.equal(tensors["t_indices"], rows[perm]) and torch.equal(t_rows, tensors["indices"][perm])):
            raise bad("t_perm", "the transposed pattern (t_indptr, t_indices, t_perm) is not the transpose of "
                      "(indptr, indices)")
    for name, ptr, idx, n, ell in (("group", "indptr", "indices", n_out, "ell"),
                                   ("t_group", "t_indptr", "t_indices", n_in, "t_ell")):
        g, ptr_t, idx_t, ell_t = getattr(layout, name), tensors[ptr], tensors[idx], tensors[ell]
        deg = ptr_t.diff()
        fixed = bool(deg.numel() == 0 or (deg == deg[0]).all())
        if ell_t is not None:
            d = int(deg[0]) if deg.numel() else 0
            if not fixed or tuple(ell_t.shape) != (n, d) or not torch.equal(ell_t.reshape(-1), idx_t):
                raise bad(ell, f"must be None or indices viewed as [{n}, in-degree] of a fixed-degree pattern")
        if g == 1:
            continue
        if g not in (2, 4, 8) or n % g:
            raise bad(name, f"must be 1, 2, 4 or 8 and divide the {n} rows, got {g}")
        if not fixed or (idx_t.numel() and not bool(
                (idx_t.view(n // g, g, -1) == idx_t.view(n // g, g, -1)[:, :1]).all())):
            raise bad(name, f"claims every {g} consecutive rows share one index list, but they do not")
    b = layout.block
    if b != 1:
        if b not in BLOCK_KERNEL_SIZES:
            raise bad("block", f"must be 1 or one of {', '.join(map(str, BLOCK_KERNEL_SIZES))}, got {b}")
        if not _is_block(tensors["indptr"].cpu().numpy(), tensors["indices"].cpu().numpy(), n_in, n_out, b):
            raise bad("block", f"claims the pattern is made of dense {b} x {b} blocks at multiples of {b}, but it is not")


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
    with warnings.catch_warnings():  # torch warns that CSR tensors are beta; scoped, not a global filter
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
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


#: Block sizes with native block kernels, largest first (topology/block.py makes 4, 8 and 16).
BLOCK_KERNEL_SIZES = (16, 8, 4)


def _is_block(indptr: np.ndarray, indices: np.ndarray, n_in: int, n_out: int, b: int) -> bool:
    """True when the CSR pattern is a union of dense ``b x b`` blocks whose corners are multiples of ``b``: every
    ``b`` consecutive rows have one index list, made of runs ``c*b, c*b + 1, ..., c*b + b - 1`` (O(edges))."""
    if n_in % b or n_out % b:
        return False
    deg = np.diff(indptr)
    if bool((deg % b).any()) or bool((deg.reshape(-1, b) != deg[::b, None]).any()):
        return False
    if not indices.size:
        return True
    runs = indices.reshape(-1, b)  # each row is whole runs (deg % b == 0), so no run straddles two rows
    if bool((runs[:, 0] % b).any()) or not np.array_equal(runs, runs[:, :1] + np.arange(b)):
        return False
    rows = np.repeat(np.arange(n_out), deg)
    lead = indptr[rows - rows % b] + (np.arange(indices.size) - indptr[rows])  # same place in the first row
    return bool(np.array_equal(indices, indices[lead]))


def block_size(pattern: Pattern) -> int:
    """Largest ``b`` in :data:`BLOCK_KERNEL_SIZES` such that ``pattern`` is made of dense ``b x b`` blocks at
    multiples of ``b`` (a block pattern, :func:`sparseforge.topology.block`), else 1."""
    if not pattern.edges:
        return 1
    for b in BLOCK_KERNEL_SIZES:
        if _is_block(pattern.indptr, pattern.indices, pattern.n_in, pattern.n_out, b):
            return b
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
PRODUCTS = {"stock": (stock_spmm, sddmm), "native": (native.spmm, native.sddmm),
            "triton": (triton_ell.spmm, triton_ell.sddmm)}
