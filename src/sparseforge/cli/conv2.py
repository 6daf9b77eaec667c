"""``sparseforge conv2``: seed 001's conv nets with pre-defined sparse classifiers (savings table, FC vs sparse)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import err, out, pct, rich_table
from .parse import UserError, choice, ints, output_dir


def register(app: typer.Typer) -> None:
    """Add the ``conv2`` command to ``app``."""

    @app.command("conv2")
    def conv2(
        recipe: str = typer.Option("mnist-conv2", help="a conv net of seed 001 (`sparseforge recipes` lists them)"),
        fan_out: Optional[str] = typer.Option(None, help="classifier fan-outs, e.g. 16,10 (default: the recipe's)"),
        dataset: Optional[str] = typer.Option(None, help="default: the recipe's"),
        data_root: Optional[Path] = typer.Option(None, help="dataset files (CIFAR: the python-pickle batches)"),
        epochs: int = typer.Option(1, help="training epochs for FC and sparse (0: savings table only)"),
        limit: Optional[int] = typer.Option(None, help="use only this many samples per split"),
        seed: int = typer.Option(0),
        threads: int = typer.Option(2, help="torch threads"),
        run_dir: Optional[Path] = typer.Option(None, help="default runs/conv2_RECIPE; resumes"),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a run of other settings) and start again"),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Savings of a sparse classifier behind conv layers, computed from the model, beside seed 001's table."""
        output_dir(run_dir, "run-dir")
        import torch

        from ..data import DATASETS

        choice(dataset, "dataset", sorted(DATASETS))  # before any training ('' used to mean the recipe's)

        from ..runs.progress import Progress
        from ..studies.conv2 import Conv2Config, run_conv2

        try:
            cfg = Conv2Config(recipe=recipe, fan_out=tuple(ints(fan_out, "fan-out")) if fan_out else None,
                              dataset=dataset, data_root=str(data_root) if data_root else None, epochs=epochs,
                              limit=limit, seed=seed)
            from ..nn.conv_recipes import conv_recipe

            conv_recipe(cfg.recipe, fan_out=cfg.fan_out)  # validates the fan-outs before any data is read
        except ValueError as e:
            raise UserError(str(e)) from None
        if threads < 1:
            raise UserError(f"--threads={threads} must be >= 1")
        torch.set_num_threads(threads)
        rd = run_dir or Path("runs") / f"conv2_{recipe}"
        try:
            res = run_conv2(cfg, rd, callbacks_for=lambda label: [Progress(label, enabled=not quiet)],
                            overwrite=overwrite)
        except ValueError as e:
            raise UserError(str(e)) from None
        out.print(rich_table(res["savings"], title=f"{recipe}: savings from the sparse classifier"))
        if res["accuracy"]:
            out.print(rich_table([{k: r[k] for k in ("model", "fan_out", "cl_density", "params", "test_acc")}
                                  for r in res["accuracy"]], title=f"after {epochs} epoch(s)",
                                 fmt={"cl_density": pct, "test_acc": pct, "params": lambda v: f"{v:,}"}))
        err.print(f"wrote {rd}/report.md, savings.csv" + (", table.csv" if res["accuracy"] else ""))
