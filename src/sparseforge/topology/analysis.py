"""Measures of a junction's or a network's connectivity (numpy/scipy only, no plotting).

Definitions used throughout (a junction is a biadjacency ``A[n_out, n_in]``, weight orientation):

* **Degrees / density**: in-degree of right node ``i`` = ``sum_j A[i, j]``, out-degree of left node ``j`` =
  ``sum_i A[i, j]``; density = edges / (n_in n_out).
* **Path counts** of a network ``A_1, ..., A_L``: ``C = A_L ... A_1`` (``[N_L, N_0]``); ``C[o, i]`` is the number
  of distinct input-to-output paths from input ``i`` to output ``o``. Exact integers (int64, with an
  a-priori overflow bound). Connectivity = fraction of pairs with ``C > 0``; symmetry = min / max / coefficient
  of variation (std / mean) of ``C`` over all pairs (cv 0 and min == max: every pair equally connected).
* **Spectral gap** of a junction: ``1 - sigma_2 / sigma_1`` with ``sigma_1 >= sigma_2`` the two largest
  singular values of ``A`` (as a 0/1 float matrix). The bipartite graph's adjacency ``[[0, A], [A^T, 0]]``
  has eigenvalues ``+-sigma_i``, so this is the usual normalised gap ``1 - lambda_2 / lambda_1`` of the
  bipartite graph. In [0, 1]: 0 when the junction falls apart into equally strong components (e.g.
  block-diagonal), 1 for a rank-one (complete bipartite) junction; for a ``(d_in, d_out)``-biregular
  junction ``sigma_1 = sqrt(d_in d_out)`` and a random one is near the Ramanujan value
  ``sigma_2 ~ sqrt(d_in - 1) + sqrt(d_out - 1)``. A junction with ``min(n_in, n_out) = 1`` has gap 1.
  The *end-to-end* gap applies the same formula to the path-count matrix ``C``.
* **Scatter** (Dey, Huang, Beerel & Chugg, "Characterizing sparse connectivity patterns in neural
  networks", arXiv:1711.02131, and the ``scatter``/``scatter_net`` functions of their released code):
  split the left layer into windows (default: ``k`` contiguous, near-equal windows, ``k`` = the mean
  in-degree rounded, clipped to ``[1, n_in]``). For right node ``i`` and window ``w``, count the
  connections (or paths) from ``w`` into ``i``; the *ideal* count is ``dbar |w| / n_in`` with ``dbar``
  the mean in-degree (mean row sum; for a fixed in-degree and ``k = d_in`` equal windows the ideal is
  exactly one connection per window). Node score = mean over windows of ``min(count / ideal, 1)``, i.e.
  the fraction of windows the node "sees" as well as an evenly spread node would; the scatter is the mean
  node score. *Forward* scatter: right nodes w.r.t. windows of the left layer; *backward*: left nodes
  w.r.t. windows of the right layer (the same on ``A^T``). A network's scatter vector holds forward and
  backward values for each junction and for the equivalent input-output junction ``C`` (path counts
  count with multiplicity, as in Dey's code); its minimum is the single figure (the bottleneck). Dey's
  experiments use image windows for the input layer; pass ``windows`` explicitly for that.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from .network import NetworkTopology
from .pattern import Pattern, TopologyError

__all__ = [
    "contiguous_windows",
    "degree_stats",
    "junction_stats",
    "network_scatter",
    "node_scatter",
    "path_counts",
    "path_stats",
    "scatter",
    "singular_values",
    "spectral_gap",
    "summarize",
    "to_sparse",
]

Matrix = Pattern | np.ndarray | sp.sparray | sp.spmatrix
Windows = int | Sequence[Sequence[int]] | Sequence[np.ndarray] | None

_INT64_MAX = np.iinfo(np.int64).max
_DENSE_SVD_MAX = 250_000  # entries; above this the sparse (ARPACK) path is used (much faster here)


# ---------------------------------------------------------------------------------------------- basics
def to_sparse(p: Pattern, dtype: type = np.int64) -> sp.csr_array:
    """The junction as a scipy CSR array ``[n_out, n_in]`` of ones (``dtype``)."""
    data = np.ones(p.edges, dtype=dtype)
    return sp.csr_array((data, p.indices, p.indptr), shape=p.shape)


def _stats(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"min": 0, "max": 0, "mean": 0.0}
    return {"min": int(x.min()), "max": int(x.max()), "mean": float(x.mean())}


def degree_stats(p: Pattern) -> dict:
    """``{"in": {min, max, mean}, "out": {min, max, mean}}`` of a junction's degrees."""
    return {"in": _stats(p.in_degrees), "out": _stats(p.out_degrees)}


