"""Network pipeline: junctions working concurrently on different inputs (seeds 000, 001).

Junction ``i`` (1-based) has ``W_i = N_{i-1} d_out_i`` edges and parallelism ``z_i``: one pass over its
edges takes ``W_i / z_i`` cycles, plus stall cycles if its pattern clashes. In hardware a pass costs a
few clocks more (:class:`ClockModel`): the reference RTL counts ``p * fo / z + 2 + PROCTIME`` clocks per
block cycle (``p = N_{i-1}``, ``fo = d_out_i``; ``PROCTIME = 2`` with pipelined multipliers). All
junctions step together, so the *block cycle* is the slowest junction's pass; the balance condition is
``W_i / z_i`` equal for all ``i`` (nobody idles).

Schedule (training). In block cycle ``t`` junction ``i`` runs FF on input ``t - i + 1`` and, sharing the
weight row, BP and UP on input ``t - 2J + i``: input ``n`` is fed forward through junctions ``1..J`` in
blocks ``n .. n+J-1`` and back-propagated/updated through ``J..1`` in blocks ``n+J .. n+2J-1``. Once the
pipeline is full one input finishes per block cycle; its latency is ``2J`` block cycles. Inference
(FF only) has latency ``J``. A non-pipelined machine runs FF, BP and UP one after the other in every
junction, ``3 J`` passes per input, hence the seeds' speedup ``3 J`` for a balanced network.

Inputs in flight need copies ("banks") of the layer memories: layer ``i``'s activations are written in
block ``n+i-1`` and last read (by UP of junction ``i+1``) in block ``n+2J-i-1``, so ``2(J-i)+1`` banks;
the same for the activation derivatives of hidden layers (read by BP); deltas are ping-ponged (2 banks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from sparseforge.topology.network import NetworkTopology
from sparseforge.topology.pattern import Pattern

from .junction import HardwareError, _divisors, check_parallelism, junction_model

__all__ = [
    "ClockModel",
    "JunctionTiming",
    "LayerBanks",
    "PipelineReport",
    "layer_banks",
    "pipeline_from_patterns",
    "plan_pipeline",
]

Mode = Literal["train", "infer"]


@dataclass(frozen=True)
class ClockModel:
    """Clocks per junction pass: ``cycles + fill_clocks + proc_time``.

    Attributes:
        fill_clocks: clocks to start and drain a pass (the RTL's ``+ 2``: address-table and memory read
            latency before the first multiply).
        proc_time: latency of the arithmetic after the memories (the RTL's ``PROCTIME``; 2 clocks with
            pipelined multipliers).
    """

    fill_clocks: int = 2
    proc_time: int = 2

    def __post_init__(self) -> None:
        for name in ("fill_clocks", "proc_time"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise HardwareError(f"ClockModel.{name}={v!r} must be a non-negative integer (clocks)")

    @property
    def overhead(self) -> int:
        """Clocks added to every pass."""
        return int(self.fill_clocks + self.proc_time)

    def pass_clocks(self, cycles: int) -> int:
        """Clocks of one pass that needs ``cycles`` processing cycles."""
        return int(cycles) + self.overhead


@dataclass(frozen=True)
class JunctionTiming:
    """One junction's pass.

    Attributes:
        junction: 1-based index.
        n_in, n_out: layer widths; edges: ``W``; z: parallelism.
        cycles: ``W / z`` processing cycles per pass (no stalls).
        stall_cycles: extra cycles lost to memory clashes.
        clocks: ``cycles + stall_cycles + overhead`` clocks per pass.
    """

    junction: int
    n_in: int
    n_out: int
    edges: int
    z: int
    cycles: int
    stall_cycles: int
    clocks: int

    @property
    def busy_cycles(self) -> int:
        return self.cycles + self.stall_cycles

    @property
    def multipliers(self) -> int:
        """``3 z``: FF, BP and UP each multiply ``z`` pairs per cycle."""
        return 3 * self.z


@dataclass(frozen=True)
class LayerBanks:
    """Copies of one layer's memories needed for the inputs in flight.

    Attributes:
        layer: 0 (input) .. J (output); nodes: its width.
        activation, derivative, delta: number of banks (each ``nodes`` words).
    """

    layer: int
    nodes: int
    activation: int
    derivative: int
    delta: int


def layer_banks(sizes: Sequence[int], mode: Mode = "train") -> tuple[LayerBanks, ...]:
    """Memory banks per layer for the pipelined schedule (see the module docstring)."""
    J = len(sizes) - 1
    out = []
    for i, n in enumerate(sizes):
        if mode == "infer":
            out.append(LayerBanks(i, int(n), 2 if i < J else 1, 0, 0))
        elif i == J:
            out.append(LayerBanks(i, int(n), 1, 0, 2))
        else:
            live = 2 * (J - i) + 1
            out.append(LayerBanks(i, int(n), live, live if i > 0 else 0, 2 if i > 0 else 0))
    return tuple(out)


@dataclass(frozen=True)
class PipelineReport:
    """Timing of a pipelined network (units in the field names: cycles, clocks, block cycles).

    Attributes:
        mode: "train" (FF, BP, UP) or "infer" (FF only).
        clock: the clock model used.
        junctions: per-junction timing.
        block_cycles: processing cycles of the slowest junction (stalls included).
        block_clocks: clocks of the slowest junction's pass = clocks per input once the pipeline is full.
        balanced: every junction needs the same ``W_i / z_i`` and none stalls.
        layers: memory banks per layer for the inputs in flight.
        advice: what to change when unbalanced (empty when balanced).
    """

    mode: Mode
    clock: ClockModel
    junctions: tuple[JunctionTiming, ...]
    block_cycles: int
    block_clocks: int
    balanced: bool
    layers: tuple[LayerBanks, ...]
    advice: tuple[str, ...]

    @property
    def processes(self) -> int:
        """Processes per junction: 3 (FF, BP, UP) when training, 1 for inference."""
        return 3 if self.mode == "train" else 1

    @property
    def clocks_per_input(self) -> int:
        """Clocks between successive inputs once the pipeline is full (= one block cycle)."""
        return self.block_clocks

    @property
    def latency_blocks(self) -> int:
        """Block cycles from an input's first FF to its last update: ``2J`` (train) or ``J`` (infer)."""
        J = len(self.junctions)
        return 2 * J if self.mode == "train" else J

    @property
    def latency_clocks(self) -> int:
        return self.latency_blocks * self.block_clocks

    @property
    def sequential_clocks_per_input(self) -> int:
        """Clocks per input without pipelining: every process of every junction in turn, each a pass."""
        return self.processes * sum(j.clocks for j in self.junctions)

    @property
    def speedup_vs_sequential(self) -> float:
        """Sequential / pipelined clocks per input (``3 J`` when balanced, ``J`` for inference)."""
        return self.sequential_clocks_per_input / self.block_clocks

    @property
    def edge_serial_clocks_per_input(self) -> int:
        """Clocks per input processing one edge per cycle (``z = 1``), no pipelining, same overheads."""
        return self.processes * sum(j.edges + self.clock.overhead for j in self.junctions)

    @property
    def speedup_vs_edge_serial(self) -> float:
        return self.edge_serial_clocks_per_input / self.block_clocks

    @property
    def multipliers(self) -> int:
        return sum(self.processes * j.z for j in self.junctions)

    def throughput(self, clock_hz: float) -> float:
        """Inputs per second at a clock of ``clock_hz`` Hz (pipeline full)."""
        return float(clock_hz) / self.block_clocks

    def latency_seconds(self, clock_hz: float) -> float:
        """Seconds from an input entering to its update finishing, at ``clock_hz`` Hz."""
        return self.latency_clocks / float(clock_hz)

    def summary(self) -> dict:
        """A JSON-ready dict of the figures."""
        return dict(
            mode=self.mode,
            fill_clocks=self.clock.fill_clocks,
            proc_time=self.clock.proc_time,
            junction_cycles=[j.cycles for j in self.junctions],
            junction_stall_cycles=[j.stall_cycles for j in self.junctions],
            junction_clocks=[j.clocks for j in self.junctions],
            block_cycles=self.block_cycles,
            block_clocks=self.block_clocks,
            clocks_per_input=self.clocks_per_input,
            latency_blocks=self.latency_blocks,
            latency_clocks=self.latency_clocks,
            speedup_vs_sequential=self.speedup_vs_sequential,
            speedup_vs_edge_serial=self.speedup_vs_edge_serial,
            balanced=self.balanced,
            advice=list(self.advice),
        )


