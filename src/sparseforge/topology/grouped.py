"""Grouped patterns: ``G`` consecutive right nodes share one list of left neighbours.

A grouped pattern is a structured pattern between the ``n_in`` left nodes and ``n_out / G`` "super" right
nodes (out-degree ``d_out / G``), each super node expanded into ``G`` right nodes with the same inputs.
Every left node keeps out-degree ``d_out`` and every right node has in-degree ``n_in * d_out / n_out``,
exactly as :func:`~sparseforge.topology.structured`; only which right nodes share inputs differs.

Why: a sparse product gathers one activation row per edge; when ``G`` outputs share an index list each
gathered row feeds ``G`` multiply-adds, so the kernels (``group`` in :class:`~sparseforge.kernels.SparseLayout`)
run at several times the FLOP rate of an ungrouped pattern of the same density.
"""

from __future__ import annotations

import numpy as np

from .generators import SeedLike, check_degrees, register_family, structured, valid_out_degrees
from .pattern import Pattern, TopologyError


def grouped(n_in: int, n_out: int, d_out: int, *, group: int = 4, seed: SeedLike = 0) -> Pattern:
    """Structured pattern whose right nodes ``g*G .. g*G+G-1`` read the same left nodes.

    Args:
        n_in, n_out: junction sizes.
        d_out: out-degree of every left node; must be a multiple of ``group`` and make the in-degree
            ``n_in * d_out / n_out`` an integer.
        group: ``G``, right nodes per group; must divide ``n_out``. ``group=1`` is :func:`structured`.
        seed: for the structured pattern between left nodes and groups.

    Raises:
        TopologyError: naming the values and what would work.
    """
    where = f"grouped junction ({n_in} -> {n_out}, d_out={d_out}, group={group})"
    if not isinstance(group, (int, np.integer)) or group < 1:
        raise TopologyError(f"{where}: group must be a positive integer, got {group!r}")
    check_degrees(n_in, n_out, d_out, where)
    if n_out % group:
        divisors = [g for g in range(1, n_out + 1) if n_out % g == 0]
        near = sorted(divisors, key=lambda g: (abs(g - group), g))[:3]
        raise TopologyError(f"{where}: group={group} must divide n_out={n_out}; nearby divisors: {sorted(near)}")
    if d_out % group:
        ok = [d for d in valid_out_degrees(n_in, n_out) if d % group == 0]
        near = sorted(ok, key=lambda d: (abs(d - d_out), d))[:2]
        hint = f"e.g. d_out = {' or '.join(map(str, sorted(near)))}" if near else "no out-degree works; use another group"
        raise TopologyError(
            f"{where}: every left node feeds whole groups, so d_out={d_out} must be a multiple of group={group}; {hint}"
        )
    if group == 1:
        return structured(n_in, n_out, d_out, seed=seed)
    base = structured(n_in, n_out // group, d_out // group, seed=seed)
    return Pattern.from_ell(np.repeat(base.ell(), group, axis=0), n_in)


def _grouped_out_degrees(n_in: int, n_out: int, *, group: int = 4, **_) -> list[int]:
    """Out-degrees :func:`grouped` builds: realisable multiples of ``group`` (none when it does not divide n_out)."""
    if not isinstance(group, (int, np.integer)) or group < 1 or n_out % group:
        return []
    return [d for d in valid_out_degrees(n_in, n_out) if d % group == 0]


register_family("grouped", grouped, _grouped_out_degrees)
