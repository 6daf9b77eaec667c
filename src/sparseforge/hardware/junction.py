"""Cycle-level model of one junction of the edge-processing architecture (seeds 000, 001).

One junction with ``W`` edges and degree of parallelism ``z`` processes ``z`` edges per cycle, in
:func:`sparseforge.topology.clash_free.processing_order`, so one pass takes ``ceil(W / z)`` cycles.

Memories (every one single-ported per side: one read and one write per clock):

* ``weight``: ``z`` memories of depth ``W / z``; memory ``l`` row ``c`` holds the weight of the edge
  processed by lane ``l`` in cycle ``c`` (natural order: all memories read at the same row).
* ``act_left`` / ``delta_left``: the left layer's activations and deltas, each a bank of ``z`` memories
  of depth ``N / z``; left node ``u`` at memory ``u % z``, row ``u // z``. Read in *permuted* order: the
  interleaver address table gives, per cycle, each lane's (memory, row). FF and UP work on different
  inputs, so they read different copies of the activations (``act_left_ff``, ``act_left_up``).
* ``act_right`` / ``delta_right``: the right layer's, in ``right_banks`` memories, right node ``r`` at
  memory ``r % right_banks``, row ``r // right_banks``, accessed in natural order.

Per cycle ``c`` (the three processes run at once, on different inputs, and share the weight row):
FF reads ``weight[:, c]`` and ``act_left_ff`` at the lanes' addresses, accumulates into the cycle's
right nodes and writes ``act_right`` when a right node is complete; BP reads the same weight row and
``delta_right`` of the cycle's right nodes, and read-modify-writes ``delta_left`` (partial sums) at the
lanes' addresses; UP reads ``act_left_up`` at the lanes' addresses and ``delta_right``, and writes the
updated ``weight[:, c]`` back.

A *clash* is one memory asked for two reads in one cycle. All left-side accesses follow the same
address stream, so a left clash (two lanes on one bank) stalls FF, BP and UP together; the cycle then
takes as many clocks as the most-read bank has reads. ``stall_cycles`` is the sum of those extra
clocks. Clash-free patterns (every cycle reads each left bank at most once) have none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np

from sparseforge.topology.clash_free import processing_order
from sparseforge.topology.pattern import Pattern

__all__ = ["HardwareError", "JunctionModel", "MemoryAccess", "MemoryClash", "junction_model"]


class HardwareError(ValueError):
    """An impossible hardware configuration; the message names the numbers and what would work."""


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _near(values: list[int], target: int, count: int = 4) -> str:
    return ", ".join(map(str, sorted(sorted(values, key=lambda v: (abs(v - target), v))[:count])))


def check_parallelism(n_in: int, edges: int, z: object, where: str = "junction") -> int:
    """Validate ``z`` against the left layer width and the edge count; returns ``z``.

    ``z`` must divide ``n_in`` (``z`` banks of depth ``n_in / z``) and ``edges`` (``z`` weight memories
    of depth ``edges / z``, no partial last cycle).
    """
    if not isinstance(z, (int, np.integer)) or isinstance(z, bool) or z < 1:
        raise HardwareError(f"{where}: degree of parallelism z={z!r} must be a positive integer")
    z = int(z)
    if n_in % z:
        raise HardwareError(
            f"{where}: z={z} must divide the left layer width N={n_in} (z activation memories of depth N/z); "
            f"divisors near z: {_near(_divisors(n_in), z)}"
        )
    if edges % z:
        ok = _divisors(int(np.gcd(n_in, edges)))
        raise HardwareError(
            f"{where}: z={z} must divide the edge count W={edges} (z weight memories of depth W/z); "
            f"z dividing both N={n_in} and W: {_near(ok, z)}"
        )
    return z


@dataclass(frozen=True)
class MemoryAccess:
    """One memory access in one cycle.

    Attributes:
        process: "FF", "BP" or "UP".
        memory: "weight", "act_left_ff", "act_left_up", "delta_left", "act_right" or "delta_right".
        bank: which memory of the bank of memories.
        row: address within that memory.
        op: "read", "write" or "rmw" (read-modify-write: read this clock, write back later).
        lane: the lane (0..z-1), or -1 for right-side accesses.
        node: left node (left memories), right node (right memories) or edge id (weight memories).
    """

    process: Literal["FF", "BP", "UP"]
    memory: str
    bank: int
    row: int
    op: Literal["read", "write", "rmw"]
    lane: int
    node: int


@dataclass(frozen=True)
class MemoryClash:
    """A memory read more than once in one cycle.

    Attributes:
        cycle: the cycle (0-based).
        side: "left" (activation/delta-left banks, permuted order) or "right" (natural order).
        bank: the memory within its bank.
        nodes: the nodes read from it in that cycle.
        processes: the processes that stall ("FF", "BP", "UP").
        extra_clocks: reads - 1, the clocks this memory alone would add to the cycle.
    """

    cycle: int
    side: Literal["left", "right"]
    bank: int
    nodes: tuple[int, ...]
    processes: tuple[str, ...]

    @property
    def extra_clocks(self) -> int:
        return len(self.nodes) - 1


@dataclass(frozen=True, eq=False)
class JunctionModel:
    """Schedule and memory map of one junction (build with :func:`junction_model`).

    Attributes:
        pattern: the junction's connectivity.
        z: degree of parallelism (edges per cycle).
        right_banks: memories holding the right layer (natural order).
        edge_at: int64 ``[cycles, z]``: edge id (CSR order) processed by lane ``l`` in cycle ``c``, -1 idle.
    """

    pattern: Pattern
    z: int
    right_banks: int
    edge_at: np.ndarray = field(repr=False)

    # ------------------------------------------------------------------ shapes (units: cycles, words)
    @property
    def cycles(self) -> int:
        """Cycles per pass without stalls: ``ceil(W / z)``."""
        return int(self.edge_at.shape[0])

    @property
    def left_depth(self) -> int:
        """Rows per left memory: ``N / z``."""
        return self.pattern.n_in // self.z

    @property
    def weight_depth(self) -> int:
        """Rows per weight memory: ``W / z`` (= cycles)."""
        return self.cycles

    @property
    def right_depth(self) -> int:
        """Rows per right memory: ``ceil(n_out / right_banks)``."""
        return -(-self.pattern.n_out // self.right_banks)

    # ------------------------------------------------------------------ address tables
    @cached_property
    def left_node(self) -> np.ndarray:
        """int64 ``[cycles, z]``: left node read by each lane (-1 idle)."""
        return np.where(self.edge_at >= 0, self.pattern.indices[np.maximum(self.edge_at, 0)], -1)

    @cached_property
    def right_node(self) -> np.ndarray:
        """int64 ``[cycles, z]``: right node each lane accumulates into (-1 idle)."""
        return np.where(self.edge_at >= 0, self.pattern.rows[np.maximum(self.edge_at, 0)], -1)

    @property
    def left_bank(self) -> np.ndarray:
        """int64 ``[cycles, z]``: left memory each lane reads (the crossbar select; -1 idle)."""
        return np.where(self.left_node >= 0, self.left_node % self.z, -1)

    @property
    def left_row(self) -> np.ndarray:
        """int64 ``[cycles, z]``: row each lane reads in its left memory (the interleaver address; -1 idle)."""
        return np.where(self.left_node >= 0, self.left_node // self.z, -1)

    def bank_address_table(self) -> tuple[np.ndarray, np.ndarray]:
        """The interleaver tables as the hardware stores them, per memory rather than per lane.

        Returns ``(address [cycles, z], lane [cycles, z])``: in cycle ``c`` left memory ``b`` is read at
        row ``address[c, b]`` and its word goes to lane ``lane[c, b]`` (-1: not read that cycle).
        Raises :class:`HardwareError` when the pattern has clashes (a memory would need two addresses).
        """
        if self.stall_cycles:
            raise HardwareError(
                f"junction has {len(self.clashes)} clashes costing {self.stall_cycles} stall cycles with z={self.z}; "
                "a per-memory address table needs a clash-free pattern (family 'clash_free')"
            )
        address = np.full((self.cycles, self.z), -1, dtype=np.int64)
        lane = np.full((self.cycles, self.z), -1, dtype=np.int64)
        c, l = np.nonzero(self.edge_at >= 0)
        b = self.left_bank[c, l]
        address[c, b] = self.left_row[c, l]
        lane[c, b] = l
        return address, lane

    # ------------------------------------------------------------------ clashes and stalls
    @cached_property
    def left_occupancy(self) -> np.ndarray:
        """int64 ``[cycles, z]``: reads of each left memory in each cycle (clash-free: all <= 1)."""
        occ = np.zeros((self.cycles, self.z), dtype=np.int64)
        c, l = np.nonzero(self.edge_at >= 0)
        np.add.at(occ, (c, self.left_bank[c, l]), 1)
        return occ

    @cached_property
    def right_occupancy(self) -> np.ndarray:
        """int64 ``[cycles, right_banks]``: distinct right nodes touched in each right memory per cycle."""
        occ = np.zeros((self.cycles, self.right_banks), dtype=np.int64)
        rn = self.right_node
        c, l = np.nonzero(rn >= 0)
        pairs = np.unique(np.stack([c, rn[c, l]], axis=1), axis=0)
        if pairs.size:
            np.add.at(occ, (pairs[:, 0], pairs[:, 1] % self.right_banks), 1)
        return occ

    @cached_property
    def cycle_clocks(self) -> np.ndarray:
        """int64 ``[cycles]``: clocks each cycle takes (1, or the largest number of reads of one memory)."""
        worst = np.maximum(self.left_occupancy.max(axis=1, initial=0), self.right_occupancy.max(axis=1, initial=0))
        return np.maximum(worst, 1)

    @property
    def stall_cycles(self) -> int:
        """Extra clocks per pass caused by clashes (0 when clash-free)."""
        return int((self.cycle_clocks - 1).sum())

    @property
    def total_cycles(self) -> int:
        """Clocks of processing per pass, stalls included: ``cycles + stall_cycles``."""
        return self.cycles + self.stall_cycles

    @cached_property
    def clashes(self) -> list[MemoryClash]:
        """Every memory read more than once in a cycle, sorted by (cycle, side, bank)."""
        out: list[MemoryClash] = []
        left = self.left_node
        for c, b in zip(*np.nonzero(self.left_occupancy > 1)):
            lanes = np.flatnonzero(self.left_bank[c] == b)
            out.append(MemoryClash(int(c), "left", int(b), tuple(int(v) for v in left[c, lanes]), ("FF", "BP", "UP")))
        rn = self.right_node
        for c, b in zip(*np.nonzero(self.right_occupancy > 1)):
            nodes = np.unique(rn[c][(rn[c] >= 0) & (rn[c] % self.right_banks == b)])
            out.append(MemoryClash(int(c), "right", int(b), tuple(int(v) for v in nodes), ("FF", "BP", "UP")))
        out.sort(key=lambda m: (m.cycle, m.side, m.bank))
        return out

    @property
    def is_clash_free(self) -> bool:
        return self.stall_cycles == 0

    # ------------------------------------------------------------------ per-cycle view
    def accesses(self, cycle: int) -> list[MemoryAccess]:
        """Every memory access of FF, BP and UP in ``cycle`` (see the module docstring)."""
        if not 0 <= cycle < self.cycles:
            raise HardwareError(f"cycle={cycle} must lie in [0, {self.cycles})")
        out: list[MemoryAccess] = []
        z = self.z
        for lane in range(z):
            e = int(self.edge_at[cycle, lane])
            if e < 0:
                continue
            u = int(self.left_node[cycle, lane])
            b, r = u % z, u // z
            out += [
                MemoryAccess("FF", "weight", lane, cycle, "read", lane, e),
                MemoryAccess("FF", "act_left_ff", b, r, "read", lane, u),
                MemoryAccess("BP", "weight", lane, cycle, "read", lane, e),
                MemoryAccess("BP", "delta_left", b, r, "rmw", lane, u),
                MemoryAccess("UP", "act_left_up", b, r, "read", lane, u),
                MemoryAccess("UP", "weight", lane, cycle, "write", lane, e),
            ]
        rows = self.right_node[cycle]
        for j in dict.fromkeys(int(v) for v in rows if v >= 0):
            b, r = j % self.right_banks, j // self.right_banks
            out.append(MemoryAccess("BP", "delta_right", b, r, "read", -1, j))
            out.append(MemoryAccess("UP", "delta_right", b, r, "read", -1, j))
            if self._finish_cycle[j] == cycle:
                out.append(MemoryAccess("FF", "act_right", b, r, "write", -1, j))
        return out

    @cached_property
    def _finish_cycle(self) -> np.ndarray:
        fin = np.full(self.pattern.n_out, -1, dtype=np.int64)
        c, l = np.nonzero(self.edge_at >= 0)
        np.maximum.at(fin, self.right_node[c, l], c)
        return fin

    def weight_slot(self) -> tuple[np.ndarray, np.ndarray]:
        """``(memory [W], row [W])``: where each edge's weight (CSR order) lives in the weight memories."""
        mem = np.empty(self.pattern.edges, dtype=np.int64)
        row = np.empty(self.pattern.edges, dtype=np.int64)
        c, l = np.nonzero(self.edge_at >= 0)
        mem[self.edge_at[c, l]] = l
        row[self.edge_at[c, l]] = c
        return mem, row


