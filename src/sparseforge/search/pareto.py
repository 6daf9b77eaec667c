"""The multi-objective view of a search: accuracy against complexity over all trials.

Every complete trial is a point ``(f_c, f_p)`` (normalised complexity, 1 - best validation accuracy),
both to be minimised. The Pareto front is the set of points no other point beats in both; the point a
given ``w_c`` picks is the one minimising ``f_p + w_c f_c``, which always lies on the front (on its convex
hull, in fact), so the front shows at once what other trade-offs would have chosen.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the non-dominated points of ``points [n, 2]`` (both coordinates minimised), sorted by
    the first coordinate. A point is dominated when another is <= in both and < in one; of exact
    duplicates, the first is kept."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    order = sorted(range(len(pts)), key=lambda i: (pts[i, 0], pts[i, 1], i))
    front, best_y = [], np.inf
    for i in order:
        if pts[i, 1] < best_y:
            front.append(i)
            best_y = pts[i, 1]
    return front


def choose(points: Sequence[Sequence[float]], w_c: float) -> int:
    """Index of the point minimising ``f_p + w_c * f_c`` (ties: the first)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(pts):
        raise ValueError("no points to choose from")
    return int(np.argmin(pts[:, 1] + w_c * pts[:, 0]))


def front_rows(rows: Sequence[dict], w_c: float) -> tuple[list[dict], list[int], int]:
    """Complete trial rows (with ``f_c`` and ``f_p``) -> (those rows, indices on the front, index chosen by
    ``w_c``)."""
    ok = [r for r in rows if r.get("state", "COMPLETE") == "COMPLETE" and r.get("f_c") is not None
          and r.get("f_p") is not None]
    if not ok:
        return [], [], -1
    pts = [(r["f_c"], r["f_p"]) for r in ok]
    return ok, pareto_front(pts), choose(pts, w_c)
