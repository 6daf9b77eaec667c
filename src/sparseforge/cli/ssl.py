"""The ``sparseforge ssl`` command: structured sparsity learning recipes (seed 002).

Hook it into an app with :func:`register` (``register(app)`` adds the ``ssl`` command). A recipe is a YAML
file (``--config``) or a packaged one (``--recipe``: lenet-filter, lenet-shape, resnet-depth, tiny),
validated by :class:`~sparseforge.studies.ssl.SSLSpec` (unknown keys are errors); flags override the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import err, out
from .parse import UserError, output_dir
from ..config import ConfigError, drop_none, load_yaml, merge, parse, recipe_names, resolve_recipe

RECIPES = tuple(recipe_names("ssl_"))


def recipe_path(name: str) -> Path:
    """The packaged YAML of recipe ``name`` (one of :data:`RECIPES`; ``ssl_tiny`` or ``tiny``)."""
    path = resolve_recipe(Path(name).name, "ssl_")
    if path.parent != resolve_recipe("tiny", "ssl_").parent:  # --recipe names a packaged one; files go in --config
        raise ConfigError(f"--recipe {name!r}: choose one of {', '.join(RECIPES)} (a YAML file goes in --config)")
    return path


def load_spec(config: Optional[Path], recipe: Optional[str], overrides: dict):
    """Packaged recipe and/or YAML file (the file wins), then flag overrides; one validation at the end."""
    from ..studies.ssl import SSLSpec  # here, not at the top: the schema loads torch

    base: dict = SSLSpec().model_dump(mode="json")      # nested defaults survive partial sections
    if recipe:
        base = load_yaml(recipe_path(recipe), SSLSpec).model_dump(mode="json", exclude_unset=True)
    if config:
        base = merge(base, load_yaml(config, SSLSpec).model_dump(mode="json", exclude_unset=True))
    where = f"{config}: " if config else (f"recipe {recipe}: " if recipe else "")
    return parse(SSLSpec, merge(base, overrides), where=where)




def _sparsity_line(label: str, enabled: bool):
    """A callback printing the fraction of zero groups per kind after every epoch (stderr)."""
    from ..train import Callback

    console = err

    class SparsityLine(Callback):
        def on_epoch_end(self, state) -> None:
            zs = {k[5:]: v for k, v in state.metrics.items() if k.startswith("zero_")}
            if enabled and zs:
                pen = state.metrics.get("ssl_penalty")
                console.print(f"{label} epoch {state.epoch:>3}: zero groups "
                              + ", ".join(f"{k} {100 * v:.1f}%" for k, v in zs.items())
                              + (f" | penalty {pen:.4f}" if pen is not None else ""))

    return SparsityLine()


def register(app: typer.Typer) -> None:
    """Add the ``ssl`` command to ``app``."""

    @app.command("ssl")
    def ssl_command(
        recipe: Optional[str] = typer.Option(None, help=f"packaged recipe: {', '.join(RECIPES)}"),
        config: Optional[Path] = typer.Option(None, help="YAML recipe (sections model, data, train, ssl, variants, bench)"),
        run_dir: Path = typer.Option(Path("runs/ssl"), help="run directory (resumes a run of the same settings)"),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a run of other settings) and start again"),
        dataset: Optional[str] = typer.Option(None, help="mnist, fashion-mnist, digits"),
        limit: Optional[int] = typer.Option(None, help="samples per split (for a quick look)"),
        epochs: Optional[int] = typer.Option(None, help="baseline epochs"),
        ssl_epochs: Optional[int] = typer.Option(None, help="epochs with the group-Lasso regularizer"),
        finetune_epochs: Optional[int] = typer.Option(None, help="fine-tuning epochs with the structure frozen"),
        threads: Optional[int] = typer.Option(None, help="torch threads for training"),
        bench_threads: Optional[int] = typer.Option(None, help="torch threads for the CPU speed benchmark"),
        seed: Optional[int] = typer.Option(None, min=0),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Structured sparsity learning: baseline, group-Lasso variants, thinning, FLOPs, CPU speedups, report."""
        import torch

        from ..runs.progress import Progress
        from ..studies.ssl import run_ssl

        output_dir(run_dir, "run-dir")
        if recipe is not None and not recipe.strip():
            raise UserError(f"--recipe: give a recipe name, one of {', '.join(RECIPES)}")
        if not (recipe or config):
            recipe = "lenet-filter"
        overrides = drop_none({
            "data": {"name": dataset, "limit": limit, "seed": seed},
            "train": {"epochs": epochs, "seed": seed},
            "ssl": {"epochs": ssl_epochs, "finetune_epochs": finetune_epochs},
            "bench": {"threads": bench_threads},
            "threads": threads, "seed": seed,
        })
        spec = load_spec(config, recipe, overrides)  # bad values are ConfigErrors: one line, exit 2 (cli.main)
        torch.set_num_threads(spec.threads)
        err.print(f"ssl {spec.name}: {spec.model} on {spec.data.name}, {len(spec.variants)} variant(s) -> {run_dir}")
        result = run_ssl(spec, run_dir, overwrite=overwrite,
                         callbacks_for=lambda label: [Progress(label, enabled=not quiet), _sparsity_line(label, not quiet)])
        con = out
        for res in [result["baseline"]] + result["variants"]:
            con.print(f"{res['model']:>16}: error {100 * res['test_err']:.2f}%  FLOPs {100 * res['flop_pct']:.1f}%  "
                      f"depth {res['depth_thinned']}  speedup {res['speedup']:.2f}x  "
                      f"(thinned max |diff| {res['max_abs_diff']:.1e})")
        con.print(f"wrote {run_dir}/report.md, table.csv, layers.csv, conv1_filters.png, sparsity.png")
