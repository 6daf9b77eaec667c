"""``sparseforge bench``: kernel benchmarks, ratios against the best baseline of the same run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from .console import err, notice, out, pct, rich_table, typer_app
from .parse import UserError, choice, densities as parse_densities, file_arg, ints, number, output_file

bench_app = typer_app(help="Benchmarks: ratios against the best baseline of the same run.")

# options every benchmark shares (one definition; typer reads them as parameter defaults)
CLOCK = typer.Option("wall", help="wall, or cpu (this thread's CPU time; with --threads 1 on busy machines)")
JSON_OUT = typer.Option(None, "--json", metavar="<path>", parser=file_arg("json", "bench.json"),
                        help="also write the results here")
QUIET = typer.Option(False, help="no progress output")


def _print_rows(rows: list[dict], title: str) -> None:
    fmt = {k: (lambda v: f"{v:.2f}") for k, v in rows[0].items() if isinstance(v, float)} if rows else {}
    if rows and "density" in rows[0]:
        fmt["density"] = pct
    out.print(rich_table(rows, title=title, fmt=fmt))


def _check_clock(clock: str, threads: int) -> None:
    choice(clock, "clock", ("wall", "cpu"))
    if clock == "cpu" and threads != 1:
        raise UserError(f"--clock cpu times this thread only: use it with --threads 1 (got {threads})")


def _steps(label: str, what: str, quiet: bool):
    """``on_round(done, total)`` for the benchmarks: one progress line per finished step (the one display)."""
    from ..runs.progress import Progress

    progress = Progress(label, enabled=not quiet)
    return lambda done, total: progress.step(done, total, what) if done else None


def _notice_rounded(asked: list[float], got: list[float]) -> None:
    """A notice for each density that the pattern's whole out-degree made different from what was asked."""
    for a, g in zip(asked, got):
        if abs(a - g) > 1e-9:
            notice(f"density {100 * a:g}% was rounded to {100 * g:.2f}% (a whole out-degree per node)")


@bench_app.command("linear")
def bench_linear(
    n: int = typer.Option(4096, min=1, help="N_in = N_out"),
    batch: int = typer.Option(256, min=1),
    densities: str = typer.Option("1,0.5,0.2,0.1,0.05,0.01"),
    group: int = typer.Option(4, min=1, help="group size G of the grouped pattern"),
    group_densities: str = typer.Option("0.1", help="densities of grouped patterns ('' for none)"),
    block: int = typer.Option(8, help="block size b of the block pattern (4, 8 or 16)"),
    block_densities: str = typer.Option("0.1", help="densities of block patterns ('' for none)"),
    threads: int = typer.Option(2, min=1),
    repeats: int = typer.Option(5, min=1),
    clock: str = CLOCK,
    compile_density: Optional[float] = typer.Option(
        0.1, min=1e-9, max=1, help="density of the torch.compile training-step row (0 < d <= 1); --no-compile skips it"),
    compile: bool = typer.Option(True, help="also time a SparseMLP training step under torch.compile vs eager"),
    json_out: Optional[Path] = JSON_OUT,
    quiet: bool = QUIET,
    device: str = typer.Option("cpu", help="cpu, or cuda (cuda:N): the GPU table (Triton kernels vs cuBLAS, "
                                           "cuSPARSE CSR, 2:4 semi-structured)"),
    dtypes: Optional[str] = typer.Option(None, help="with --device cuda: dtypes to time, from float16, bfloat16, "
                                                     "float32 (default float16,float32)"),
) -> None:
    """SparseLinear (each kernel backend; feature-major forward_fm and the drop-in layer(x), "_bm") vs
    nn.Linear / torch.mm / oneDNN and torch CSR, forward and training step, all timed in one interleaved run;
    speedup = best dense time / sparse time. Then a SparseMLP training step compiled (torch.compile, fullgraph)
    vs eager. With --device cuda: the GPU table instead (CUDA-event medians, ratios vs cuBLAS dense)."""
    if device != "cpu":
        _bench_gpu(device, n, batch, densities, dtypes or "float16,float32", block, repeats, clock, json_out)
        return
    if dtypes is not None:
        raise UserError(f"--dtypes={dtypes!r} is for --device cuda; the CPU table times float32")
    _check_clock(clock, threads)
    dens = parse_densities(densities, "densities") or []
    gdens = parse_densities(group_densities, "group-densities") if group_densities.strip() else []
    bdens = parse_densities(block_densities, "block-densities") if block_densities.strip() else []
    if n % group:
        raise UserError(f"--group: {group} must divide --n {n} (grouped patterns share index lists by groups)")
    from ..topology.block import BLOCK_SIZES

    if block not in BLOCK_SIZES:
        raise UserError(f"--block: {block} is not allowed; choose one of {', '.join(map(str, BLOCK_SIZES))}")
    if bdens and n % block:
        raise UserError(f"--block: {block} must divide --n {n} (block patterns are made of whole b x b blocks)")
    output_file(json_out, "json")
    from .. import io
    from ..studies.bench import compile_step, kernel_table

    res = kernel_table(n=n, batch=batch, densities=dens, group=group, group_densities=gdens or [],
                       threads=threads, repeats=repeats, clock=clock,
                       on_round=_steps(f"bench linear {n}x{n}:", "timing rounds done", quiet),
                       block=block, block_densities=bdens or [])
    _notice_rounded(dens + (gdens or []) + (bdens or []),
                    [r["density"] for r in res["rows"] if r["backend"] == "stock"])
    dense = ", ".join(f"{k}: " + "/".join(f"{v:.1f}" for v in ops.values()) for k, ops in res["dense"].items())
    out.print(f"dense baselines (fwd/train ms): {dense}")
    keep = ("pattern", "group", "density", "backend", "fwd_ms", "grad_input_ms", "grad_values_ms", "train_ms",
            "fwd_bm_ms", "train_bm_ms", "torch_csr_fwd_ms", "fwd_gflops", "speedup_fwd", "speedup_train",
            "speedup_fwd_bm", "speedup_train_bm")
    _print_rows([{k: r[k] for k in keep} for r in res["rows"]],
                f"SparseLinear {n}x{n}, batch {batch}, {threads} threads, {clock} clock (speedup vs best dense)")
    if compile:
        res["compile"] = compile_step(n=n, batch=batch, density=compile_density, threads=threads, repeats=repeats,
                                      clock=clock)
        _print_rows(res["compile"], f"SparseMLP ({n}, {n}, 10) training step: torch.compile(fullgraph) vs eager "
                                    "(compiled_vs_eager = compiled / eager time)")
    if json_out:
        io.write_json(json_out, res)


