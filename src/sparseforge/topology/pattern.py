"""The one representation of a junction's connectivity.

A junction connects ``n_in`` left nodes to ``n_out`` right nodes. Following PyTorch's weight layout
(``weight[n_out, n_in]``), a :class:`Pattern` stores, for every right node (row), the sorted list of
left nodes (columns) it reads from, in CSR form (``indptr[n_out + 1]``, ``indices[edges]``).

When every right node has the same in-degree ``d_in`` (the pre-defined sparse case), the CSR arrays
are exactly an ELL array of shape ``[n_out, d_in]`` read row by row: :meth:`Pattern.ell` returns that
view, the fast path for the kernels. Variable in-degree (pruned patterns) keeps the general CSR form.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


class TopologyError(ValueError):
    """An impossible or malformed connectivity specification; the message says what would work."""


@dataclass(frozen=True, eq=False)
class Pattern:
    """Connectivity of one junction (which edges exist; no weights).

    Attributes:
        n_in: number of left (input) nodes.
        n_out: number of right (output) nodes.
        indptr: int64 ``[n_out + 1]``; row ``j`` owns ``indices[indptr[j]:indptr[j+1]]``.
        indices: int64 ``[edges]``; left node of each edge, strictly increasing within a row.
    """

    n_in: int
    n_out: int
    indptr: np.ndarray
    indices: np.ndarray

    def __post_init__(self) -> None:
        indptr = np.ascontiguousarray(self.indptr, dtype=np.int64)
        indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)
        if self.n_in < 1 or self.n_out < 1:
            raise TopologyError(f"pattern sizes must be positive, got n_in={self.n_in}, n_out={self.n_out}")
        if indptr.shape != (self.n_out + 1,) or indptr[0] != 0 or indptr[-1] != indices.size:
            raise TopologyError(
                f"indptr must have n_out+1={self.n_out + 1} entries from 0 to edges={indices.size}, "
                f"got shape {indptr.shape}"
            )
        if np.any(np.diff(indptr) < 0):
            raise TopologyError("indptr must be non-decreasing")
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_in):
            raise TopologyError(f"indices must lie in [0, n_in={self.n_in}), got [{indices.min()}, {indices.max()}]")
        # strictly increasing within each row: no duplicate edges
        inner = np.ones(indices.size, dtype=bool)
        inner[indptr[1:-1][indptr[1:-1] < indices.size]] = False
        if indices.size > 1 and np.any((np.diff(indices) <= 0) & inner[1:]):
            raise TopologyError("indices must be strictly increasing within each row (no duplicate edges)")
        indptr.setflags(write=False)
        indices.setflags(write=False)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_ell(cls, ell: np.ndarray, n_in: int) -> Pattern:
        """From a fixed in-degree index array ``[n_out, d_in]`` (rows are sorted here)."""
        ell = np.sort(np.asarray(ell, dtype=np.int64), axis=1)
        if ell.ndim != 2:
            raise TopologyError(f"ELL indices must be 2-D [n_out, d_in], got shape {ell.shape}")
        n_out, d_in = ell.shape
        return cls(n_in, n_out, np.arange(n_out + 1, dtype=np.int64) * d_in, ell.reshape(-1))

    @classmethod
    def from_dense(cls, mask: np.ndarray) -> Pattern:
        """From a boolean (or nonzero) matrix ``[n_out, n_in]``."""
        mask = np.asarray(mask) != 0
        if mask.ndim != 2:
            raise TopologyError(f"mask must be 2-D [n_out, n_in], got shape {mask.shape}")
        rows, cols = np.nonzero(mask)
        indptr = np.zeros(mask.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=mask.shape[0]), out=indptr[1:])
        return cls(mask.shape[1], mask.shape[0], indptr, cols)

    @classmethod
    def from_edges(cls, rows: np.ndarray, cols: np.ndarray, n_in: int, n_out: int) -> Pattern:
        """From edge lists (right node ``rows[e]`` reads left node ``cols[e]``); duplicates are an error."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if rows.shape != cols.shape or rows.ndim != 1:
            raise TopologyError(f"rows and cols must be 1-D of equal length, got {rows.shape} and {cols.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= n_out):
            raise TopologyError(f"rows must lie in [0, n_out={n_out})")
        order = np.lexsort((cols, rows))
        rows, cols = rows[order], cols[order]
        indptr = np.zeros(n_out + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_out), out=indptr[1:])
        return cls(n_in, n_out, indptr, cols)

    @classmethod
    def full(cls, n_in: int, n_out: int) -> Pattern:
        """The fully-connected junction (density 1)."""
        return cls.from_ell(np.broadcast_to(np.arange(n_in), (n_out, n_in)), n_in)

    # ------------------------------------------------------------------ structure
    @property
    def shape(self) -> tuple[int, int]:
        """``(n_out, n_in)``, the shape of the junction's weight matrix."""
        return (self.n_out, self.n_in)

    @property
    def edges(self) -> int:
        """Number of connections (weights)."""
        return int(self.indices.size)

    @property
    def density(self) -> float:
        """edges / (n_in * n_out), in [0, 1]."""
        return self.edges / (self.n_in * self.n_out)

    @cached_property
    def in_degrees(self) -> np.ndarray:
        """int64 ``[n_out]``: edges into each right node."""
        return np.diff(self.indptr)

    @cached_property
    def out_degrees(self) -> np.ndarray:
        """int64 ``[n_in]``: edges out of each left node."""
        return np.bincount(self.indices, minlength=self.n_in)

    @property
    def is_fixed_in_degree(self) -> bool:
        """True when every right node has the same in-degree (the ELL fast path applies)."""
        deg = self.in_degrees
        return bool(deg.size == 0 or (deg == deg[0]).all())

    @property
    def is_fixed_out_degree(self) -> bool:
        deg = self.out_degrees
        return bool((deg == deg[0]).all())

    @property
    def d_in(self) -> int:
        """The common in-degree; raises when degrees vary."""
        if not self.is_fixed_in_degree:
            raise TopologyError("pattern has variable in-degree; use in_degrees or the CSR arrays")
        return int(self.in_degrees[0])

    @property
    def d_out(self) -> int:
        """The common out-degree; raises when degrees vary."""
        if not self.is_fixed_out_degree:
            raise TopologyError("pattern has variable out-degree; use out_degrees")
        return int(self.out_degrees[0])

    @property
    def rows(self) -> np.ndarray:
        """int64 ``[edges]``: right node of each edge (CSR order)."""
        return np.repeat(np.arange(self.n_out, dtype=np.int64), self.in_degrees)

    def ell(self) -> np.ndarray:
        """Fixed in-degree index array ``[n_out, d_in]`` (a view of ``indices``)."""
        return self.indices.reshape(self.n_out, self.d_in)

    def padded_ell(self) -> tuple[np.ndarray, np.ndarray]:
        """ELL padded to the largest in-degree: ``(indices [n_out, d_max], valid [n_out, d_max])``.

        Padded slots point at left node 0 and are marked ``valid=False``.
        """
        deg = self.in_degrees
        d_max = int(deg.max()) if deg.size else 0
        valid = np.arange(d_max)[None, :] < deg[:, None]
        idx = np.zeros((self.n_out, d_max), dtype=np.int64)
        idx[valid] = self.indices
        return idx, valid

    def to_dense(self) -> np.ndarray:
        """Boolean adjacency ``[n_out, n_in]``."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.rows, self.indices] = True
        return mask

    def transpose_order(self) -> tuple[Pattern, np.ndarray]:
        """The transposed pattern (left and right swapped) and the edge permutation.

        Returns ``(pt, perm)`` where ``pt`` has ``n_in=self.n_out``, ``n_out=self.n_in`` and edge ``e`` of
        ``pt`` (CSR order) is edge ``perm[e]`` of ``self``. Used once per layer for the backward pass.
        """
        perm = np.lexsort((self.rows, self.indices))
        return Pattern.from_edges(self.indices[perm], self.rows[perm], n_in=self.n_out, n_out=self.n_in), perm

    def transpose(self) -> Pattern:
        return self.transpose_order()[0]

    def save(self, path) -> None:
        """Write to one ``.npz`` file (see :mod:`.storage`: versioned, checksummed, atomic)."""
        from .storage import save_topology

        save_topology(self, path)

    @classmethod
    def load(cls, path) -> Pattern:
        """Read a file written by :meth:`save`; a damaged or mismatched file raises :class:`TopologyError`."""
        from .storage import load_topology

        return load_topology(path, kind="pattern")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return (
            self.shape == other.shape
            and np.array_equal(self.indptr, other.indptr)
            and np.array_equal(self.indices, other.indices)
        )

    def __hash__(self) -> int:
        return hash((self.shape, self.indptr.tobytes(), self.indices.tobytes()))

    def __repr__(self) -> str:
        deg = f"d_in={self.d_in}" if self.is_fixed_in_degree else "variable in-degree"
        return f"Pattern(n_in={self.n_in}, n_out={self.n_out}, edges={self.edges}, {deg}, density={self.density:.4g})"
