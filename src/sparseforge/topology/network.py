"""A whole network's connectivity: layer sizes ``N_net = (N_0, ..., N_L)`` and one pattern per junction.

Junction ``i`` (1-based, as in the seeds) connects layer ``i-1`` (``N_{i-1}`` nodes) to layer ``i``
(``N_i`` nodes). With out-degree ``d_out_i`` per left node and in-degree ``d_in_i`` per right node,
``N_{i-1} d_out_i = N_i d_in_i``; the junction density is ``rho_i = d_out_i / N_i`` and the overall density

    rho_net = sum_i N_{i-1} d_out_i / sum_i N_{i-1} N_i.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .generators import FAMILIES, as_rng, check_degrees, check_family_options, family_out_degrees, valid_out_degrees
from .pattern import Pattern, TopologyError


@dataclass(frozen=True)
class NetworkTopology:
    """Layer sizes and the pattern of every junction.

    Attributes:
        sizes: ``(N_0, ..., N_L)``, nodes per layer (input first).
        patterns: ``L`` patterns; ``patterns[i]`` has ``n_in = sizes[i]``, ``n_out = sizes[i+1]``.
        family: name of the generator that made it (for reports).
        seed: the seed it was made with, or None.
    """

    sizes: tuple[int, ...]
    patterns: tuple[Pattern, ...]
    family: str = "custom"
    seed: int | None = None

    def __post_init__(self) -> None:
        if len(self.patterns) != len(self.sizes) - 1:
            raise TopologyError(f"{len(self.sizes)} layer sizes need {len(self.sizes) - 1} patterns, got {len(self.patterns)}")
        for i, p in enumerate(self.patterns):
            if (p.n_in, p.n_out) != (self.sizes[i], self.sizes[i + 1]):
                raise TopologyError(
                    f"junction {i + 1}: pattern is {p.n_in} -> {p.n_out}, sizes say {self.sizes[i]} -> {self.sizes[i + 1]}"
                )

    def save(self, path) -> None:
        """Write to one ``.npz`` file (see :mod:`.storage`: versioned, checksummed, atomic)."""
        from .storage import save_topology

        save_topology(self, path)

    @classmethod
    def load(cls, path) -> NetworkTopology:
        """Read a file written by :meth:`save`; a damaged or mismatched file raises :class:`TopologyError`."""
        from .storage import load_topology

        return load_topology(path, kind="network")

    @property
    def edges(self) -> int:
        """Total number of connections (weights, biases excluded)."""
        return sum(p.edges for p in self.patterns)

    @property
    def fc_edges(self) -> int:
        """Connections of the fully-connected network of the same sizes."""
        return sum(a * b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def rho_net(self) -> float:
        """Overall density: edges / edges of the FC network."""
        return self.edges / self.fc_edges

    @property
    def densities(self) -> tuple[float, ...]:
        """Per-junction densities ``rho_i``."""
        return tuple(p.density for p in self.patterns)

    def table(self) -> list[dict]:
        """One row per junction: sizes, degrees (None where they vary), density, edges."""
        rows = []
        for i, p in enumerate(self.patterns):
            rows.append(
                dict(
                    junction=i + 1,
                    n_in=p.n_in,
                    n_out=p.n_out,
                    d_out=p.d_out if p.is_fixed_out_degree else None,
                    d_in=p.d_in if p.is_fixed_in_degree else None,
                    density=p.density,
                    edges=p.edges,
                )
            )
        return rows


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    sizes = tuple(sizes)
    if len(sizes) < 2:
        raise TopologyError(f"N_net needs at least 2 layer sizes (input, output), got {list(sizes)}")
    for i, n in enumerate(sizes):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise TopologyError(f"N_net[{i}] = {n!r}: layer sizes must be positive integers")
    return tuple(int(n) for n in sizes)


def nearest_out_degree(n_in: int, n_out: int, density: float, family: str = "structured", **options) -> int:
    """The out-degree ``family`` builds (:func:`family_out_degrees`; with its ``options``) whose density
    ``d_out / n_out`` is nearest ``density`` (ties: denser); when it builds none there, the nearest realisable
    one (its generator then says what is wrong)."""
    ok = family_out_degrees(family, n_in, n_out, **options) or valid_out_degrees(n_in, n_out)
    return min(ok, key=lambda d: (abs(d / n_out - density), -d))


def resolve_out_degrees(
    sizes: Sequence[int],
    *,
    fan_out: Sequence[int] | None = None,
    fan_in: Sequence[int] | None = None,
    density: Sequence[float] | float | None = None,
    family: str = "structured",
    **options,
) -> tuple[int, ...]:
    """Per-junction out-degrees from exactly one of out-degrees, in-degrees or densities.

    Densities (one per junction, or one for all) are rounded to the nearest out-degree that ``family`` builds
    with ``options`` (:func:`nearest_out_degree`).
    Raises :class:`TopologyError` naming the junction, its numbers and what would work.
    """
    sizes = _check_sizes(sizes)
    n_j = len(sizes) - 1
    given = [(k, v) for k, v in (("fan_out", fan_out), ("fan_in", fan_in), ("density", density)) if v is not None]
    if len(given) != 1:
        raise TopologyError(f"give exactly one of fan_out, fan_in or density, got {[k for k, _ in given] or 'none'}")
    name, values = given[0]
    if name == "density" and np.isscalar(values):
        values = [values] * n_j
    values = list(values)  # type: ignore[arg-type]
    if len(values) != n_j:
        raise TopologyError(f"{name}: N_net={list(sizes)} has {n_j} junctions, got {len(values)} values {values}")
    out = []
    for i, v in enumerate(values):
        n_in, n_out = sizes[i], sizes[i + 1]
        where = f"junction {i + 1}"
        if name == "fan_out":
            d_out = v
        elif name == "fan_in":
            if not isinstance(v, (int, np.integer)) or not 1 <= v <= n_in:
                raise TopologyError(f"{where} ({n_in} -> {n_out}): fan_in={v!r} must be an integer in [1, {n_in}]")
            if (n_out * v) % n_in:
                ok = [n_in * d // n_out for d in valid_out_degrees(n_in, n_out)]
                near = sorted(sorted(ok, key=lambda d: abs(d - v))[:2])
                raise TopologyError(
                    f"{where} ({n_in} -> {n_out}): fan_in={v} gives out-degree n_out*d_in/n_in = "
                    f"{n_out * v / n_in:.4g}, not an integer; e.g. fan_in {' or '.join(map(str, near))} would work"
                )
            d_out = n_out * v // n_in
        else:
            if not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise TopologyError(f"{where}: density={v!r} must be a number in (0, 1]")
            d_out = nearest_out_degree(n_in, n_out, float(v), family, **options)
        check_degrees(n_in, n_out, d_out, where)
        out.append(int(d_out))
    return tuple(out)


def design(
    sizes: Sequence[int],
    *,
    fan_out: Sequence[int] | None = None,
    fan_in: Sequence[int] | None = None,
    density: Sequence[float] | float | None = None,
    family: str = "structured",
    seed: int = 0,
    **options,
) -> NetworkTopology:
    """Design a pre-defined sparse network.

    Args:
        sizes: ``N_net = (N_0, ..., N_L)``.
        fan_out / fan_in / density: exactly one, per junction (density may be one number for all).
        family: a name in :data:`sparseforge.topology.FAMILIES` ("structured", "random", ...).
        seed: the network's seed; junction ``i`` uses an independent stream derived from it.
        options: passed to the family's generator (e.g. ``z`` for clash-free).

    Example: ``design((784, 112, 10), fan_out=(42, 10)).rho_net`` is 0.3829.
    """
    if family not in FAMILIES:
        raise TopologyError(f"family={family!r} is not known; choose one of {sorted(FAMILIES)}")
    check_family_options(family, options)
    d_outs = resolve_out_degrees(sizes, fan_out=fan_out, fan_in=fan_in, density=density, family=family, **options)
    sizes = _check_sizes(sizes)
    streams = np.random.SeedSequence(seed).spawn(len(d_outs))
    gen = FAMILIES[family]
    patterns = []
    for i, d in enumerate(d_outs):
        rng = as_rng(np.random.default_rng(streams[i]))
        if d == sizes[i + 1]:
            patterns.append(Pattern.full(sizes[i], sizes[i + 1]))  # density 1: nothing to choose
        else:
            patterns.append(gen(sizes[i], sizes[i + 1], d, seed=rng, **options))
    return NetworkTopology(sizes, tuple(patterns), family=family, seed=seed)


def fully_connected(sizes: Sequence[int]) -> NetworkTopology:
    """The FC network: the 100% case of the same builder."""
    sizes = _check_sizes(sizes)
    return NetworkTopology(sizes, tuple(Pattern.full(a, b) for a, b in zip(sizes[:-1], sizes[1:])), family="fc")



def allocate_density(sizes: Sequence[int], rho_net: float, *, dense_last: bool = True, family: str = "structured",
                     **options) -> tuple[int, ...]:
    """Out-degrees that realise an overall density near ``rho_net``, following the seeds' guideline that
    junctions nearer the output should be denser (000: "for the same rho_net, rho_2 > rho_1 is better").

    Two candidates are rounded to realisable degrees: (a) with ``dense_last``, the last junction fully
    connected and the rest of the edge budget ``rho_net * fc_edges`` spread at one density over the
    earlier junctions (each at least its smallest realisable degree); (b) every junction at density
    ``rho_net``. (a) is taken when its overall density is within 10% (relative) of ``rho_net`` or nearer
    than (b)'s; a candidate with a junction ``family`` cannot build (with ``options``) is dropped, and degrees
    are ones it builds (:func:`nearest_out_degree`). Check ``design(...).rho_net`` for the density obtained.
    """
    sizes = _check_sizes(sizes)
    if not isinstance(rho_net, (int, float)) or not 0 < rho_net <= 1:
        raise TopologyError(f"rho_net={rho_net!r} must be a number in (0, 1]")
    fc = [a * b for a, b in zip(sizes[:-1], sizes[1:])]

    def degrees(dens: Sequence[float]) -> tuple[int, ...]:
        return tuple(nearest_out_degree(sizes[i], sizes[i + 1], d, family, **options) for i, d in enumerate(dens))

    def overall(d_outs: Sequence[int]) -> float:
        return sum(n * d for n, d in zip(sizes[:-1], d_outs)) / sum(fc)

    candidates = [degrees([rho_net] * len(fc))]
    if dense_last and len(fc) > 1:
        rest = max(rho_net * sum(fc) - fc[-1], 0.0) / sum(fc[:-1])
        candidates.insert(0, degrees([rest] * (len(fc) - 1) + [1.0]))
    def builds(d_outs: Sequence[int]) -> bool:  # a full junction needs no generator
        return all(d == sizes[i + 1] or d in family_out_degrees(family, sizes[i], sizes[i + 1], **options)
                   for i, d in enumerate(d_outs))

    candidates = [c for c in candidates if builds(c)] or candidates[-1:]  # none: the generator says why
    err = [abs(overall(d) - rho_net) / rho_net for d in candidates]
    if len(candidates) == 2 and err[0] <= 0.10:
        return candidates[0]
    return candidates[int(err[-1] < err[0])]
