"""The ``sparseforge`` command line: design, train, demo, benchmark."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from .experiments.console import err, out, pct, rich_table

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks: ratios against the best baseline of the same run.")
app.add_typer(bench_app, name="bench")


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit status 2."""


def _ints(text: Optional[str], name: str) -> Optional[list[int]]:
    if text is None:
        return None
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated integers like 784,112,10, got {text!r}") from None


def _floats(text: Optional[str], name: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        vals = [float(v.rstrip("%")) / (100 if v.endswith("%") else 1) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise UserError(f"--{name}: expected comma-separated numbers like 0.5,0.2 or 50%,20%, got {text!r}") from None
    return vals


# ---------------------------------------------------------------------------------------------- topology
def _radices(text: str) -> list[list[int]]:
    lists = [_ints(part, "radices") for part in text.replace(" ", "").split(";") if part]
    if not lists or any(not lst for lst in lists):
        raise UserError(f"--radices: expected lists like 2,2,2 or 10,10;10 (';' between lists), got {text!r}")
    return lists  # type: ignore[return-value]


@app.command()
def topology(
    net: str = typer.Option("784,112,10", help="layer sizes N_0,...,N_L"),
    fan_out: Optional[str] = typer.Option(None, help="out-degree per junction, e.g. 42,10"),
    fan_in: Optional[str] = typer.Option(None, help="in-degree per junction"),
    density: Optional[str] = typer.Option(None, help="density per junction (or one for all), e.g. 0.2 or 20%"),
    rho_net: Optional[float] = typer.Option(None, help="overall density; degrees allocated with the last junction dense"),
    family: str = typer.Option("structured", help="structured, random, clash_free, expander, grouped, radix"),
    z: Optional[int] = typer.Option(None, help="clash_free: degree of parallelism (memory banks)"),
    group: Optional[int] = typer.Option(None, help="grouped: right nodes sharing one index list"),
    radices: Optional[str] = typer.Option(None, help="RadiX-Net radix lists, e.g. 10,10 or 2,2,2;2,2,2 (sizes follow)"),
    widths: Optional[str] = typer.Option(None, help="RadiX-Net dense widths B_0,...,B_L (default all 1)"),
    seed: int = typer.Option(0),
    analyze: bool = typer.Option(False, "--analyze", help="degrees, path counts, spectral gap, scatter"),
    plot: Optional[Path] = typer.Option(None, help="write the adjacency matrices to this PNG"),
    paths_plot: Optional[Path] = typer.Option(None, help="write the input-output path-count histogram to this PNG"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Design a pre-defined sparse network (any family) and print its junction table and overall density."""
    from .config import ModelSpec, parse
    from .topology import analysis, radix_net

    if radices is not None:
        topo = radix_net(_radices(radices), _ints(widths, "widths"))
    else:
        dens = _floats(density, "density")
        options = {k: v for k, v in (("z", z), ("group", group)) if v is not None}
        spec = {"net": _ints(net, "net"), "fan_out": _ints(fan_out, "fan-out"), "fan_in": _ints(fan_in, "fan-in"),
                "density": (dens[0] if dens and len(dens) == 1 else dens), "rho_net": rho_net, "family": family,
                "seed": seed, "options": options}
        topo = parse(ModelSpec, {k: v for k, v in spec.items() if v is not None}, where="").topology()
    rows = topo.table()
    summary = analysis.summarize(topo) if analyze else None
    if as_json:
        out.print_json(json.dumps({"sizes": topo.sizes, "family": topo.family, "junctions": rows, "edges": topo.edges,
                                   "rho_net": topo.rho_net, **({"analysis": summary} if summary else {})}))
    else:
        out.print(rich_table(rows, title=f"N_net = {topo.sizes}, family {topo.family}", fmt={"density": pct}))
        out.print(f"edges {topo.edges:,} of {topo.fc_edges:,} (FC): rho_net = {100 * topo.rho_net:.2f}%")
        if summary:
            jrows = [{"junction": j["junction"], "spectral_gap": j["spectral_gap"], "scatter_fwd": j["scatter_forward"],
                      "scatter_bwd": j["scatter_backward"]} for j in summary["junctions"]]
            out.print(rich_table(jrows, title="expansion and scatter per junction",
                             fmt={k: (lambda v: f"{v:.3f}") for k in ("spectral_gap", "scatter_fwd", "scatter_bwd")}))
            pth = summary.get("paths") or {}
            if pth:
                out.print(f"input-output paths: connectivity {100 * pth['connectivity']:.1f}%, min {pth['min']}, "
                          f"max {pth['max']}, cv {pth['cv']:.3f}{' (all pairs equal)' if pth['uniform'] else ''}")
    if plot or paths_plot:
        from .experiments.topology_plots import plot_adjacency, plot_path_counts

        for path, fn in ((plot, plot_adjacency), (paths_plot, plot_path_counts)):
            if path:
                fn(topo, path)
                err.print(f"wrote {path}")


# ---------------------------------------------------------------------------------------------- train
@app.command()
def train(
    config: Optional[Path] = typer.Option(None, help="YAML run config (sections model, data, train)"),
    net: Optional[str] = typer.Option(None, help="layer sizes, e.g. 784,112,10"),
    fan_out: Optional[str] = typer.Option(None),
    fan_in: Optional[str] = typer.Option(None),
    density: Optional[str] = typer.Option(None, help="junction densities, or one number for every junction"),
    rho_net: Optional[float] = typer.Option(None, help="overall density; degrees allocated with the last junction dense"),
    family: Optional[str] = typer.Option(None),
    dataset: Optional[str] = typer.Option(None, help="mnist, fashion-mnist, digits, morse"),
    data_root: Optional[Path] = typer.Option(None, help="directory with the dataset files"),
    limit: Optional[int] = typer.Option(None, help="use only this many samples per split"),
    epochs: Optional[int] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    lr: Optional[float] = typer.Option(None),
    optimizer: Optional[str] = typer.Option(None, help="adam or sgd"),
    weight_decay: Optional[float] = typer.Option(None, help="L2 coefficient"),
    seed: Optional[int] = typer.Option(None, help="seed for topology, initialisation and shuffling"),
    threads: Optional[int] = typer.Option(None, help="torch threads"),
    run_dir: Path = typer.Option(Path("runs/train"), help="where metrics and checkpoints go"),
    resume: bool = typer.Option(False, help="continue from the checkpoint in --run-dir"),
    quiet: bool = typer.Option(False, help="no progress output"),
) -> None:
    """Train one (sparse or FC) MLP from flags or a YAML config; resumable."""
    import torch

    from . import config as cfgmod
    from . import io
    from .data import load_dataset
    from .experiments.progress import RichProgress
    from .nn import SparseMLP
    from .train import fit

    base = cfgmod.load_yaml(config).model_dump(mode="json") if config else {}
    dens = _floats(density, "density")
    flags = {
        "model": {"net": _ints(net, "net"), "fan_out": _ints(fan_out, "fan-out"), "fan_in": _ints(fan_in, "fan-in"),
                  "density": (dens[0] if dens and len(dens) == 1 else dens), "rho_net": rho_net, "family": family,
                  "seed": seed},
        "data": {"name": dataset, "root": str(data_root) if data_root else None, "limit": limit, "seed": seed},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                  "weight_decay": weight_decay, "seed": seed},
        "threads": threads,
    }
    flags = {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v)
             for k, v in flags.items() if v is not None}
    spec = cfgmod.parse(cfgmod.RunSpec, cfgmod.merge(base, flags))
    if spec.threads:
        torch.set_num_threads(spec.threads)
    topo = spec.model.topology()
    data = load_dataset(spec.data.name, root=spec.data.root, val_size=spec.data.val_size, seed=spec.data.seed,
                        limit=spec.data.limit, **spec.data.options)
    if data.n_features != topo.sizes[0] or data.n_classes != topo.sizes[-1]:
        raise UserError(
            f"model.net={list(topo.sizes)} does not fit dataset {data.name}: it needs N_0 = {data.n_features} "
            f"inputs and N_L = {data.n_classes} outputs"
        )
    io.write_json(run_dir / "spec.json", spec.model_dump(mode="json"))
    torch.manual_seed(spec.model.seed)
    model = SparseMLP(topo)
    err.print(f"model: N_net={topo.sizes}, rho_net={100 * topo.rho_net:.2f}%, {model.num_parameters():,} parameters")
    state = fit(model, data, spec.train.to_config(), callbacks=[RichProgress(enabled=not quiet)],
                run_dir=run_dir, resume=resume)
    m = state.metrics
    out.print(f"test accuracy {100 * m['test_acc']:.2f}% after {m['epoch']} epochs; metrics in {run_dir}")


# ---------------------------------------------------------------------------------------------- demo
@app.command()
def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), help="run directory (resumes what is already there)"),
    epochs: int = typer.Option(15, min=1),
    densities: str = typer.Option("1,0.5,0.2,0.1,0.05,0.02", help="overall densities (1 = FC)"),
    dataset: str = typer.Option("mnist"),
    limit: Optional[int] = typer.Option(None, help="samples per split (for a quick look)"),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, min=1),
    quiet: bool = typer.Option(False),
) -> None:
    """The main job: FC vs pre-defined sparse N=(784,112,10) MLPs on MNIST; table, plot, report."""
    import torch

    from .experiments.demo import DemoConfig, run_demo
    from .experiments.progress import RichProgress

    torch.set_num_threads(threads)
    dens = _floats(densities, "densities") or []
    for d in dens:
        if not 0 < d <= 1:
            raise UserError(f"--densities: each density must be in (0, 1], got {d}")
    cfg = DemoConfig(densities=tuple(dens), epochs=epochs, dataset=dataset, limit=limit, seed=seed)
    err.print(f"demo: {len(dens)} networks on {dataset}, {epochs} epochs each -> {run_dir}")
    rows = run_demo(cfg, run_dir, callbacks_for=lambda label: [RichProgress(label, enabled=not quiet)])
    fc = next((r for r in rows if r["rho_net"] == 1), None)
    show = [
        {"rho_net": r["rho_net"], "fan_out": ",".join(map(str, r["fan_out"])), "params": r["params"],
         "test_acc": r["test_acc"], "vs FC": (r["test_acc"] - fc["test_acc"]) if fc else None,
         "s/epoch": r["epoch_time_s"]}
        for r in rows
    ]
    out.print(rich_table(show, title="pre-defined sparsity vs FC",
                     fmt={"rho_net": pct, "test_acc": pct, "vs FC": lambda v: f"{100 * v:+.2f}",
                          "s/epoch": lambda v: f"{v:.2f}", "params": lambda v: f"{v:,}"}))
    out.print(f"wrote {run_dir}/table.csv, accuracy_vs_density.png, report.md")


# ---------------------------------------------------------------------------------------------- bench
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
    from . import io
    from .experiments.bench_kernels import kernel_table

    _check_clock(clock, threads)
    res = kernel_table(n=n, batch=batch, densities=_floats(densities, "densities") or [], group=group,
                       group_densities=_floats(group_densities, "group-densities") or [], threads=threads,
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
    from . import io
    from .experiments.bench_kernels import challenge

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
    from .experiments.bench_kernels import batch_sweep

    rows = batch_sweep(n=n, density=density, batches=_ints(batches, "batches"), threads=_ints(threads, "threads"),
                       clock=clock)
    _print_rows(rows, f"batch sweep at {n}x{n}, density {100 * density:g}%")


def _register_subcommands() -> None:
    """Commands that live with their experiments: prune, ssl, search, hw, study."""
    from .experiments import hw_cli, prune_cli, search_cli, ssl_cli, study_cli

    for module in (study_cli, prune_cli, ssl_cli, search_cli, hw_cli):
        module.register(app)


_register_subcommands()


def main() -> None:
    """Console entry point: user errors become one clear line and exit status 2."""
    from .config import ConfigError
    from .topology import TopologyError

    from .hardware import HardwareError

    known: tuple[type[BaseException], ...] = (UserError, ConfigError, TopologyError, HardwareError)
    try:
        from .data import DatasetUnavailable

        known += (DatasetUnavailable,)
    except ImportError:  # pragma: no cover
        pass
    try:
        app(standalone_mode=False)
    except known as e:
        err.print(f"[red]error:[/red] {e}")
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted; rerun the same command (with --resume for train) to continue")
        sys.exit(130)
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