def _valid_z(n_in: int, edges: int) -> list[int]:
    return _divisors(int(np.gcd(n_in, edges)))


def _advice(timings: Sequence[JunctionTiming], processes: int) -> tuple[str, ...]:
    C = max(t.busy_cycles for t in timings)
    out = []
    for t in timings:
        if t.stall_cycles:
            out.append(
                f"junction {t.junction}: {t.stall_cycles} stall cycles from memory clashes; a clash-free "
                f"pattern (family 'clash_free', z={t.z}) removes them"
            )
        ok = _valid_z(t.n_in, t.edges)
        if t.busy_cycles < C:
            z_fit = min((z for z in ok if t.edges // z <= C), default=t.z)
            idle = 1 - t.busy_cycles / C
            msg = f"junction {t.junction}: W/z = {t.edges}/{t.z} = {t.cycles} cycles of a {C}-cycle block ({idle:.0%} idle)"
            if z_fit < t.z:
                msg += (
                    f"; z={z_fit} (W/z = {t.edges // z_fit}) keeps the same throughput with "
                    f"{processes * (t.z - z_fit)} fewer multipliers"
                )
            out.append(msg)
        elif len({u.busy_cycles for u in timings}) > 1:
            faster = [z for z in ok if z > t.z]
            msg = f"junction {t.junction} sets the block cycle ({t.busy_cycles} cycles)"
            if faster:
                msg += f"; z={faster[0]} would cut its pass to {t.edges // faster[0]} cycles"
            out.append(msg)
    return tuple(out)


def _report(
    timings: list[JunctionTiming], sizes: Sequence[int], mode: Mode, clock: ClockModel, require_balanced: bool
) -> PipelineReport:
    if mode not in ("train", "infer"):
        raise HardwareError(f"mode={mode!r} must be 'train' or 'infer'")
    busy = [t.busy_cycles for t in timings]
    balanced = len(set(busy)) == 1 and not any(t.stall_cycles for t in timings)
    advice = () if balanced else _advice(timings, 3 if mode == "train" else 1)
    if require_balanced and not balanced:
        raise HardwareError(
            "pipeline is unbalanced: junction cycles per pass (W_i/z_i + stalls) are "
            f"{busy}, they must be equal; " + "; ".join(advice)
        )
    return PipelineReport(
        mode=mode,
        clock=clock,
        junctions=tuple(timings),
        block_cycles=max(busy),
        block_clocks=max(t.clocks for t in timings),
        balanced=balanced,
        layers=layer_banks(sizes, mode),
        advice=advice,
    )


def plan_pipeline(
    sizes: Sequence[int],
    fan_out: Sequence[int],
    z: Sequence[int],
    *,
    mode: Mode = "train",
    clock: ClockModel = ClockModel(),
    stall_cycles: Sequence[int] | None = None,
    require_balanced: bool = False,
) -> PipelineReport:
    """Pipeline timing from layer sizes, out-degrees and parallelism (clash-free unless ``stall_cycles``).

    Args:
        sizes: ``N_net = (N_0, ..., N_J)``.
        fan_out: out-degree ``d_out_i`` per junction; ``W_i = N_{i-1} d_out_i``.
        z: parallelism per junction; ``z_i`` must divide ``N_{i-1}`` and ``W_i``.
        stall_cycles: stall cycles per pass per junction (default 0: clash-free patterns).
        require_balanced: raise :class:`HardwareError` unless all ``W_i / z_i`` are equal.

    Example (the reference RTL): ``plan_pipeline((1024, 64, 32), (4, 16), (128, 32)).block_clocks`` is
    ``32 + 2 + 2 = 36``.
    """
    sizes = tuple(int(n) for n in sizes)
    J = len(sizes) - 1
    for name, v in (("fan_out", fan_out), ("z", z)):
        if len(v) != J:
            raise HardwareError(f"{name}: N_net={list(sizes)} has {J} junctions, got {len(v)} values {list(v)}")
    stalls = [0] * J if stall_cycles is None else [int(s) for s in stall_cycles]
    if len(stalls) != J:
        raise HardwareError(f"stall_cycles: need {J} values, got {len(stalls)}")
    timings = []
    for i in range(J):
        n_in, n_out, d = sizes[i], sizes[i + 1], int(fan_out[i])
        if not 1 <= d <= n_out or (n_in * d) % n_out:
            raise HardwareError(
                f"junction {i + 1} ({n_in} -> {n_out}): fan_out={d} must be in [1, {n_out}] with n_in*fan_out "
                f"divisible by n_out (fixed in-degree)"
            )
        W = n_in * d
        zi = check_parallelism(n_in, W, z[i], f"junction {i + 1} ({n_in} -> {n_out}, W={W})")
        cyc = W // zi
        timings.append(JunctionTiming(i + 1, n_in, n_out, W, zi, cyc, stalls[i], clock.pass_clocks(cyc + stalls[i])))
    return _report(timings, sizes, mode, clock, require_balanced)


def pipeline_from_patterns(
    patterns: NetworkTopology | Sequence[Pattern],
    z: Sequence[int],
    *,
    mode: Mode = "train",
    clock: ClockModel = ClockModel(),
    require_balanced: bool = False,
) -> PipelineReport:
    """Pipeline timing of actual patterns: stall cycles come from the cycle-level junction models.

    The right layer of junction ``i`` is held in ``z_{i+1}`` memories (the next junction reads it), the
    output layer in ``z_J``. ``z_i`` must divide ``N_{i-1}``; a last partial cycle counts as a cycle.
    """
    pats = list(patterns.patterns if isinstance(patterns, NetworkTopology) else patterns)
    if len(z) != len(pats):
        raise HardwareError(f"z: {len(pats)} junctions, got {len(z)} values {list(z)}")
    sizes = [pats[0].n_in] + [p.n_out for p in pats]
    timings = []
    for i, p in enumerate(pats):
        rb = int(z[i + 1]) if i + 1 < len(pats) else int(z[i])
        m = junction_model(p, z[i], right_banks=rb)
        timings.append(
            JunctionTiming(i + 1, p.n_in, p.n_out, p.edges, m.z, m.cycles, m.stall_cycles, clock.pass_clocks(m.total_cycles))
        )
    return _report(timings, sizes, mode, clock, require_balanced)
