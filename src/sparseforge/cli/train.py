"""``sparseforge train`` and ``sparseforge demo``: one network, or the main job (FC vs sparse on MNIST)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import err, out, pct, rich_table
from .parse import UserError, floats, ints


def register(app: typer.Typer) -> None:
    """Add the ``train`` and ``demo`` commands to ``app``."""

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
        resume: bool = typer.Option(False, help="continue the run in --run-dir (same settings; --epochs may grow)"),
        overwrite: bool = typer.Option(False, help="clear --run-dir and start again"),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Train one (sparse or FC) MLP from flags or a YAML config; resumable with --resume."""
        import torch

        from .. import config as cfgmod
        from .. import io
        from ..data import load_dataset
        from ..nn import SparseMLP
        from ..runs import RunStore
        from ..runs.progress import Progress
        from ..train import fit

        base = cfgmod.load_yaml(config).model_dump(mode="json") if config else {}
        dens = floats(density, "density")
        flags = {
            "model": {"net": ints(net, "net"), "fan_out": ints(fan_out, "fan-out"), "fan_in": ints(fan_in, "fan-in"),
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
        settings = spec.model_dump(mode="json", exclude={"threads"})  # what the results depend on
        hint = "pass --resume to continue it, --overwrite to start again, or use a new --run-dir"
        with RunStore(run_dir, settings, command="train", overwrite=overwrite, mutable=("train.epochs",),
                      refuse_existing=None if resume else hint):
            io.write_json(run_dir / "spec.json", spec.model_dump(mode="json"))
            torch.manual_seed(spec.model.seed)
            model = SparseMLP(topo)
            err.print(f"model: N_net={topo.sizes}, rho_net={100 * topo.rho_net:.2f}%, "
                      f"{model.num_parameters():,} parameters")
            state = fit(model, data, spec.train.to_config(), callbacks=[Progress(enabled=not quiet)],
                        run_dir=run_dir, resume=resume, settings={k: settings[k] for k in ("model", "data")})
        m = state.metrics
        out.print(f"test accuracy {100 * m['test_acc']:.2f}% after {m['epoch']} epochs; metrics in {run_dir}")

    @app.command()
    def demo(
        run_dir: Path = typer.Option(Path("runs/demo"), help="run directory (resumes a demo of the same settings)"),
        epochs: int = typer.Option(15, min=1),
        densities: str = typer.Option("1,0.5,0.2,0.1,0.05,0.02", help="overall densities (1 = FC)"),
        dataset: str = typer.Option("mnist"),
        limit: Optional[int] = typer.Option(None, help="samples per split (for a quick look)"),
        seed: int = typer.Option(0),
        threads: int = typer.Option(2, min=1),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a demo of other settings) and start again"),
        quiet: bool = typer.Option(False),
    ) -> None:
        """The main job: FC vs pre-defined sparse N=(784,112,10) MLPs on MNIST; table, plot, report."""
        import torch

        from ..runs.progress import Progress
        from ..studies.demo import DemoConfig, run_demo

        torch.set_num_threads(threads)
        dens = floats(densities, "densities") or []
        for d in dens:
            if not 0 < d <= 1:
                raise UserError(f"--densities: each density must be in (0, 1], got {d}")
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
