"""Table rows of the other ``sparseforge hw`` commands: pipeline plan, clash check, design sweep."""

from __future__ import annotations

from typing import Sequence

from ...hardware import HardwareError, PipelineReport, SweepPoint, junction_model
from ...topology import NetworkTopology


# ---------------------------------------------------------------------------------------- CLI table rows
def plan_rows(report: PipelineReport, clock_hz: float) -> dict:
    """Rows for ``sparseforge hw plan``: ``junctions`` (one per junction) and ``summary`` (figures with
    units in the names) of a pipeline report at a clock of ``clock_hz`` Hz."""
    junctions = [
        dict(junction=t.junction, n_in=t.n_in, n_out=t.n_out, edges=t.edges, z=t.z, cycles=t.cycles,
             stall_cycles=t.stall_cycles, clocks_per_pass=t.clocks, multipliers=report.processes * t.z)
        for t in report.junctions
    ]
    summary = dict(
        report.summary(),
        clock_mhz=clock_hz / 1e6,
        block_cycle_clocks=report.block_clocks,
        latency_us=1e6 * report.latency_seconds(clock_hz),
        throughput_inputs_per_s=report.throughput(clock_hz),
        multipliers=report.multipliers,
        sequential_clocks_per_input=report.sequential_clocks_per_input,
        edge_serial_clocks_per_input=report.edge_serial_clocks_per_input,
    )
    return {"junctions": junctions, "summary": summary}


def clash_rows(topo: NetworkTopology, z: Sequence[int]) -> list[dict]:
    """Per junction of ``topo`` processed with parallelism ``z``: clashes (memory, cycle) pairs read more
    than once, the extra reads they need, and the stall cycles (the right layer held in ``z_{i+1}``
    memories, the output layer in ``z_J``), as in :func:`~sparseforge.hardware.pipeline_from_patterns`."""
    pats = list(topo.patterns)
    if len(z) != len(pats):
        raise HardwareError(f"z: N_net={list(topo.sizes)} has {len(pats)} junctions, got {len(z)} values {list(z)}")
    rows = []
    for i, p in enumerate(pats):
        rb = int(z[i + 1]) if i + 1 < len(pats) else int(z[i])
        m = junction_model(p, int(z[i]), right_banks=rb)
        cl = m.clashes
        rows.append(dict(
            junction=i + 1, n_in=p.n_in, n_out=p.n_out, edges=p.edges, z=m.z, cycles=m.cycles,
            clashes=len(cl), left_clashes=sum(c.side == "left" for c in cl),
            right_clashes=sum(c.side == "right" for c in cl), extra_reads=sum(c.extra_clocks for c in cl),
            stall_cycles=m.stall_cycles, clash_free=m.is_clash_free,
        ))
    return rows


def sweep_rows(points: Sequence[SweepPoint], clock_hz: float) -> list[dict]:
    """Rows for ``sparseforge hw sweep``: one per configuration, with throughput at ``clock_hz``."""
    return [
        dict(z=",".join(map(str, p.z)), block_cycles=p.block_cycles, clocks_per_input=p.clocks_per_input,
             throughput_inputs_per_s=clock_hz / p.clocks_per_input, memory_kbit=p.memory_bits / 1000,
             memories=p.memories, blocks=p.blocks, multipliers=p.multipliers, balanced=p.balanced)
        for p in points
    ]