def junction_model(
    pattern: Pattern,
    z: int,
    *,
    right_banks: int | None = None,
    within_row: Literal["banked", "stored"] = "banked",
    require_full_cycles: bool = False,
) -> JunctionModel:
    """Build the cycle-level model of a junction.

    Args:
        pattern: connectivity (any pattern; random ones show their clashes).
        z: degree of parallelism; must divide ``pattern.n_in`` (the left layer width).
        right_banks: memories of the right layer (default ``z``); in a network, the next junction's ``z``.
        within_row: processing order within a right node (see ``processing_order``).
        require_full_cycles: also require ``z`` to divide the edge count (no idle lanes in the last
            cycle), as the weight memories of depth ``W / z`` do.
    """
    if require_full_cycles:
        check_parallelism(pattern.n_in, pattern.edges, z)
    elif not isinstance(z, (int, np.integer)) or isinstance(z, bool) or z < 1 or pattern.n_in % z:
        check_parallelism(pattern.n_in, pattern.n_in, z)  # raises with the layer-width message
    z = int(z)
    rb = z if right_banks is None else right_banks
    if not isinstance(rb, (int, np.integer)) or rb < 1:
        raise HardwareError(f"right_banks={right_banks!r} must be a positive integer")
    order = processing_order(pattern, z, within_row=within_row)
    cycles = -(-order.size // z)
    edge_at = np.full(cycles * z, -1, dtype=np.int64)
    edge_at[: order.size] = order
    return JunctionModel(pattern, z, int(rb), edge_at.reshape(cycles, z))
