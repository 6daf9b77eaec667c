"""Random expander junctions (X-Nets) and the grouped (block-diagonal) baseline they are compared with.

Prabhu, Varma & Namboodiri, "Deep Expander Networks: Efficient Deep Networks from Graph Theory" (ECCV
2018). Their X-Linear layer is a *random bipartite expander*: every node of one side picks ``D`` nodes of
the other side uniformly at random, without replacement. Here the right nodes pick (fixed in-degree
``d_in``, the ELL fast path; out-degrees vary, ``Binomial(n_out, d_in / n_in)`` each), or with
``side="out"`` the left nodes pick (fixed out-degree ``d_out``; in-degrees vary, CSR). The paper's code
lets the smaller layer pick; ``side="auto"`` does that.

The paper also mentions explicit (algebraic) expander constructions; they exist only for special sizes
and degrees and are not implemented here. The baseline the paper beats, grouped connections (as in
grouped convolutions), is :func:`block_diagonal`: same density, disconnected, spectral gap 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .generators import SeedLike, as_rng, check_degrees, register_family
from .pattern import Pattern, TopologyError

__all__ = ["block_diagonal", "expander", "sample_rows"]

_CHUNK = 1 << 22  # random keys drawn per chunk (32 MiB of float64)


def sample_rows(n_rows: int, n_choices: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_rows, k]`` int64: for every row, ``k`` distinct values of ``range(n_choices)``, each k-subset
    equally likely, independently per row; rows sorted.

    Uses the smallest ``k`` of ``n_choices`` i.i.d. uniform keys per row (chunked over rows so that
    memory stays bounded).
    """
    if not 0 <= k <= n_choices:
        raise TopologyError(f"cannot pick k={k} distinct values out of {n_choices}")
    out = np.empty((n_rows, k), dtype=np.int64)
    if k == 0:
        return out
    step = max(1, _CHUNK // max(n_choices, 1))
    for s in range(0, n_rows, step):
        e = min(n_rows, s + step)
        keys = rng.random((e - s, n_choices))
        if k < n_choices:
            part = np.argpartition(keys, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_choices), (e - s, n_choices))
        out[s:e] = np.sort(part, axis=1)
    return out


def expander(
    n_in: int,
    n_out: int,
    d_out: int,
    *,
    seed: SeedLike = 0,
    side: Literal["in", "out", "auto"] = "in",
) -> Pattern:
    """Random expander junction ``n_in -> n_out`` with mean out-degree ``d_out``.

    Args:
        n_in, n_out: layer sizes.
        d_out: out-degree; the in-degree ``d_in = n_in d_out / n_out`` must be an integer
            (:func:`check_degrees` names the out-degrees that work).
        seed: int or ``numpy.random.Generator``; the pattern is a deterministic function of it.
        side: ``"in"``: each right node samples its ``d_in`` left nodes uniformly without replacement
            (fixed in-degree ``d_in``, out-degree varies); ``"out"``: each left node samples ``d_out`` right
            nodes (fixed out-degree, in-degree varies); ``"auto"``: the smaller layer samples (as in the
            paper's code; ``"in"`` on ties).

    Returns:
        Pattern ``[n_out, n_in]`` with ``n_in * d_out`` edges (density ``d_out / n_out``).
    """
    d_in = check_degrees(n_in, n_out, d_out, "expander junction")
    rng = as_rng(seed)
    if side == "auto":
        side = "in" if n_out <= n_in else "out"
    if side == "in":
        return Pattern.from_ell(sample_rows(n_out, n_in, d_in, rng), n_in)
    if side == "out":
        cols = sample_rows(n_in, n_out, d_out, rng)  # [n_in, d_out]: right nodes of each left node
        left = np.repeat(np.arange(n_in, dtype=np.int64), d_out)
        return Pattern.from_edges(cols.reshape(-1), left, n_in, n_out)
    raise TopologyError(f"expander: side={side!r} must be 'in', 'out' or 'auto'")


def block_diagonal(n_in: int, n_out: int, d_out: int, *, seed: SeedLike = None) -> Pattern:
    """Grouped connections: ``g = n_out / d_out`` groups, group ``k`` = left nodes
    ``[k n_in/g, (k+1) n_in/g)`` fully connected to right nodes ``[k d_out, (k+1) d_out)``.

    The same density and constant degrees (in ``d_in = n_in / g``, out ``d_out``) as a structured or
    expander junction, but ``g`` disconnected components: ``kron(eye(g), ones(d_out, d_in))``. ``seed`` is
    ignored (deterministic). Needs ``d_out`` to divide ``n_out`` and ``g`` to divide ``n_in``.
    """
    d_in = check_degrees(n_in, n_out, d_out, "block-diagonal junction")
    if n_out % d_out or n_in % (n_out // d_out):
        raise TopologyError(
            f"block-diagonal junction ({n_in} -> {n_out}): needs d_out={d_out} to divide n_out={n_out} "
            f"and the number of groups n_out/d_out to divide n_in={n_in}"
        )
    group = np.arange(n_out, dtype=np.int64) // d_out  # group of each right node
    ell = group[:, None] * d_in + np.arange(d_in, dtype=np.int64)[None, :]
    return Pattern.from_ell(ell, n_in)


register_family("expander", expander)
