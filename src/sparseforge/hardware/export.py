"""Export a network for a hardware designer: memory-initialisation files and a JSON summary.

Layout of ``directory`` (every ``.hex`` file holds one word per line, hexadecimal, no prefix, loadable by
Verilog ``$readmemh``; signed words are two's complement of ``word_bits`` bits):

``hardware.json``
    the configuration: layer sizes, per junction ``z``, degrees, memory depths and word widths, the
    file names, cycle and clock counts, resources.
``junction{i}/weight_{l}.hex`` (``l = 0..z-1``)
    weight memory ``l``: ``W / z`` words; row ``c`` = the weight used by lane ``l`` in cycle ``c``.
``junction{i}/addr_{b}.hex`` (``b = 0..z-1``)
    interleaver address table of left memory ``b``: row ``c`` = the row of memory ``b`` read in cycle
    ``c`` (width ``max(1, ceil(log2(N/z)))`` bits).
``junction{i}/lane_{b}.hex``
    crossbar table of left memory ``b``: row ``c`` = the lane that receives memory ``b``'s word in cycle
    ``c`` (width ``max(1, ceil(log2 z))`` bits). With ``addr`` this is the full permuted access order.
``junction{i}/bias.hex``
    the ``n_out`` initial biases, in right-node order.

Right nodes are processed in order; cycle ``c``'s lanes hold processing positions ``c z .. c z + z - 1``
and position ``p`` belongs to the right node ``r`` with ``indptr[r] <= p < indptr[r+1]`` (``indptr`` is
in the JSON for variable in-degree; otherwise ``d_in`` says it). Export needs clash-free patterns (every
memory read once per cycle) and ``z`` dividing the layer width and the edge count.
:func:`load_export` reads it all back to the same patterns, weights and biases.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sparseforge.io import write_text
from sparseforge.topology.network import NetworkTopology
from sparseforge.topology.pattern import Pattern

from .fixed_point import FixedMLP, FixedPoint
from .junction import HardwareError, check_parallelism, junction_model
from .pipeline import ClockModel, pipeline_from_patterns
from .resources import WordLengths, estimate_resources

__all__ = ["ExportedNetwork", "export_network", "load_export", "read_memh", "write_memh"]

SUMMARY = "hardware.json"


def write_memh(path: str | os.PathLike, values: np.ndarray, bits: int) -> Path:
    """Write non-negative integers (already bit patterns, ``< 2**bits``) one per line in hex."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size and (v.min() < 0 or v.max() >= (1 << bits)):
        raise HardwareError(f"{path}: values must lie in [0, 2**{bits}) to fit {bits} bits, got [{v.min()}, {v.max()}]")
    digits = max(1, -(-bits // 4))
    path = Path(path)
    write_text(path, "".join(f"{int(x):0{digits}x}\n" for x in v))
    return path


def read_memh(path: str | os.PathLike) -> np.ndarray:
    """Read a ``$readmemh`` file (one hex word per line; ``//`` comments and blank lines skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("//", 1)[0].strip()
        if line:
            out.extend(int(tok, 16) for tok in line.split())
    return np.asarray(out, dtype=np.int64)


def _bits_for(n: int) -> int:
    """Bits to address ``n`` values (at least 1 so every file has a width)."""
    return max(1, (int(n) - 1).bit_length())


@dataclass(frozen=True, eq=False)
class ExportedNetwork:
    """What :func:`load_export` reads back.

    Attributes:
        patterns: one per junction.
        weights: per junction, int64 codes ``[E]`` in the pattern's CSR order.
        biases: per junction, int64 codes ``[n_out]``.
        weight_format: the word format of weights and biases.
        z: parallelism per junction.
        config: the parsed JSON summary.
    """

    patterns: tuple[Pattern, ...]
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    weight_format: FixedPoint
    z: tuple[int, ...]
    config: dict


def export_network(
    directory: str | os.PathLike,
    net: FixedMLP | NetworkTopology | Sequence[Pattern],
    z: Sequence[int],
    *,
    weights: Sequence[np.ndarray] | None = None,
    biases: Sequence[np.ndarray] | None = None,
    weight_format: FixedPoint | None = None,
    clock: ClockModel = ClockModel(),
    extra: dict | None = None,
) -> Path:
    """Write the memory-initialisation files and ``hardware.json``; returns the JSON's path.

    Args:
        directory: output folder (created; files are written atomically).
        net: a :class:`FixedMLP` (weights and biases taken from it), or patterns plus ``weights``.
        z: parallelism per junction.
        weights: with patterns only: per junction integer codes (``[E]`` CSR order or ``[n_out, d_in]``
            ELL) or real values (quantized with ``weight_format``); default all zero.
        biases: per junction, integer codes or real values ``[n_out]``; default zero.
        weight_format: word format of weights (default ``FixedPoint(10, 2)``, or the net's).
        clock: clock model for the cycle counts in the summary.
        extra: more JSON-ready entries for the summary (e.g. the seed and the training run).
    """
    if isinstance(net, FixedMLP):
        pats = net.patterns
        fmt = weight_format or net.formats.weight
        w_codes = list(net.weights_csr())
        b_codes = list(net.biases)
    else:
        pats = tuple(net.patterns if isinstance(net, NetworkTopology) else net)
        fmt = weight_format or FixedPoint(10, 2)
        w_codes, b_codes = [], []
        for j, p in enumerate(pats):
            w_codes.append(_codes(weights[j] if weights is not None else None, p, fmt, f"junction {j + 1} weights"))
            b = None if biases is None else np.asarray(biases[j])
            if b is not None and b.shape != (p.n_out,):
                raise HardwareError(f"junction {j + 1}: biases of shape {b.shape}; expected ({p.n_out},)")
            b_codes.append(np.zeros(p.n_out, np.int64) if b is None else (b.astype(np.int64) if b.dtype.kind in "iu" else fmt.to_int(b)))
    if len(z) != len(pats):
        raise HardwareError(f"z: {len(pats)} junctions, got {len(z)} values {list(z)}")
    root = Path(directory)
    junctions = []
    for j, p in enumerate(pats):
        where = f"junction {j + 1} ({p.n_in} -> {p.n_out}, W={p.edges})"
        zi = check_parallelism(p.n_in, p.edges, z[j], where)
        rb = int(z[j + 1]) if j + 1 < len(pats) else zi
        m = junction_model(p, zi, right_banks=rb)
        if m.stall_cycles:
            raise HardwareError(
                f"{where}: {len(m.clashes)} memory clashes ({m.stall_cycles} stall cycles) with z={zi}; "
                "export needs a clash-free pattern (family 'clash_free')"
            )
        address, lane = m.bank_address_table()
        mem, row = m.weight_slot()
        wmem = np.zeros((zi, m.cycles), dtype=np.int64)
        wmem[mem, row] = fmt.to_bits(w_codes[j])
        sub = root / f"junction{j + 1}"
        abits, lbits = _bits_for(m.left_depth), _bits_for(zi)
        files = dict(weight=[], addr=[], lane=[], bias="bias.hex")
        for k in range(zi):
            files["weight"].append(write_memh(sub / f"weight_{k}.hex", wmem[k], fmt.word_bits).name)
            files["addr"].append(write_memh(sub / f"addr_{k}.hex", address[:, k], abits).name)
            files["lane"].append(write_memh(sub / f"lane_{k}.hex", lane[:, k], lbits).name)
        write_memh(sub / "bias.hex", fmt.to_bits(b_codes[j]), fmt.word_bits)
        entry = dict(
            junction=j + 1,
            n_in=p.n_in,
            n_out=p.n_out,
            edges=p.edges,
            z=zi,
            d_in=p.d_in if p.is_fixed_in_degree else None,
            d_out=p.d_out if p.is_fixed_out_degree else None,
            indptr=None if p.is_fixed_in_degree else p.indptr.tolist(),
            cycles=m.cycles,
            weight_memories=zi,
            weight_depth=m.weight_depth,
            left_memories=zi,
            left_depth=m.left_depth,
            address_bits=abits,
            lane_bits=lbits,
            directory=sub.name,
            files=files,
        )
        junctions.append(entry)
    report = pipeline_from_patterns(pats, [int(v) for v in z], clock=clock)
    summary = dict(
        format_version=1,
        sizes=[pats[0].n_in] + [p.n_out for p in pats],
        weight_format=dict(word_bits=fmt.word_bits, int_bits=fmt.int_bits, signed=fmt.signed, frac_bits=fmt.frac_bits),
        memory_layout=(
            "left node u: memory u % z, row u // z; weight memory l row c: lane l in cycle c; "
            "addr_b/lane_b row c: row read from left memory b in cycle c and the lane it feeds"
        ),
        junctions=junctions,
        pipeline=report.summary(),
    )
    if all(p.is_fixed_out_degree for p in pats):
        res = estimate_resources(
            summary["sizes"], [p.d_out for p in pats], [int(v) for v in z],
            words=WordLengths(fmt.word_bits, fmt.word_bits, fmt.word_bits), clock=clock,
        )
        summary["resources"] = {k: v for k, v in res.summary().items() if k != "pipeline"}
    if extra:
        summary["extra"] = extra
    path = root / SUMMARY
    write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def _codes(w, p: Pattern, fmt: FixedPoint, what: str) -> np.ndarray:
    if w is None:
        return np.zeros(p.edges, dtype=np.int64)
    w = np.asarray(w)
    if w.shape == (p.n_out, p.edges // max(p.n_out, 1)) and p.is_fixed_in_degree:
        w = w.reshape(-1)
    if w.shape != (p.edges,):
        raise HardwareError(f"{what}: shape {w.shape}; expected ({p.edges},) (CSR order) or [n_out, d_in]")
    return w.astype(np.int64) if w.dtype.kind in "iu" else fmt.to_int(w)


def load_export(directory: str | os.PathLike) -> ExportedNetwork:
    """Read an export back: patterns, weight codes (CSR order) and bias codes, from the hex files alone
    (plus the sizes and row structure in the JSON)."""
    root = Path(directory)
    cfg = json.loads((root / SUMMARY).read_text())
    wf = cfg["weight_format"]
    fmt = FixedPoint(wf["word_bits"], wf["int_bits"], wf["signed"])
    pats, ws, bs, zs = [], [], [], []
    for e in cfg["junctions"]:
        z, sub = int(e["z"]), root / e["directory"]
        cycles, n_in, n_out = int(e["cycles"]), int(e["n_in"]), int(e["n_out"])
        addr = np.stack([read_memh(sub / f) for f in e["files"]["addr"]], axis=1)  # [cycles, z]
        lane = np.stack([read_memh(sub / f) for f in e["files"]["lane"]], axis=1)
        wmem = np.stack([fmt.from_bits(read_memh(sub / f)) for f in e["files"]["weight"]], axis=0)  # [z, cycles]
        if addr.shape != (cycles, z) or lane.shape != (cycles, z) or wmem.shape != (z, cycles):
            raise HardwareError(f"{sub}: memory files do not match cycles={cycles}, z={z}")
        node_at = np.empty((cycles, z), dtype=np.int64)
        c = np.repeat(np.arange(cycles), z)
        b = np.tile(np.arange(z), cycles)
        node_at[c, lane.reshape(-1)] = addr.reshape(-1) * z + b
        indptr = np.arange(n_out + 1) * int(e["d_in"]) if e["indptr"] is None else np.asarray(e["indptr"])
        E = int(e["edges"])
        rows = np.repeat(np.arange(n_out), np.diff(indptr))
        cols = node_at.reshape(-1)[:E]
        w = wmem.T.reshape(-1)[:E]  # position p = c z + l  ->  wmem[l, c]
        order = np.lexsort((cols, rows))
        pats.append(Pattern.from_edges(rows, cols, n_in, n_out))
        ws.append(w[order])
        bs.append(fmt.from_bits(read_memh(sub / e["files"]["bias"])))
        zs.append(z)
    return ExportedNetwork(tuple(pats), tuple(ws), tuple(bs), fmt, tuple(zs), cfg)
