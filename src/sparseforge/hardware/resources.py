"""Resource estimates per configuration and a design-space sweep over the parallelism ``z``.

Per junction ``i`` (``W_i`` edges, ``z_i`` lanes, left layer ``N_{i-1}``, right layer ``N_i``), in bits:

* weights: ``W_i * weight`` (``z_i`` memories of depth ``W_i / z_i``); biases ``N_i * weight``;
* interleaver address tables, with ``a = ceil(log2(N_{i-1} / z_i))`` bits per address: a full table
  ``(W_i / z_i) * z_i * a`` (a row per left memory per cycle; any clash-free pattern, interleaver 1),
  or only the start addresses ``d_out_i * z_i * a`` (interleaver 2: a counter per memory, restarted
  every sweep) or ``z_i * a`` (interleaver 3); crossbar tables ``(W_i / z_i) * z_i * ceil(log2 z_i)``
  (the lane each memory feeds) only with dither or an arbitrary pattern (otherwise lane = memory);
  a depth-1 memory or ``z = 1`` needs no bits;
* the left layer's memories, one copy per input in flight (:func:`~.pipeline.layer_banks`):
  activations ``banks * N_{i-1} * act``, activation derivatives of hidden layers likewise;
* the right layer's deltas (2 banks, ping-pong) ``2 N_i * delta``; the last junction also holds the
  output activations.

Multipliers: ``3 z_i`` per junction when training (FF, BP and UP each multiply ``z_i`` pairs per cycle),
``z_i`` for inference.

Physical memories. Bits alone hide the cost of splitting storage into many small memories (which is
what a larger ``z`` does), so each junction also reports ``memories`` (how many separate memories) and
``blocks``: the sum over memories of ``ceil(depth * width / block_bits)`` (18-Kbit FPGA block RAMs by
default). Layer ``l``'s activation, derivative and delta banks are split over ``z_{l+1}`` memories (the
next junction reads them in permuted order); the output layer's over ``max(1, z_J / d_in_J)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .junction import HardwareError, _divisors
from .pipeline import ClockModel, Mode, PipelineReport, layer_banks, plan_pipeline

__all__ = ["JunctionResources", "ResourceReport", "SweepPoint", "WordLengths", "estimate_resources", "sweep_z", "valid_z"]


@dataclass(frozen=True)
class WordLengths:
    """Bits per stored word."""

    weight: int = 10
    act: int = 10
    delta: int = 10

    def __post_init__(self) -> None:
        for name in ("weight", "act", "delta"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise HardwareError(f"WordLengths.{name}={v!r} must be a positive integer (bits)")


@dataclass(frozen=True)
class JunctionResources:
    """Memory (bits) and arithmetic of one junction; see the module docstring for each formula."""

    junction: int
    z: int
    edges: int
    cycles: int
    weight_bits: int
    bias_bits: int
    address_bits: int
    lane_bits: int
    activation_bits: int
    derivative_bits: int
    delta_bits: int
    output_bits: int
    multipliers: int
    memories: int = 0
    blocks: int = 0

    @property
    def memory_bits(self) -> int:
        """All memory bits of the junction."""
        return (
            self.weight_bits + self.bias_bits + self.address_bits + self.lane_bits
            + self.activation_bits + self.derivative_bits + self.delta_bits + self.output_bits
        )


@dataclass(frozen=True)
class ResourceReport:
    """Resources and timing of one configuration.

    Attributes:
        sizes, fan_out, z: the configuration.
        junctions: per-junction resources.
        pipeline: the timing (cycles, clocks per input, ...).
    """

    sizes: tuple[int, ...]
    fan_out: tuple[int, ...]
    z: tuple[int, ...]
    junctions: tuple[JunctionResources, ...]
    pipeline: PipelineReport

    @property
    def memory_bits(self) -> int:
        return sum(j.memory_bits for j in self.junctions)

    @property
    def multipliers(self) -> int:
        return sum(j.multipliers for j in self.junctions)

    @property
    def memories(self) -> int:
        return sum(j.memories for j in self.junctions)

    @property
    def blocks(self) -> int:
        return sum(j.blocks for j in self.junctions)

    def summary(self) -> dict:
        return dict(
            sizes=list(self.sizes),
            fan_out=list(self.fan_out),
            z=list(self.z),
            memory_bits=self.memory_bits,
            multipliers=self.multipliers,
            memories=self.memories,
            blocks=self.blocks,
            junctions=[dict(vars(j), memory_bits=j.memory_bits) for j in self.junctions],
            pipeline=self.pipeline.summary(),
        )


def _addr_bits(n: int) -> int:
    return (int(n) - 1).bit_length()


def estimate_resources(
    sizes: Sequence[int],
    fan_out: Sequence[int],
    z: Sequence[int],
    *,
    words: WordLengths = WordLengths(),
    mode: Mode = "train",
    clock: ClockModel = ClockModel(),
    interleaver: int | None = None,
    dither: bool = False,
    block_bits: int = 18432,
) -> ResourceReport:
    """Memory bits and multipliers per junction of a clash-free configuration, with its timing.

    Args:
        interleaver: None for an arbitrary clash-free pattern (full address and crossbar tables, as
            :func:`~.export.export_network` writes them), or 1, 2, 3 for the generator's interleavers.
        dither: the generator's dither (needs crossbar tables).
        block_bits: bits per physical block RAM for ``blocks``.

    Example: ``estimate_resources((1024, 64, 32), (4, 16), (128, 32)).multipliers`` is ``3*(128+32)``.
    """
    if interleaver not in (None, 1, 2, 3):
        raise HardwareError(f"interleaver={interleaver!r} must be None, 1, 2 or 3")
    rep = plan_pipeline(sizes, fan_out, z, mode=mode, clock=clock)
    sizes = tuple(int(n) for n in sizes)
    banks = layer_banks(sizes, mode)
    J = len(sizes) - 1
    zs = [t.z for t in rep.junctions]
    # memories each layer's banks are split over
    split = [zs[l] if l < J else max(1, zs[J - 1] * sizes[J] // rep.junctions[J - 1].edges) for l in range(J + 1)]

    def mems(count: int, depth: int, width: int) -> tuple[int, int]:
        if count == 0 or depth == 0 or width == 0:
            return 0, 0
        return count, count * -(-depth * width // block_bits)

    out = []
    for t in rep.junctions:
        i = t.junction
        left, right = banks[i - 1], banks[i]
        depth = sizes[i - 1] // t.z
        train = mode == "train"
        ab, lb = _addr_bits(depth), _addr_bits(t.z)
        if interleaver in (None, 1):
            address_bits, addr_shape = t.cycles * t.z * ab, (t.z, t.cycles)
        elif interleaver == 2:
            address_bits, addr_shape = int(fan_out[i - 1]) * t.z * ab, (1, int(fan_out[i - 1]) * t.z)
        else:
            address_bits, addr_shape = t.z * ab, (1, t.z)
        lanes = interleaver is None or dither
        phys = [
            mems(t.z, t.cycles, words.weight),  # weights
            mems(1, sizes[i], words.weight),  # biases
            mems(addr_shape[0], addr_shape[1], ab),  # address tables
            mems(t.z if lanes else 0, t.cycles, lb),  # crossbar tables
            mems(left.activation * split[i - 1], -(-left.nodes // split[i - 1]), words.act),
            mems(left.derivative * split[i - 1], -(-left.nodes // split[i - 1]), words.act),
            mems((right.delta if train else 0) * split[i], -(-right.nodes // split[i]), words.delta),
            mems(right.activation * split[i] if i == J else 0, -(-right.nodes // split[i]), words.act),
        ]
        out.append(
            JunctionResources(
                junction=i,
                z=t.z,
                edges=t.edges,
                cycles=t.cycles,
                weight_bits=t.edges * words.weight,
                bias_bits=sizes[i] * words.weight,
                address_bits=address_bits,
                lane_bits=t.cycles * t.z * lb if lanes else 0,
                activation_bits=left.activation * left.nodes * words.act,
                derivative_bits=left.derivative * left.nodes * words.act,
                delta_bits=right.delta * right.nodes * words.delta if train else 0,
                output_bits=right.activation * right.nodes * words.act if i == J else 0,
                multipliers=(3 if train else 1) * t.z,
                memories=sum(m for m, _ in phys),
                blocks=sum(b for _, b in phys),
            )
        )
    return ResourceReport(sizes, tuple(int(d) for d in fan_out), tuple(t.z for t in rep.junctions), tuple(out), rep)


def valid_z(n_in: int, n_out: int, fan_out: int, *, aligned: bool = True) -> list[int]:
    """Parallelisms for one junction: ``z`` dividing ``n_in`` and ``W = n_in fan_out``; with ``aligned``
    also ``z`` and ``d_in`` dividing one another (needed by the clash-free family)."""
    W = n_in * fan_out
    d_in = W // n_out
    zs = _divisors(int(np.gcd(n_in, W)))
    return [z for z in zs if not aligned or z % d_in == 0 or d_in % z == 0]


@dataclass(frozen=True)
class SweepPoint:
    """One configuration of the sweep (cycles and clocks per input, memory bits, multipliers)."""

    z: tuple[int, ...]
    block_cycles: int
    clocks_per_input: int
    memory_bits: int
    multipliers: int
    balanced: bool
    memories: int = 0
    blocks: int = 0


def sweep_z(
    sizes: Sequence[int],
    fan_out: Sequence[int],
    *,
    words: WordLengths = WordLengths(),
    mode: Mode = "train",
    clock: ClockModel = ClockModel(),
    aligned: bool = True,
    balanced_only: bool = True,
    max_points: int = 5000,
    interleaver: int | None = None,
    dither: bool = False,
    block_bits: int = 18432,
) -> list[SweepPoint]:
    """Evaluate every valid ``z`` configuration; sorted by clocks per input, then multipliers.

    ``balanced_only``: only configurations with equal ``W_i / z_i`` (one per common block cycle);
    otherwise every combination of per-junction valid ``z`` (at most ``max_points``).
    """
    sizes = tuple(int(n) for n in sizes)
    J = len(sizes) - 1
    if len(fan_out) != J:
        raise HardwareError(f"fan_out: N_net={list(sizes)} has {J} junctions, got {len(fan_out)} values")
    per = [valid_z(sizes[i], sizes[i + 1], int(fan_out[i]), aligned=aligned) for i in range(J)]
    W = [sizes[i] * int(fan_out[i]) for i in range(J)]
    if balanced_only:
        combos = []
        for C in _divisors(int(np.gcd.reduce(W))):
            zs = tuple(w // C for w in W)
            if all(z in ok for z, ok in zip(zs, per)):
                combos.append(zs)
    else:
        n = int(np.prod([len(p) for p in per], dtype=object))
        if n > max_points:
            raise HardwareError(f"{n} configurations exceed max_points={max_points}; use balanced_only=True or raise it")
        combos = list(itertools.product(*per))
    points = []
    for zs in combos:
        r = estimate_resources(
            sizes, fan_out, zs, words=words, mode=mode, clock=clock, interleaver=interleaver, dither=dither,
            block_bits=block_bits,
        )
        p = r.pipeline
        points.append(
            SweepPoint(
                tuple(zs), p.block_cycles, p.clocks_per_input, r.memory_bits, r.multipliers, p.balanced,
                sum(j.memories for j in r.junctions), sum(j.blocks for j in r.junctions),
            )
        )
    points.sort(key=lambda s: (s.clocks_per_input, s.multipliers, s.z))
    return points