def _bench_gpu(device: str, n: int, batch: int, densities: str, dtypes: str, block: int, repeats: int,
               clock: str, json_out: Optional[Path]) -> None:
    """``bench linear --device cuda``: :func:`sparseforge.studies.gpu_bench.gpu_table`, printed per dtype."""
    import re

    if not re.fullmatch(r"cuda(:\d+)?", device):
        raise UserError(f"--device: {device!r} is not allowed; choose cpu, cuda or cuda:N")
    if clock != "wall":
        raise UserError(f"--clock {clock}: the GPU table is timed with CUDA events; drop --clock")
    dens = parse_densities(densities, "densities") or []
    if n % block:
        raise UserError(f"--block: {block} must divide --n {n} (block patterns are made of whole b x b blocks)")
    from ..studies.gpu_bench import DTYPES, gpu_table

    names = [choice(d.strip(), "dtypes", DTYPES) for d in dtypes.split(",")]
    output_file(json_out, "json")
    from .. import io

    res = gpu_table(n=n, batch=batch, densities=dens, dtypes=names,
                    block=block, repeats=repeats, device=device)
    setup = res["setup"]
    out.print(f"device: {setup['device']}, torch {setup['torch']}, {n}->{n}, batch {batch}")
    for note in res["notes"]:
        notice(note)
    keep = ("contender", "density", "fwd_ms", "train_ms", "x_fwd", "x_train")
    for dname in dict.fromkeys(r["dtype"] for r in res["rows"]):
        rows = [{k: ("–" if r[k] is None else r[k]) for k in keep} for r in res["rows"] if r["dtype"] == dname]
        _print_rows(rows, f"{dname}: ratio = best dense of this run / contender (higher is faster)")
    if json_out:
        io.write_json(json_out, res)