# ---------------------------------------------------------------------------------------------- paths
def path_counts(net: NetworkTopology | Sequence[Pattern], *, exact: bool = True) -> np.ndarray:
    """Number of paths from every input to every output: ``C = A_L ... A_1``, shape ``[N_L, N_0]``.

    Args:
        net: a network (or its patterns, input junction first).
        exact: int64 result. An upper bound on every entry (the product of the junctions' maximal
            in-degrees) is checked first; if it exceeds int64, ``OverflowError`` is raised. With
            ``exact=False`` the product is taken in float64 (relative error ~1e-16 per operation, no
            overflow below ~1e308).
    """
    patterns = list(net.patterns if isinstance(net, NetworkTopology) else net)
    if not patterns:
        raise TopologyError("path_counts: the network has no junctions")
    for a, b in zip(patterns[:-1], patterns[1:]):
        if a.n_out != b.n_in:
            raise TopologyError(f"path_counts: junction sizes do not chain ({a.n_out} != {b.n_in})")
    bound = 1
    for p in patterns:
        bound *= int(p.in_degrees.max()) if p.n_out else 0
    if exact and bound > _INT64_MAX:
        raise OverflowError(
            f"path counts may reach {bound} (product of maximal in-degrees) > int64 max {_INT64_MAX}; "
            "pass exact=False for float64 counts"
        )
    dtype = np.int64 if exact else np.float64
    c = to_sparse(patterns[0], dtype)
    for p in patterns[1:]:
        c = to_sparse(p, dtype) @ c
    return np.asarray(c.toarray())


def path_stats(counts: np.ndarray) -> dict:
    """Connectivity and symmetry of a path-count matrix ``[N_L, N_0]`` (JSON-ready).

    Returns ``connectivity`` (fraction of pairs with at least one path), ``min``, ``max``, ``mean``,
    ``std``, ``cv`` (std / mean; None when mean is 0), ``uniform`` (min == max) and ``total`` paths.
    """
    c = np.asarray(counts)
    num = (lambda v: int(v)) if np.issubdtype(c.dtype, np.integer) else (lambda v: float(v))
    mean = float(c.mean(dtype=np.float64))
    std = float(c.std(dtype=np.float64))
    return {
        "connectivity": float(np.count_nonzero(c) / c.size),
        "min": num(c.min()),
        "max": num(c.max()),
        "mean": mean,
        "std": std,
        "cv": std / mean if mean > 0 else None,
        "uniform": bool(c.min() == c.max()),
        "total": int(c.sum(dtype=object)) if np.issubdtype(c.dtype, np.integer) else float(c.sum()),
    }


