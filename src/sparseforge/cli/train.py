"""``sparseforge train`` and ``sparseforge demo``: one network, or the main job (FC vs sparse on MNIST)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import typer

from .console import err, notice_adjusted, out, pct, rich_table
from .parse import UserError, densities as densities_of, ints, output_dir
from .topology import BLOCK, FAMILY_NAMES, GROUP, Z, family_options


def _one_or_list(vals: Optional[list[float]]):
    return vals[0] if vals and len(vals) == 1 else vals


def _train_spec(config: Optional[Path], flags: dict):
    """The validated run spec: the YAML file (only what it sets), then the flags that were given."""
    from .. import config as cfgmod

    base = cfgmod.load_yaml(config).model_dump(mode="json", exclude_unset=True) if config else {}
    return cfgmod.parse(cfgmod.RunSpec, cfgmod.merge(base, cfgmod.drop_none(flags)),
                        where=f"{config}: " if config else "")


def _fit_to_data(spec, data):
    """``spec`` with ``model.net`` taken from the data (inputs, the default hidden sizes, classes) when
    neither the flags nor the config gave one."""
    from ..config import ModelSpec, RunSpec, parse

    if "net" in spec.model.model_fields_set:
        return spec
    hidden = ModelSpec().net[1:-1]
    model = {**spec.model.model_dump(mode="json", exclude_unset=True),
             "net": [data.n_features, *hidden, data.n_classes]}
    return parse(RunSpec, {**spec.model_dump(mode="json", exclude_unset=True), "model": model})


def _launch(nproc: int) -> int:
    """Run this same ``train`` command as ``nproc`` local data-parallel processes (torchrun --standalone);
    returns their exit status."""
    import os
    import subprocess
    import sys

    from .main import current_args

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--nproc: already running under torchrun (WORLD_SIZE is set); drop --nproc")
    args = current_args()
    keep, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        keep.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "sparseforge", *keep]
    err.print(f"launching {nproc} processes: torchrun --standalone --nproc-per-node {nproc} -m sparseforge "
              + " ".join(keep), markup=False, highlight=False)
    return subprocess.call(cmd)


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``demo`` commands to ``app``."""

    @app.command()
    def train(
        config: Optional[Path] = typer.Option(None, help="YAML run config (sections model, data, train)"),
        net: Optional[str] = typer.Option(None, help="layer sizes, e.g. 784,112,10 [default: the data's inputs, "
                                          "112, the data's classes]"),
        fan_out: Optional[str] = typer.Option(None, help="out-degree per junction, e.g. 28,10"),
        fan_in: Optional[str] = typer.Option(None, help="in-degree per junction"),
        density: Optional[str] = typer.Option(None, help="junction densities, or one number for every junction"),
        rho_net: Optional[float] = typer.Option(None, help="overall density; degrees allocated with the last junction dense"),
        family: Optional[str] = typer.Option(None, help=FAMILY_NAMES),
        z: Optional[int] = Z,
        group: Optional[int] = GROUP,
        block: Optional[int] = BLOCK,
        dataset: Optional[str] = typer.Option(None, help="mnist, fashion-mnist, digits, morse"),
        data_root: Optional[Path] = typer.Option(None, help="directory with the dataset files"),
        limit: Optional[int] = typer.Option(None, help="use only this many samples per split"),
        epochs: Optional[int] = typer.Option(None),
        batch_size: Optional[int] = typer.Option(None),
        lr: Optional[float] = typer.Option(None),
        optimizer: Optional[str] = typer.Option(None, help="adam or sgd"),
        weight_decay: Optional[float] = typer.Option(None, help="L2 coefficient"),
        seed: Optional[int] = typer.Option(None, min=0, help="seed for topology, initialisation and shuffling"),
        threads: Optional[int] = typer.Option(None, help="torch threads (per process)"),
        run_dir: Path = typer.Option(Path("runs/train"), help="where metrics and checkpoints go"),
        resume: bool = typer.Option(False, help="continue the run in --run-dir (same settings; --epochs may grow)"),
        overwrite: bool = typer.Option(False, help="clear --run-dir and start again"),
        nproc: int = typer.Option(1, min=1, max=256, help="data-parallel processes on this machine (each a "
                                  "torchrun rank; gloo on CPU). Under torchrun, leave it at 1"),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Train one (sparse or FC) MLP from flags or a YAML config; resumable with --resume; data-parallel
        with --nproc N or under torchrun."""
        output_dir(run_dir, "run-dir")
        if nproc > 1:
            raise typer.Exit(_launch(nproc))
        spec = _train_spec(config, dict(
            model={"net": ints(net, "net", 1), "fan_out": ints(fan_out, "fan-out", 1), "fan_in": ints(fan_in, "fan-in", 1),
                   "density": _one_or_list(densities_of(density, "density")), "rho_net": rho_net, "family": family,
                   "seed": seed, "options": family_options(family, z, group, block) or None},
            data={"name": dataset, "root": str(data_root) if data_root else None, "limit": limit, "seed": seed},
            train={"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                   "weight_decay": weight_decay, "seed": seed},
            threads=threads,
        ))
        import torch

        from .. import io
        from ..data import load_dataset
        from ..nn import SparseMLP
        from ..runs import RunStore
        from ..runs.progress import Progress
        from ..train.distributed import fit_distributed, init_from_env

        if spec.threads:
            torch.set_num_threads(spec.threads)
        data = load_dataset(spec.data.name, root=spec.data.root, val_size=spec.data.val_size, seed=spec.data.seed,
                            limit=spec.data.limit, **spec.data.options)
        spec = _fit_to_data(spec, data)
        topo = spec.model.topology()
        if data.n_features != topo.sizes[0] or data.n_classes != topo.sizes[-1]:
            raise UserError(
                f"model.net={list(topo.sizes)} does not fit dataset {data.name}: it needs N_0 = {data.n_features} "
                f"inputs and N_L = {data.n_classes} outputs (leave --net out to take them from the data)"
            )
        rank, world = init_from_env()
        lead = rank == 0  # rank 0 holds the run directory; the other ranks only train
        settings = spec.model_dump(mode="json", exclude={"threads"})  # what the results depend on
        hint = "pass --resume to continue it, --overwrite to start again, or use a new --run-dir"
        store = (RunStore(run_dir, settings, command="train", overwrite=overwrite, mutable=("train.epochs",),
                          refuse_existing=None if resume else hint) if lead else contextlib.nullcontext())
        with store:
            if lead:
                notice_adjusted(spec.model.density, topo)
                io.write_json(run_dir / "spec.json", spec.model_dump(mode="json"))
            torch.manual_seed(spec.model.seed)
            model = SparseMLP(topo)
            if lead:
                err.print(f"model: N_net={topo.sizes}, rho_net={100 * topo.rho_net:.2f}%, {model.num_parameters():,} "
                          f"parameters" + (f"; {world} processes (data parallel)" if world > 1 else ""), markup=False)
            state = fit_distributed(model, data, spec.train.to_config(), run_dir=run_dir, resume=resume,
                                    callbacks=[Progress(enabled=lead and not quiet)],
                                    settings={k: settings[k] for k in ("model", "data")})
        m = state.metrics
        if lead:
            out.print(f"test accuracy {100 * m['test_acc']:.2f}% after {m['epoch']} epochs; metrics in {run_dir}")
        _leave_group()

    @app.command()
    def demo(
        run_dir: Path = typer.Option(Path("runs/demo"), help="run directory (resumes a demo of the same settings)"),
        epochs: int = typer.Option(15, min=1),
        densities: str = typer.Option("1,0.5,0.2,0.1,0.05,0.02", help="overall densities (1 = FC)"),
        dataset: str = typer.Option("mnist"),
        limit: Optional[int] = typer.Option(None, help="samples per split (for a quick look)"),
        seed: int = typer.Option(0, min=0),
        threads: int = typer.Option(2, min=1),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a demo of other settings) and start again"),
        quiet: bool = typer.Option(False),
    ) -> None:
        """The main job: FC vs pre-defined sparse N=(784,112,10) MLPs on MNIST; table, plot, report."""
        import torch

        from ..runs.progress import Progress
        from ..studies.demo import DemoConfig, run_demo

        output_dir(run_dir, "run-dir")
        torch.set_num_threads(threads)
        dens = densities_of(densities, "densities") or []
        cfg = DemoConfig(densities=tuple(dens), epochs=epochs, dataset=dataset, limit=limit, seed=seed)
        err.print(f"demo: {len(dens)} networks on {dataset}, {epochs} epochs each -> {run_dir}")
        rows = run_demo(cfg, run_dir, callbacks_for=lambda label: [Progress(label, enabled=not quiet)],
                        overwrite=overwrite)
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