@bench_app.command("challenge")
def bench_challenge(
    neurons: int = typer.Option(1024, min=2),
    layers: int = typer.Option(120, min=1),
    connections: int = typer.Option(32, min=1),
    inputs: int = typer.Option(1024, min=1),
    batch: int = typer.Option(256, min=1),
    threads: int = typer.Option(2, min=1),
    repeats: int = typer.Option(2, min=1),
    clock: str = typer.Option("wall", help="wall, or cpu (with --threads 1)"),
    json_out: Optional[Path] = JSON_OUT,
    quiet: bool = QUIET,
) -> None:
    """Sparse DNN Graph Challenge inference Y <- min(max(YW + b, 0), 32) over RadiX-Net layers:
    edges/s against scipy.sparse CSR on the same generated inputs, results checked equal."""
    _check_clock(clock, threads)
    output_file(json_out, "json")
    from .. import io
    from ..studies.bench import challenge, check_challenge

    check_challenge(neurons, connections)
    res = challenge(neurons=neurons, layers=layers, connections=connections, inputs=inputs, batch=batch,
                    threads=threads, repeats=repeats, clock=clock,
                    on_round=_steps("bench challenge:", "timing rounds done", quiet))
    _print_rows(res["rows"], f"challenge: {neurons} neurons, {layers} layers, {connections} connections")
    out.print(f"check: {res['check']}")
    if json_out:
        io.write_json(json_out, res)


@bench_app.command("batch")
def bench_batch(
    n: int = typer.Option(4096, min=1),
    density: float = typer.Option(0.1, help="density of the structured pattern, in (0, 1]"),
    batches: str = typer.Option("1,16,64,256,1024", help="batch sizes, each >= 1"),
    threads: str = typer.Option("1,2", help="thread counts, each >= 1"),
    clock: str = typer.Option("wall", help="wall, or cpu (applies to the 1-thread points)"),
    quiet: bool = QUIET,
) -> None:
    """Forward GFLOP/s of each backend (forward_fm, and layer(x) as "_bm") and of torch.mm against batch size
    and thread count."""
    number(density, "density", low=0, high=1, low_open=True)
    choice(clock, "clock", ("wall", "cpu"))
    batch_list, thread_list = ints(batches, "batches", min_value=1), ints(threads, "threads", min_value=1)
    from ..studies.bench import batch_sweep

    rows = batch_sweep(n=n, density=density, batches=batch_list, threads=thread_list, clock=clock,
                       on_round=_steps("bench batch:", "points measured", quiet))
    if rows:
        _notice_rounded([density], [rows[0]["density"]])
    _print_rows(rows, f"batch sweep at {n}x{n}, density {100 * density:g}%")


@bench_app.command("latency")
def bench_latency(
    sizes: str = typer.Option("784,300,100,10", help="layer widths of the MLP (default LeNet-300-100), each >= 1"),
    sparsity: float = typer.Option(0.95, help="fraction of each weight matrix pruned, in [0, 1)"),
    batches: str = typer.Option("1,4,16", help="batch sizes, each >= 1"),
    threads: int = typer.Option(1, min=1),
    repeats: int = typer.Option(5, min=1),
    calls: int = typer.Option(200, min=1, help="calls per timing round"),
    clock: str = CLOCK,
    json_out: Optional[Path] = JSON_OUT,
    quiet: bool = QUIET,
) -> None:
    """Inference latency of a pruned MLP at small batches: SparseLinear layers (random patterns, variable
    in-degree) vs the dense nn.Linear network, called as users call them (x[batch, n], no_grad), one
    interleaved run; speedup = dense / sparse time. Per-layer sparse times show where the time goes."""
    widths = ints(sizes, "sizes", min_value=1)
    if len(widths) < 2:
        raise UserError(f"--sizes: give at least two layer widths (input and output), got {sizes!r}")
    number(sparsity, "sparsity", low=0, high=1)
    if sparsity >= 1:
        raise UserError(f"--sparsity: must be below 1 (every layer keeps at least one weight), got {sparsity:g}")
    batch_list = ints(batches, "batches", min_value=1)
    _check_clock(clock, threads)
    output_file(json_out, "json")
    from .. import io
    from ..studies.bench import latency

    res = latency(sizes=widths, sparsity=sparsity, batches=batch_list, threads=threads, repeats=repeats,
                  number=calls, clock=clock, on_round=_steps("bench latency:", "batch sizes measured", quiet))
    rows = [{**{k: v for k, v in r.items() if k != "sparse_layer_us"},
             "sparse_layers_us": " / ".join(f"{v:.1f}" for v in r["sparse_layer_us"])} for r in res["rows"]]
    _print_rows(rows, f"pruned MLP {'-'.join(map(str, widths))} at {100 * sparsity:g}% sparsity, {threads} threads, "
                      f"{clock} clock, backend {res['setup']['backend']} (speedup = dense / sparse)")
    if json_out:
        io.write_json(json_out, res)