# ---------------------------------------------------------------------------------------------- spectra
def _as_float_matrix(a: Matrix) -> np.ndarray | sp.csr_array:
    if isinstance(a, Pattern):
        return to_sparse(a, np.float64)
    if sp.issparse(a):
        return sp.csr_array(a, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise TopologyError(f"expected a 2-D matrix [n_out, n_in], got shape {a.shape}")
    return a


def singular_values(a: Matrix, k: int = 2, method: Literal["auto", "dense", "sparse"] = "auto") -> np.ndarray:
    """The ``k`` largest singular values of a junction ``[n_out, n_in]`` (descending; zeros padded when
    the matrix has fewer than ``k``).

    ``method="dense"``: LAPACK on the dense matrix; ``"sparse"``: ARPACK (``scipy.sparse.linalg.svds``,
    deterministic start vector, converged to machine precision); ``"auto"``: dense up to 250,000 entries
    or when ``k >= min(shape)`` (ARPACK needs ``k < min(shape)``), sparse above.
    """
    m = _as_float_matrix(a)
    n_small = min(m.shape)
    if method not in ("auto", "dense", "sparse"):
        raise TopologyError(f"method={method!r} must be 'auto', 'dense' or 'sparse'")
    if (m.count_nonzero() if sp.issparse(m) else np.count_nonzero(m)) == 0:
        return np.zeros(k)
    small = m.shape[0] * m.shape[1] <= _DENSE_SVD_MAX
    use_dense = method == "dense" or k >= n_small or (method == "auto" and small)
    if use_dense:
        dense = m.toarray() if sp.issparse(m) else m
        s = np.linalg.svd(dense, compute_uv=False)
    else:
        v0 = np.random.default_rng(0).random(n_small) + 0.5
        s = svds(sp.csr_array(m) if not sp.issparse(m) else m, k=k, v0=v0, return_singular_vectors=False,
                 solver="arpack", tol=0, maxiter=max(2000, 20 * n_small))
    s = np.sort(np.abs(s))[::-1][:k]
    return np.pad(s, (0, k - s.size))


def spectral_gap(a: Matrix, method: Literal["auto", "dense", "sparse"] = "auto") -> float:
    """Normalised spectral gap ``1 - sigma_2 / sigma_1`` of a junction or path-count matrix (see module
    docstring); 0.0 for an empty matrix, clipped to [0, 1] against round-off."""
    return _gap(singular_values(a, 2, method))


def _gap(s: np.ndarray) -> float:
    if s[0] <= 0:
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - s[1] / s[0])))


# ---------------------------------------------------------------------------------------------- scatter
def contiguous_windows(n: int, k: int) -> list[np.ndarray]:
    """``k`` contiguous windows covering ``range(n)``, sizes differing by at most one."""
    if not 1 <= k <= n:
        raise TopologyError(f"contiguous_windows: need 1 <= k <= n, got k={k}, n={n}")
    return np.array_split(np.arange(n, dtype=np.int64), k)


def _window_matrix(n: int, windows: Sequence[np.ndarray]) -> sp.csr_array:
    """Indicator ``[n, n_windows]``: entry (j, w) = 1 when node j lies in window w."""
    rows = np.concatenate([np.asarray(w, dtype=np.int64) for w in windows])
    cols = np.repeat(np.arange(len(windows)), [len(w) for w in windows])
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise TopologyError(f"windows must hold indices in [0, {n})")
    return sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, len(windows)))


def node_scatter(a: Matrix, windows: Windows = None) -> np.ndarray:
    """Dey's window score of every right node (row) of ``a`` ``[n_out, n_in]``, float64 ``[n_out]`` in [0, 1].

    Args:
        a: a Pattern, or a (dense or sparse) matrix of connection or path counts.
        windows: None (``round(mean row sum)`` contiguous windows, clipped to ``[1, n_in]``), an int
            (that many contiguous windows), or a sequence of index arrays over the columns (windows may
            overlap or leave columns out, as Dey's strided image windows do).
    """
    m = _as_float_matrix(a)
    n_out, n_in = m.shape
    total = float(m.sum())
    dbar = total / n_out
    if windows is None or isinstance(windows, (int, np.integer)):
        k = int(round(dbar)) if windows is None else int(windows)
        wins = contiguous_windows(n_in, int(min(max(k, 1), n_in)))
    else:
        wins = [np.asarray(w, dtype=np.int64) for w in windows]
        if not wins or any(w.size == 0 for w in wins):
            raise TopologyError("windows must be a non-empty sequence of non-empty index arrays")
    s = _window_matrix(n_in, wins)
    counts = m @ s  # [n_out, n_windows]
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    if dbar == 0:
        return np.zeros(n_out)
    ideal = dbar * np.array([w.size for w in wins], dtype=np.float64) / n_in
    return np.minimum(counts / ideal[None, :], 1.0).mean(axis=1)


