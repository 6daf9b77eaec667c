"""``sparseforge bench``: kernel benchmarks, ratios against the best baseline of the same run."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import out, pct, rich_table
from .parse import UserError, floats, ints

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: ratios against the best baseline of the same run.")


def _print_rows(rows: list[dict], title: str) -> None:
    fmt = {k: (lambda v: f"{v:.2f}") for k, v in rows[0].items() if isinstance(v, float)} if rows else {}
    if rows and "density" in rows[0]:
        fmt["density"] = pct
    out.print(rich_table(rows, title=title, fmt=fmt))


def _check_clock(clock: str, threads: int) -> None:
    if clock not in ("wall", "cpu"):
        raise UserError(f"--clock: {clock!r} is not allowed; choose wall or cpu")
    if clock == "cpu" and threads != 1:
        raise UserError(f"--clock cpu times this thread only: use it with --threads 1 (got {threads})")


@bench_app.command("linear")
def bench_linear(
    n: int = typer.Option(4096, min=1, help="N_in = N_out"),
    batch: int = typer.Option(256, min=1),
    densities: str = typer.Option("1,0.5,0.2,0.1,0.05,0.01"),
    group: int = typer.Option(4, min=1, help="group size G of the grouped pattern"),
    group_densities: str = typer.Option("0.1", help="densities of grouped patterns ('' for none)"),
    threads: int = typer.Option(2, min=1),
    repeats: int = typer.Option(5, min=1),
    clock: str = typer.Option("wall", help="wall, or cpu (this thread's CPU time; with --threads 1 on busy machines)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results here"),
) -> None:
    """SparseLinear (each kernel backend) vs nn.Linear / torch.mm / oneDNN and torch CSR, forward and
    training step, all timed in one interleaved run; speedup = best dense time / sparse time."""
    from .. import io
    from ..studies.bench import kernel_table

    _check_clock(clock, threads)
    res = kernel_table(n=n, batch=batch, densities=floats(densities, "densities") or [], group=group,
                       group_densities=floats(group_densities, "group-densities") or [], threads=threads,
                       repeats=repeats, clock=clock)
    dense = ", ".join(f"{k}: " + "/".join(f"{v:.1f}" for v in ops.values()) for k, ops in res["dense"].items())
    out.print(f"dense baselines (fwd/train ms): {dense}")
    keep = ("pattern", "group", "density", "backend", "fwd_ms", "train_ms", "torch_csr_fwd_ms", "fwd_gflops",
            "speedup_fwd", "speedup_train")
    _print_rows([{k: r[k] for k in keep} for r in res["rows"]],
                f"SparseLinear {n}x{n}, batch {batch}, {threads} threads, {clock} clock (speedup vs best dense)")
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
    clock: str = typer.Option("wall"),
    json_out: Optional[Path] = typer.Option(None, "--json"),
) -> None:
    """Sparse DNN Graph Challenge inference Y <- min(max(YW + b, 0), 32) over RadiX-Net layers:
    edges/s against scipy.sparse CSR on the same generated inputs, results checked equal."""
    from .. import io
    from ..studies.bench import challenge

    _check_clock(clock, threads)
    res = challenge(neurons=neurons, layers=layers, connections=connections, inputs=inputs, batch=batch,
                    threads=threads, repeats=repeats, clock=clock)
    _print_rows(res["rows"], f"challenge: {neurons} neurons, {layers} layers, {connections} connections")
    out.print(f"check: {res['check']}")
    if json_out:
        io.write_json(json_out, res)


@bench_app.command("batch")
def bench_batch(
    n: int = typer.Option(4096, min=1),
    density: float = typer.Option(0.1, min=0, max=1),
    batches: str = typer.Option("1,16,64,256,1024"),
    threads: str = typer.Option("1,2"),
    clock: str = typer.Option("wall"),
) -> None:
    """Forward GFLOP/s of each backend and of torch.mm against batch size and thread count."""
    from ..studies.bench import batch_sweep

    rows = batch_sweep(n=n, density=density, batches=ints(batches, "batches"), threads=ints(threads, "threads"),
                       clock=clock)
    _print_rows(rows, f"batch sweep at {n}x{n}, density {100 * density:g}%")


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command group to ``app``."""
    app.add_typer(bench_app, name="bench")