@bench_app.command("ff")
def bench_ff(
    tokens: int = typer.Option(4096, min=1, help="rows of x[tokens, n_in] (batch x sequence)"),
    density: float = typer.Option(0.1, help="density of the sparse layers, in (0, 1]"),
    block: int = typer.Option(8, help="block size b of the block pattern (4, 8 or 16)"),
    threads: int = typer.Option(1, min=1),
    repeats: int = typer.Option(5, min=1),
    clock: str = CLOCK,
    json_out: Optional[Path] = JSON_OUT,
    quiet: bool = QUIET,
) -> None:
    """Transformer feed-forward shapes (512 -> 2048, 2048 -> 512): a training step of SparseLinear (block and
    unstructured patterns) vs nn.Linear on x[tokens, n_in], one interleaved run per shape; speedup = nn.Linear
    time / sparse time."""
    number(density, "density", low=0, high=1, low_open=True)
    from ..topology.block import BLOCK_SIZES

    choice(str(block), "block", tuple(map(str, BLOCK_SIZES)))
    _check_clock(clock, threads)
    output_file(json_out, "json")
    from .. import io
    from ..studies.bench import feed_forward

    res = feed_forward(tokens=tokens, density=density, block=block, threads=threads, repeats=repeats, clock=clock,
                       on_round=_steps("bench ff:", "shapes measured", quiet))
    _print_rows(res["rows"], f"feed-forward training step, {tokens} tokens, {threads} threads, {clock} clock "
                             "(speedup = nn.Linear / contender)")
    if json_out:
        io.write_json(json_out, res)


def _ratio_cell(ms, ratio) -> str:
    return "–" if ms is None else f"{ratio:.2f}"


@bench_app.command("peers")
def bench_peers(
    shapes: str = typer.Option("issue", help="issue (issue 16's shapes, minutes) or small (tiny, seconds)"),
    threads: int = typer.Option(1, min=1),
    repeats: int = typer.Option(5, min=1),
    clock: str = CLOCK,
    json_out: Optional[Path] = JSON_OUT,
    quiet: bool = QUIET,
) -> None:
    """SparseLinear (layer(x) and forward_fm) against torch CSR, scipy.sparse CSR, GraphBLAS and SparseProp,
    forward and training step, each shape timed in one interleaved run; ratio = best dense time (oneDNN,
    nn.Linear, torch.mm) / contender time ('–': the contender has no such step or is not installed). Each peer's
    output is checked against sparseforge's once per shape."""
    from ..studies.peers import SHAPES

    choice(shapes, "shapes", tuple(SHAPES))
    _check_clock(clock, threads)
    output_file(json_out, "json")
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read when the peers' OpenMP starts (SparseProp's C++ kernels)
    from .. import io
    from ..studies.peers import PeerMismatch, peers

    try:
        res = peers(SHAPES[shapes], threads=threads, repeats=repeats, clock=clock,
                    on_round=_steps(f"bench peers ({shapes}):", "timing rounds done", quiet))
    except PeerMismatch as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    for name, pkg in res["missing"].items():
        notice(f"{name} is not installed (pip install {pkg}); its column shows '–'")
    for sh in res["shapes"]:
        dens = sorted({r["density"] for r in sh["rows"]}, reverse=True)
        table = []
        for name in dict.fromkeys(r["contender"] for r in sh["rows"]):
            cells = {r["density"]: r for r in sh["rows"] if r["contender"] == name}
            row: dict = {"contender": name}
            for op in ("fwd", "train"):
                for d in dens:
                    c = cells[d]
                    row[f"{op} {100 * d:.3g}%"] = _ratio_cell(c[f"{op}_ms"], c[f"ratio_{op}"])
            table.append(row)
        dense = ", ".join(f"{k}: " + "/".join(f"{v:.3g}" for v in ops.values()) for k, ops in sh["dense"].items())
        out.print(f"{sh['n_in']}->{sh['n_out']}, batch {sh['batch']}: dense (fwd/train ms) {dense}")
        out.print(rich_table(table, title=f"{sh['n_in']}->{sh['n_out']}, batch {sh['batch']}, {threads} threads, "
                                          f"{clock} clock: ratio = best dense / contender"))
        for d, diffs in sh["check"].items():
            out.print(f"check at density {d}: max abs diff vs sparseforge layer(x): "
                      + ", ".join(f"{k} {v:.2g}" for k, v in diffs.items() if k != "sparseforge layer(x)"))
    if json_out:
        io.write_json(json_out, res)


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group to ``app``."""
    app.add_typer(bench_app, name="bench")