def scatter(a: Matrix, windows: Windows = None) -> float:
    """Mean of :func:`node_scatter` over the right nodes (Dey's forward scatter of ``a``; pass ``a.T`` or
    ``pattern.transpose()`` for the backward scatter)."""
    return float(node_scatter(a, windows).mean())


def _transpose(a: Matrix) -> Matrix:
    return a.transpose() if isinstance(a, Pattern) else a.T


def network_scatter(net: NetworkTopology, counts: np.ndarray | None = None) -> dict:
    """Dey's scatter vector of a network with default windows (JSON-ready).

    Returns ``forward`` / ``backward`` (one value per junction), ``io_forward`` / ``io_backward`` (the
    equivalent input-output junction, i.e. the path-count matrix ``counts``, computed when not given) and
    ``min`` (the smallest of all values).
    """
    if counts is None:
        counts = path_counts(net, exact=False)
    fwd = [scatter(p) for p in net.patterns]
    bwd = [scatter(p.transpose()) for p in net.patterns]
    io_f = scatter(counts)
    io_b = scatter(np.asarray(counts).T)
    return {
        "forward": fwd,
        "backward": bwd,
        "io_forward": io_f,
        "io_backward": io_b,
        "min": float(min(fwd + bwd + [io_f, io_b])),
    }


# ---------------------------------------------------------------------------------------------- summary
def junction_stats(p: Pattern, *, spectral: bool = True) -> dict:
    """Sizes, edges, density, degree statistics, spectral gap (with sigma_1, sigma_2) and forward/backward
    scatter of one junction (JSON-ready)."""
    out: dict = {
        "n_in": p.n_in,
        "n_out": p.n_out,
        "edges": p.edges,
        "density": p.density,
        "in_degree": _stats(p.in_degrees),
        "out_degree": _stats(p.out_degrees),
        "fixed_in_degree": p.is_fixed_in_degree,
        "fixed_out_degree": p.is_fixed_out_degree,
    }
    if spectral:
        s = singular_values(p, 2)
        out.update(sigma_1=float(s[0]), sigma_2=float(s[1]), spectral_gap=_gap(s))
    out.update(scatter_forward=scatter(p), scatter_backward=scatter(p.transpose()))
    return out


def summarize(net: NetworkTopology, *, paths: bool = True, spectral: bool = True) -> dict:
    """Everything above for every junction and for the whole network, as a JSON-serialisable dict.

    Keys: ``family``, ``seed``, ``sizes``, ``edges``, ``fc_edges``, ``rho_net``, ``junctions`` (list of
    :func:`junction_stats` with ``junction`` = 1-based index), ``min_spectral_gap``; with ``paths``:
    ``paths`` (:func:`path_stats` of the path counts; int64 when they fit, else float64 with
    ``"exact": False``), ``end_to_end_spectral_gap`` (with ``spectral``) and ``scatter``
    (:func:`network_scatter`). ``paths=False`` skips the ``[N_L, N_0]`` path-count matrix for very
    large networks.
    """
    junctions = []
    for i, p in enumerate(net.patterns):
        junctions.append({"junction": i + 1, **junction_stats(p, spectral=spectral)})
    out: dict = {
        "family": net.family,
        "seed": net.seed if net.seed is None else int(net.seed),
        "sizes": [int(n) for n in net.sizes],
        "edges": int(net.edges),
        "fc_edges": int(net.fc_edges),
        "rho_net": float(net.rho_net),
        "junctions": junctions,
    }
    if spectral:
        out["min_spectral_gap"] = float(min(j["spectral_gap"] for j in junctions))
    if paths:
        try:
            counts = path_counts(net, exact=True)
            exact = True
        except OverflowError:
            counts = path_counts(net, exact=False)
            exact = False
        out["paths"] = {**path_stats(counts), "exact": exact}
        if spectral:
            out["end_to_end_spectral_gap"] = spectral_gap(counts)
        out["scatter"] = network_scatter(net, counts)
    return out
