"""Degree solving: per-junction out-degrees of a network ``N_net = (N_0, ..., N_L)`` from any of the ways a
study may ask for them (degrees, densities, an overall density with some junctions pinned, a weight budget
copied from another net, a radix system). Plain numbers in, plain tuples out; errors are
:class:`~sparseforge.topology.TopologyError` naming the argument and what is allowed.
"""

from __future__ import annotations

import math
from typing import Sequence

from .clash_free import valid_parallelism
from .generators import valid_out_degrees
from .network import allocate_density, nearest_out_degree, resolve_out_degrees
from .pattern import TopologyError

__all__ = ["auto_parallelism", "fc_edges", "out_degrees", "radix_widths", "round_down", "solve_fixed",
           "target_density"]


def fc_edges(sizes: Sequence[int]) -> list[int]:
    """Weights of each junction when fully connected: ``N_{i-1} * N_i``."""
    return [a * b for a, b in zip(sizes[:-1], sizes[1:])]


def solve_fixed(sizes: Sequence[int], rho_net: float, fixed: dict[int, float]) -> tuple[int, ...]:
    """Out-degrees reaching overall density ``rho_net`` with junctions ``fixed`` (1-based junction ->
    density) at their densities and the rest of the budget spread evenly over the free junctions."""
    sizes = tuple(sizes)
    n_j = len(sizes) - 1
    fc = fc_edges(sizes)
    d: list[int | None] = [None] * n_j
    for j, dens in fixed.items():
        if not 1 <= j <= n_j:
            raise TopologyError(f"fixed: junction {j} does not exist; N_net={list(sizes)} has junctions 1..{n_j}")
        d[j - 1] = nearest_out_degree(sizes[j - 1], sizes[j], dens)
    free = [i for i in range(n_j) if d[i] is None]
    if not free:
        raise TopologyError(f"fixed={fixed}: every junction is fixed; leave at least one free to reach rho_net")
    fixed_edges = sum(sizes[i] * d[i] for i in range(n_j) if d[i] is not None)
    free_fc = sum(fc[i] for i in free)
    rest = (rho_net * sum(fc) - fixed_edges) / free_fc
    lo = (fixed_edges + sum(sizes[i] * valid_out_degrees(sizes[i], sizes[i + 1])[0] for i in free)) / sum(fc)
    hi = (fixed_edges + free_fc) / sum(fc)
    if rest <= 0 or rest > 1 + 1e-9:
        raise TopologyError(
            f"rho_net={rho_net:g} with fixed={fixed}: the free junctions would need density {rest:.4g}; "
            f"with these fixed densities rho_net must be in [{lo:.4g}, {hi:.4g}]"
        )
    for i in free:
        d[i] = nearest_out_degree(sizes[i], sizes[i + 1], min(rest, 1.0))
    return tuple(int(v) for v in d)  # type: ignore[arg-type]


