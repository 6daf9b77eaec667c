"""Clash-free junctions for edge-processing hardware with degree of parallelism ``z``.

Dey, Beerel & Chugg, "Interleaver design for deep neural networks" (Asilomar 2017) and Dey et al., "A
Highly Parallel FPGA Implementation of Sparse Neural Network Training" (arXiv:1806.01087).

Memory model
------------
A junction's left layer of ``N`` nodes sits in ``z`` memory banks of depth ``D = N / z``: left node
``u`` is stored in bank ``u % z`` at address ``u // z``. The hardware processes ``z`` edges per cycle,
in right-node order: position ``p`` of the processing sequence is handled in cycle ``p // z`` by lane
``p % z``; the junction needs ``W / z`` cycles (``W = N d_out = n_out d_in`` edges). A cycle is
*clash-free* when its ``z`` left nodes sit in ``z`` distinct banks (every bank read exactly once);
a pattern is clash-free when every cycle is.

Divisibility rule
-----------------
``z`` must divide ``N`` (whole banks; then ``z`` divides ``W`` as well) and ``z`` and ``d_in`` must
divide one another, so that cycles line up with right nodes:

* ``z = g d_in`` (``g >= 1``): every cycle holds ``g`` whole right nodes. This is the papers' setting:
  the FPGA network ``N = (1024, 64, 32)``, ``d_out = (4, 16)``, ``d_in = (64, 32)``, ``z = (128, 32)``
  has ``g = 2`` and ``g = 1``.
* ``d_in = k z`` (``k >= 1``): every right node spans ``k`` whole cycles (its accumulator carries a
  partial sum across them).

Anything else would split a right node unevenly across cycles; :func:`clash_free` raises a
:class:`TopologyError` listing the ``z`` that would work.

Processing order within a right node
------------------------------------
:class:`Pattern` stores every row sorted by left node, which is a storage convention, not the order
the hardware reads them in (the hardware keeps that order in its address tables). When ``z = g d_in``
a cycle holds whole rows, so the order within a row does not change which banks a cycle reads. When
``d_in = k z`` it does, and the hardware order is :func:`processing_order`: within each right node,
the edges are dealt round-robin over banks (sorted by (rank of the edge among the row's edges in the
same bank, bank)). A row whose banks are balanced (each bank exactly ``k`` times, which is necessary
for clash-freedom) is then read with every bank once per cycle. :func:`find_clashes` uses this order by
default; ``within_row="stored"`` checks the literal sorted ELL order instead.

Construction (the interleaver)
------------------------------
Edges are produced by ``d_out`` sweeps; each sweep is a permutation of all ``N`` left nodes (so every
left node gets out-degree exactly ``d_out``) spread over ``D`` cycles. In cycle ``t`` of sweep ``s``,
lane ``l`` reads bank ``b = pi_c(l)`` (``pi_c`` the identity, or with ``dither=True`` a uniformly random
permutation of the banks drawn per cycle) at address ``A_{s,b}(t)``, where ``A_{s,b}`` is a permutation
of the ``D`` addresses:

* interleaver 1: an independent uniformly random permutation per bank per sweep;
* interleaver 2: a random start per bank per sweep, then consecutive addresses ``(start + t) mod D``;
* interleaver 3: interleaver 2 with the same starts in every sweep.

Every cycle reads each bank once, so the result is clash-free by construction.

Duplicate edges. A right node never reads one left node twice unless it spans a sweep boundary
(possible only when ``d_in = k z`` and ``k`` does not divide ``D``): its last ``m`` cycles in sweep
``s-1`` and first ``h = k - m`` cycles in sweep ``s`` could read the same address of one bank. Instead
of rejection (resampling, which can fail often when ``m h z / D`` is large), the generator draws sweep
``s`` *conditioned* on no duplicate, exactly and per bank: interleaver 1 picks the first ``h``
addresses uniformly among the ``D - m`` not read by that row (then a uniform permutation of the rest),
i.e. a uniform draw among the valid permutations; interleaver 2 picks the start uniformly among the
``D - k + 1`` whose window of ``h`` addresses avoids the row's ``m`` previous ones; interleaver 3 can
never duplicate (a row spans ``k <= D`` consecutive cycles, which read distinct addresses of a bank).
No retries are needed and the generator never fails once the sizes are valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb, factorial, perm
from typing import Literal, Sequence

import numpy as np

from .generators import SeedLike, as_rng, check_degrees, register_family, valid_out_degrees
from .network import NetworkTopology, _check_sizes, resolve_out_degrees
from .pattern import Pattern, TopologyError

__all__ = [
    "Clash",
    "clash_free",
    "count_patterns",
    "count_settings",
    "design_clash_free",
    "find_clashes",
    "is_clash_free",
    "processing_order",
    "valid_parallelism",
]


# ---------------------------------------------------------------------------------------------- checks
def valid_parallelism(n_in: int, d_in: int) -> list[int]:
    """All ``z`` that divide ``n_in`` and divide or are multiples of ``d_in`` (ascending)."""
    return [z for z in range(1, n_in + 1) if n_in % z == 0 and (z % d_in == 0 or d_in % z == 0)]


def _near(values: list[int], target: int, count: int = 4) -> str:
    best = sorted(sorted(values, key=lambda v: (abs(v - target), v))[:count])
    return ", ".join(map(str, best))


def _check_z(n_in: int, n_out: int, d_in: int, z: object) -> int:
    where = f"clash_free ({n_in} -> {n_out}, d_in={d_in})"
    if not isinstance(z, (int, np.integer)) or isinstance(z, bool) or z < 1:
        raise TopologyError(f"{where}: degree of parallelism z={z!r} must be a positive integer")
    z = int(z)
    if n_in % z:
        divisors = [v for v in range(1, n_in + 1) if n_in % v == 0]
        raise TopologyError(
            f"{where}: z={z} must divide the left layer size N={n_in} (z banks of N/z addresses); "
            f"divisors of N near z: {_near(divisors, z)}"
        )
    if z % d_in and d_in % z:
        raise TopologyError(
            f"{where}: z={z} and the in-degree d_in={d_in} must divide one another, so that every cycle "
            f"holds whole right nodes (z a multiple of d_in, as in the FPGA design) or every right node "
            f"spans whole cycles (d_in a multiple of z); z values that work for N={n_in}, d_in={d_in}: "
            f"{_near(valid_parallelism(n_in, d_in), z)}"
        )
    return z


def _check_interleaver(interleaver: object) -> int:
    if interleaver not in (1, 2, 3) or isinstance(interleaver, bool):
        raise TopologyError(f"clash_free: interleaver={interleaver!r} must be 1, 2 or 3")
    return int(interleaver)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Layout:
    """Where sweeps and right nodes fall on the cycle axis (all counts in cycles)."""

    n_in: int
    n_out: int
    d_out: int
    d_in: int
    z: int

    @property
    def depth(self) -> int:  # D: addresses per bank = cycles per sweep
        return self.n_in // self.z

    @property
    def cycles(self) -> int:
        return self.depth * self.d_out

    @property
    def k(self) -> int:  # cycles per right node (0 when a cycle holds several right nodes)
        return self.d_in // self.z if self.d_in >= self.z else 0

    def sweeps(self) -> list[tuple[int, int, int, int]]:
        """Per sweep ``(m_prev, h, blocks, tail)``: a right node crossing into the sweep has ``m_prev``
        cycles in the previous sweep and ``h`` here; then ``blocks`` whole right nodes; then ``tail``
        cycles of a node that crosses into the next sweep. All zero-crossing when ``k`` divides ``D``."""
        D, k = self.depth, self.k
        out = []
        for s in range(self.d_out):
            if k == 0:
                out.append((0, 0, 0, 0))
                continue
            r = (s * D) % k
            m_prev, h = (r, k - r) if r else (0, 0)
            rest = D - h
            out.append((m_prev, h, rest // k, rest % k))
        return out


def _layout(n_in: int, n_out: int, d_out: int, z: object) -> _Layout:
    d_in = check_degrees(n_in, n_out, d_out, f"clash_free ({n_in} -> {n_out})")
    return _Layout(n_in, n_out, d_out, d_in, _check_z(n_in, n_out, d_in, z))


# ------------------------------------------------------------------------------------------- generator
def clash_free(
    n_in: int,
    n_out: int,
    d_out: int,
    *,
    z: int,
    interleaver: Literal[1, 2, 3] = 1,
    dither: bool = False,
    seed: SeedLike = 0,
) -> Pattern:
    """A clash-free junction for parallelism ``z`` (see the module docstring for the construction).

    Args:
        n_in, n_out: left and right layer sizes (``N``, ``n_out``).
        d_out: out-degree of every left node; in-degree ``d_in = n_in d_out / n_out``.
        z: degree of parallelism (edges per cycle; banks of left memory). Must divide ``n_in``; ``z`` and
            ``d_in`` must divide one another.
        interleaver: 1 (random permutation per bank per sweep), 2 (random start per bank per sweep,
            consecutive addresses), 3 (as 2 with the same starts every sweep).
        dither: draw a random lane-to-bank permutation per cycle (changes the pattern only when
            ``z > d_in``, i.e. when a cycle holds several right nodes).
        seed: int or ``numpy.random.Generator``.

    Returns a :class:`Pattern` with every out-degree ``d_out`` and every in-degree ``d_in``, clash-free
    under :func:`find_clashes` with the same ``z``.
    """
    lay = _layout(n_in, n_out, d_out, z)
    interleaver = _check_interleaver(interleaver)
    rng = as_rng(seed)
    D, z, S = lay.depth, lay.z, lay.d_out
    addr = np.empty((lay.cycles, z), dtype=np.int64)  # address read from bank b in cycle c
    starts = rng.integers(0, D, size=z) if interleaver == 3 else None
    t = np.arange(D)
    for s, (m_prev, h, _, _) in enumerate(lay.sweeps()):
        block = slice(s * D, (s + 1) * D)
        if interleaver == 3:
            addr[block] = (starts[None, :] + t[:, None]) % D
        elif interleaver == 2:
            if h:  # previous sweep's last m addresses per bank form the arc [prev_start - m, prev_start)
                prev_start = addr[s * D - D]
                start = (prev_start + rng.integers(0, D - m_prev - h + 1, size=z)) % D
            else:
                start = rng.integers(0, D, size=z)
            addr[block] = (start[None, :] + t[:, None]) % D
        else:
            if h:
                tail = addr[s * D - m_prev : s * D]  # [m_prev, z] addresses the crossing row already read
                keys = rng.random((z, D))
                keys[np.arange(z)[None, :], tail] += 1.0  # read ones sort last: first h are a uniform sample
                order = np.argsort(keys, axis=1)
                head, rest = order[:, :h], rng.permuted(order[:, h:], axis=1)
                addr[block] = np.concatenate([head, rest], axis=1).T
            else:
                addr[block] = rng.permuted(np.broadcast_to(np.arange(D), (z, D)), axis=1).T
    if dither:
        lane_bank = rng.permuted(np.broadcast_to(np.arange(z), (lay.cycles, z)), axis=1)
    else:
        lane_bank = np.broadcast_to(np.arange(z), (lay.cycles, z))
    nodes = np.take_along_axis(addr, lane_bank, axis=1) * z + lane_bank  # [cycles, z], lane order
    return Pattern.from_ell(nodes.reshape(n_out, lay.d_in), n_in)


def _clash_free_family(n_in: int, n_out: int, d_out: int, *, seed: SeedLike = 0, **options) -> Pattern:
    if "z" not in options:
        raise TopologyError("family 'clash_free' needs the option z (degree of parallelism), e.g. z=32")
    return clash_free(n_in, n_out, d_out, seed=seed, **options)


_clash_free_family.takes = clash_free  # type: ignore[attr-defined]  # its options (check_family_options)


def _clash_free_out_degrees(n_in: int, n_out: int, *, z: object = None, **_) -> list[int]:
    """Out-degrees :func:`clash_free` builds with parallelism ``z``: ``z`` divides ``n_in``, and ``z`` and the
    in-degree divide one another."""
    if not isinstance(z, (int, np.integer)) or isinstance(z, bool) or z < 1 or n_in % z:
        return []
    d_ins = {d: n_in * d // n_out for d in valid_out_degrees(n_in, n_out)}
    return [d for d, d_in in d_ins.items() if d_in % z == 0 or z % d_in == 0]


register_family("clash_free", _clash_free_family, _clash_free_out_degrees)


def design_clash_free(
    sizes: Sequence[int],
    *,
    z: int | Sequence[int],
    fan_out: Sequence[int] | None = None,
    fan_in: Sequence[int] | None = None,
    density: Sequence[float] | float | None = None,
    interleaver: Literal[1, 2, 3] = 1,
    dither: bool = False,
    seed: int = 0,
) -> NetworkTopology:
    """A network whose every junction is clash-free, with one ``z`` per junction (or one for all).

    :func:`sparseforge.topology.design` passes the same options to every junction, so it can only take
    a single ``z``; this takes ``z = (z_1, ..., z_L)``. Seeds are derived as in ``design``.
    Example: ``design_clash_free((1024, 64, 32), fan_out=(4, 16), z=(128, 32))``.
    """
    sizes = _check_sizes(sizes)
    d_outs = resolve_out_degrees(sizes, fan_out=fan_out, fan_in=fan_in, density=density)
    zs = [z] * len(d_outs) if isinstance(z, (int, np.integer)) else list(z)
    if len(zs) != len(d_outs):
        raise TopologyError(f"z: N_net={list(sizes)} has {len(d_outs)} junctions, got {len(zs)} values {zs}")
    streams = np.random.SeedSequence(seed).spawn(len(d_outs))
    patterns = []
    for i, (d, zi) in enumerate(zip(d_outs, zs)):
        try:
            patterns.append(
                clash_free(
                    sizes[i], sizes[i + 1], d, z=zi, interleaver=interleaver, dither=dither,
                    seed=np.random.default_rng(streams[i]),
                )
            )
        except TopologyError as e:
            raise TopologyError(f"junction {i + 1}: {e}") from None
    return NetworkTopology(sizes, tuple(patterns), family="clash_free", seed=seed)


# --------------------------------------------------------------------------------------------- checker
@dataclass(frozen=True)
class Clash:
    """Two or more reads of one bank in one cycle.

    Attributes:
        cycle: the cycle (0-based; ``W / z`` cycles per junction pass).
        bank: the left-memory bank read more than once.
        nodes: the left nodes read from that bank in that cycle (in lane order).
        edges: their edge ids (CSR order of the pattern).
        rows: the right nodes reading them.
        lanes: the lanes (0..z-1) that read them.
    """

    cycle: int
    bank: int
    nodes: tuple[int, ...]
    edges: tuple[int, ...]
    rows: tuple[int, ...]
    lanes: tuple[int, ...]

    @property
    def reads(self) -> int:
        """Number of reads of the bank in this cycle (>= 2)."""
        return len(self.nodes)


def processing_order(pattern: Pattern, z: int, *, within_row: Literal["banked", "stored"] = "banked") -> np.ndarray:
    """int64 ``[edges]``: the edge ids (CSR order) in the order the hardware processes them.

    Right nodes are processed in order, each one's edges consecutively. ``within_row="stored"`` keeps
    each row's stored (ascending left node) order; ``"banked"`` (the hardware order) deals each row's
    edges round-robin over banks: sorted by (rank among the row's edges in the same bank, bank), ties
    by left node. Position ``p`` of the result is read in cycle ``p // z`` by lane ``p % z``.
    """
    if not isinstance(z, (int, np.integer)) or isinstance(z, bool) or z < 1:
        raise TopologyError(f"z={z!r} must be a positive integer")
    E = pattern.edges
    if within_row == "stored":
        return np.arange(E, dtype=np.int64)
    if within_row != "banked":
        raise TopologyError(f"within_row={within_row!r} must be 'banked' or 'stored'")
    rows = pattern.rows
    bank = pattern.indices % z
    by_bank = np.lexsort((pattern.indices, bank, rows))  # grouped by (row, bank), ascending node
    key = rows[by_bank] * z + bank[by_bank]
    first = np.ones(E, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(E), 0))
    rank = np.empty(E, dtype=np.int64)
    rank[by_bank] = np.arange(E) - group_start
    return np.lexsort((pattern.indices, bank, rank, rows)).astype(np.int64)


def find_clashes(
    pattern: Pattern, z: int, *, within_row: Literal["banked", "stored"] = "banked"
) -> list[Clash]:
    """Every (cycle, bank) read more than once when ``pattern`` is processed ``z`` edges per cycle.

    Independent of the generator: it only looks at the pattern. Edges are taken in
    :func:`processing_order` (right node by right node; a variable in-degree pattern's rows are simply
    concatenated), cut into cycles of ``z``; left node ``u`` lives in bank ``u % z``. Returns clashes
    sorted by (cycle, bank); an empty list means clash-free. ``z`` must divide ``pattern.n_in``.
    """
    if not isinstance(z, (int, np.integer)) or isinstance(z, bool) or z < 1:
        raise TopologyError(f"z={z!r} must be a positive integer")
    if pattern.n_in % z:
        raise TopologyError(f"z={z} must divide the left layer size N={pattern.n_in} (z banks of N/z addresses)")
    order = processing_order(pattern, z, within_row=within_row)
    nodes = pattern.indices[order]
    pos = np.arange(order.size)
    key = (pos // z) * z + nodes % z
    srt = np.argsort(key, kind="stable")
    k_sorted = key[srt]
    uniq, start, counts = np.unique(k_sorted, return_index=True, return_counts=True)
    rows = pattern.rows
    out = []
    for kv, st, n in zip(uniq[counts > 1], start[counts > 1], counts[counts > 1]):
        p = srt[st : st + n]  # positions, ascending (stable sort) = lane order
        e = order[p]
        out.append(
            Clash(
                cycle=int(kv // z),
                bank=int(kv % z),
                nodes=tuple(int(v) for v in nodes[p]),
                edges=tuple(int(v) for v in e),
                rows=tuple(int(v) for v in rows[e]),
                lanes=tuple(int(v) for v in p % z),
            )
        )
    return out


def is_clash_free(pattern: Pattern, z: int, *, within_row: Literal["banked", "stored"] = "banked") -> bool:
    """True when no cycle reads a bank twice (see :func:`find_clashes`)."""
    return not find_clashes(pattern, z, within_row=within_row)


# -------------------------------------------------------------------------------------------- counting
def count_patterns(n_in: int, n_out: int, d_out: int, z: int, interleaver: int, dither: bool) -> int:
    """Exact number of distinct adjacency matrices (patterns) that :func:`clash_free` can make.

    This counts *patterns*, not interleaver settings (:func:`count_settings`): different settings that
    give the same matrix count once. With ``D = N / z``, ``S = d_out`` sweeps, ``C = S D`` cycles:

    * ``z = g d_in`` (a cycle holds ``g >= 1`` whole right nodes). The pattern reveals every (cycle,
      bank) address (bank = node mod z, address = node div z, cycle = row div g), so settings map
      one-to-one to patterns up to the lane order within a right node: interleaver 1 gives
      ``(D!)^(z S)``, 2 gives ``D^(z S)``, 3 gives ``D^z``; dither multiplies by the number of ordered
      splits of the banks among a cycle's right nodes, ``(z! / (d_in!)^g)^C`` (1 when ``g = 1``).
    * ``d_in = k z`` (a right node spans ``k`` cycles; dither cannot change the pattern). Only the
      *set* of addresses each right node reads from each bank is visible. If ``k = D`` every right node
      reads everything: 1 pattern. Otherwise, per bank and sweep (sweep ``s`` = ``h`` cycles finishing
      a right node that started ``m`` cycles earlier in sweep ``s-1``, then ``n`` whole right nodes, then
      a ``t``-cycle head of the next): interleaver 1 gives ``C(D - m, h) (D - h)! / ((k!)^n t!)`` (the
      head avoids the row's ``m`` earlier addresses; the sets are recoverable sweep by sweep),
      interleaver 2 gives ``D`` starts, or ``D - k + 1`` when the sweep starts inside a right node (a
      window of length ``< D`` determines its start), interleaver 3 gives ``D`` per bank once. The
      total is the product over sweeps, to the power ``z`` (banks are independent).

    Verified against brute-force enumeration of all settings on tiny sizes (tests/test_clash_free.py).
    """
    lay = _layout(n_in, n_out, d_out, z)
    interleaver = _check_interleaver(interleaver)
    D, z, S, d_in = lay.depth, lay.z, lay.d_out, lay.d_in
    if lay.k == 0 or lay.k == 1:  # z = g d_in
        g = z // d_in
        per = {1: factorial(D) ** (z * S), 2: D ** (z * S), 3: D**z}[interleaver]
        if dither and g > 1:
            per *= (factorial(z) // factorial(d_in) ** g) ** lay.cycles
        return per
    k = lay.k
    if k == D:
        return 1
    if interleaver == 3:
        return D**z
    total = 1
    for m_prev, h, blocks, tail in lay.sweeps():
        if interleaver == 1:
            total *= comb(D - m_prev, h) * factorial(D - h) // (factorial(k) ** blocks * factorial(tail))
        else:
            total *= D - k + 1 if h else D
    return total**z


def count_settings(n_in: int, n_out: int, d_out: int, z: int, interleaver: int, dither: bool) -> int:
    """Exact number of interleaver settings :func:`clash_free` draws from (each equally likely).

    A setting is the address sequence of every bank in every sweep plus, with dither, one lane-to-bank
    permutation per cycle (``(z!)^C`` of them). Settings whose right nodes would read a left node twice
    are excluded (the generator never draws them): interleaver 1 has ``P(D - m, h) (D - h)!`` valid
    permutations per bank and sweep, interleaver 2 has ``D`` (or ``D - k + 1``) starts, interleaver 3
    ``D`` starts per bank once. Many settings can give the same pattern; see :func:`count_patterns`.
    """
    lay = _layout(n_in, n_out, d_out, z)
    interleaver = _check_interleaver(interleaver)
    D, z = lay.depth, lay.z
    if interleaver == 3:
        total = D**z
    else:
        total = 1
        for m_prev, h, _, _ in lay.sweeps():
            if interleaver == 1:
                total *= perm(D - m_prev, h) * factorial(D - h)
            else:
                total *= D - lay.k + 1 if h else D
        total **= z
    if dither:
        total *= factorial(z) ** lay.cycles
    return total