def radix_widths(radices: Sequence[Sequence[int]], sizes: Sequence[int]) -> tuple[int, list[int]]:
    """``(N', widths)`` of a RadiX-Net on ``sizes``: ``N'`` the product of the first radix list, each layer
    ``N' * width``; the radices (one per junction) must match the number of junctions."""
    sizes = tuple(sizes)
    radices = [list(lst) for lst in radices]
    if not radices or any(not lst for lst in radices):
        raise TopologyError(f"radices={radices}: give a non-empty list of non-empty radix lists, e.g. [[2, 5]]")
    n_prime = math.prod(radices[0])
    n_radices = sum(len(lst) for lst in radices)
    if n_radices != len(sizes) - 1:
        raise TopologyError(f"radices={radices} have {n_radices} radices (junctions) but N_net={list(sizes)} "
                            f"has {len(sizes) - 1} junctions")
    bad = [n for n in sizes if n % n_prime]
    if bad:
        raise TopologyError(f"radices={radices}: every layer size must be a multiple of N'={n_prime} "
                            f"(product of the first list); N_net={list(sizes)} has {bad}")
    return n_prime, [n // n_prime for n in sizes]


def round_down(sizes: Sequence[int], d_out: Sequence[int], budget: float) -> tuple[int, ...]:
    """Lower out-degrees (earlier junctions first, one realisable step at a time) until the edges fit
    ``budget`` weights; the last junction only when the others are at their smallest degree."""
    d = list(d_out)
    order = list(range(len(d) - 1)) + [len(d) - 1]
    edges = lambda: sum(n * k for n, k in zip(sizes[:-1], d))  # noqa: E731
    while edges() > budget + 1e-9:
        for i in order:
            ok = [v for v in valid_out_degrees(sizes[i], sizes[i + 1]) if v < d[i]]
            if ok:
                d[i] = ok[-1]
                break
        else:
            raise TopologyError(f"N_net={list(sizes)}: even the smallest degrees have {edges()} weights, more than "
                                f"the budget {budget:.0f}")
    return tuple(d)


def out_degrees(
    sizes: Sequence[int],
    *,
    fan_out: Sequence[int] | None = None,
    density: float | Sequence[float] | None = None,
    rho_net: float | None = None,
    fixed: dict[int, float] | None = None,
    dense_last: bool = True,
    round_to_budget: bool = False,
    edges_like: Sequence[int] | None = None,
    radices: Sequence[Sequence[int]] | None = None,
) -> tuple[int, ...]:
    """Per-junction out-degrees on ``sizes`` from the one source given (fully connected when none is):

    * ``fan_out``: the degrees themselves (checked); ``density``: one per junction or one for all;
    * ``rho_net``: the overall density, allocated (last junction dense when ``dense_last`` and the budget
      allows), or with ``fixed`` junctions pinned (:func:`solve_fixed`);
    * ``edges_like``: as many weights as the FC net of those sizes has;
    * ``radices``: the RadiX-Net system (degree = radix * next layer's width).

    With ``round_to_budget`` (``rho_net``/``edges_like`` only) degrees are rounded down until the weights
    fit the budget instead of to the nearest realisable degree.
    """
    sizes = tuple(int(n) for n in sizes)
    if fan_out is not None:
        return resolve_out_degrees(sizes, fan_out=list(fan_out))
    if density is not None:
        return resolve_out_degrees(sizes, density=density)
    if rho_net is not None:
        d = solve_fixed(sizes, rho_net, fixed) if fixed else allocate_density(sizes, rho_net, dense_last=dense_last)
        return round_down(sizes, d, rho_net * sum(fc_edges(sizes))) if round_to_budget else d
    if edges_like is not None:
        budget = sum(fc_edges(edges_like))
        rho = budget / sum(fc_edges(sizes))
        if rho > 1:
            raise TopologyError(f"edges_like={list(edges_like)} has {budget} weights, more than the FC net "
                                f"N_net={list(sizes)} ({sum(fc_edges(sizes))}); widen the net or shrink the budget")
        d = allocate_density(sizes, rho, dense_last=dense_last)
        return round_down(sizes, d, budget) if round_to_budget else d
    if radices is not None:
        from .radix import radix_sizes

        _, widths = radix_widths(radices, sizes)
        radix_sizes(radices, widths)  # validates the system (list products)
        flat = [r for lst in radices for r in lst]
        return tuple(r * widths[i + 1] for i, r in enumerate(flat))
    return tuple(sizes[1:])


def target_density(sizes: Sequence[int], realised: float, *, density: float | Sequence[float] | None = None,
                   rho_net: float | None = None, edges_like: Sequence[int] | None = None,
                   fan_out: Sequence[int] | None = None, radices: Sequence[Sequence[int]] | None = None) -> float:
    """The overall density asked for (the ``realised`` one where degrees are given directly)."""
    if rho_net is not None:
        return float(rho_net)
    if isinstance(density, (int, float)):
        return float(density)
    if edges_like is not None:
        return sum(fc_edges(edges_like)) / sum(fc_edges(sizes))
    if density is None and fan_out is None and radices is None:
        return 1.0
    return realised


def auto_parallelism(n_in: int, d_in: int, z_max: int) -> int:
    """The largest valid parallelism ``z <= z_max`` whose banks hold at least 2 addresses (``z <= n_in / 2``:
    with ``z = n_in`` every cycle would read the left layer in order and the pattern degenerates into blocks)."""
    ok = [z for z in valid_parallelism(n_in, d_in) if z <= z_max and 2 * z <= n_in]
    return max(ok) if ok else 1
