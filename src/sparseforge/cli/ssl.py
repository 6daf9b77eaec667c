"""The ``sparseforge ssl`` command: structured sparsity learning recipes (seed 002).

Hook it into an app with :func:`register` (``register(app)`` adds the ``ssl`` command). A recipe is a YAML
file (``--config``) or a packaged one (``--recipe``: lenet-filter, lenet-shape, resnet-depth, tiny),
validated by :class:`SSLSpec` (unknown keys are errors); flags override the file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal, Optional

import typer
from pydantic import Field, model_validator

from ..config import ConfigError, drop_none, DataSpec, TrainSpec, _Strict, load_yaml, merge, parse

RECIPES = ("lenet-filter", "lenet-shape", "resnet-depth", "tiny")


class VariantSpec(_Strict):
    """One SSL setting: coefficients per group kind, mode, threshold."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    mode: Literal["proximal", "loss"] = "proximal"
    filter: float = Field(default=0.0, ge=0)
    channel: float = Field(default=0.0, ge=0)
    shape: float = Field(default=0.0, ge=0)
    depth: float = Field(default=0.0, ge=0)
    row: float = Field(default=0.0, ge=0)
    column: float = Field(default=0.0, ge=0)
    threshold: float = Field(default=1e-4, ge=0)
    layer_scale: dict[str, float] = Field(default_factory=dict,
                                          description="per-layer multiplier of all coefficients, e.g. {'0': 0.2}")

    @model_validator(mode="after")
    def _some_group(self) -> VariantSpec:
        if not any((self.filter, self.channel, self.shape, self.depth, self.row, self.column)):
            raise ValueError("set at least one of filter, channel, shape, depth, row, column > 0")
        return self


class SSLPhaseSpec(_Strict):
    epochs: int = Field(default=4, ge=1)
    lr: Optional[float] = Field(default=None, gt=0)
    finetune_epochs: int = Field(default=1, ge=0)
    finetune_lr: Optional[float] = Field(default=None, gt=0)


class BenchSpec(_Strict):
    batch: int = Field(default=64, ge=1)
    repeats: int = Field(default=10, ge=1)
    number: int = Field(default=5, ge=1)
    threads: int = Field(default=1, ge=1)


class SSLSpec(_Strict):
    """Everything ``sparseforge ssl`` needs (YAML sections model, data, train, ssl, variants, bench)."""

    name: str = "ssl"
    model: Literal["lenet5", "resnet20"] = "lenet5"
    data: DataSpec = DataSpec()
    train: TrainSpec = TrainSpec(epochs=6, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9,
                                 weight_decay=5e-4, lr_schedule="cosine")
    ssl: SSLPhaseSpec = SSLPhaseSpec()
    variants: list[VariantSpec] = Field(default_factory=lambda: [VariantSpec(name="ssl", filter=0.02, channel=0.02)],
                                        min_length=1)
    baseline_from: Optional[Path] = None
    bench: BenchSpec = BenchSpec()
    export_onnx: bool = True
    threads: int = Field(default=1, ge=1, description="torch threads for training")
    seed: int = 0

    @model_validator(mode="after")
    def _unique_names(self) -> SSLSpec:
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1} | ({"baseline"} & set(names)))
        if dup:
            raise ValueError(f"variant names must be distinct and not 'baseline': {dup}")
        return self

    def experiment(self):
        from ..studies.ssl import SSLExperiment, Variant

        return SSLExperiment(
            name=self.name, model=self.model, dataset=self.data.name,
            data_root=str(self.data.root) if self.data.root else None, limit=self.data.limit,
            val_size=self.data.val_size, data_seed=self.data.seed, train=self.train.to_config(),
            ssl_epochs=self.ssl.epochs, ssl_lr=self.ssl.lr, finetune_epochs=self.ssl.finetune_epochs,
            finetune_lr=self.ssl.finetune_lr, variants=tuple(Variant(**{**v.model_dump(), "layer_scale": tuple(v.layer_scale.items())})
                           for v in self.variants),
            baseline_from=str(self.baseline_from) if self.baseline_from else None,
            bench_batch=self.bench.batch, bench_repeats=self.bench.repeats, bench_number=self.bench.number,
            bench_threads=self.bench.threads, export_onnx=self.export_onnx, seed=self.seed,
        )


def recipe_path(name: str) -> Path:
    """The packaged YAML of recipe ``name`` (one of :data:`RECIPES`)."""
    if name not in RECIPES:
        raise ConfigError(f"--recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return Path(str(resources.files("sparseforge") / "recipes" / f"ssl_{name.replace('-', '_')}.yaml"))


def load_spec(config: Optional[Path], recipe: Optional[str], overrides: dict) -> SSLSpec:
    """Packaged recipe and/or YAML file (the file wins), then flag overrides; one validation at the end."""
    base: dict = SSLSpec().model_dump(mode="json")      # nested defaults survive partial sections
    if recipe:
        base = load_yaml(recipe_path(recipe), SSLSpec).model_dump(mode="json", exclude_unset=True)
    if config:
        base = merge(base, load_yaml(config, SSLSpec).model_dump(mode="json", exclude_unset=True))
    where = f"{config}: " if config else (f"recipe {recipe}: " if recipe else "")
    return parse(SSLSpec, merge(base, overrides), where=where)




def _sparsity_line(label: str, enabled: bool):
    """A callback printing the fraction of zero groups per kind after every epoch (stderr)."""
    from rich.console import Console

    from ..train import Callback

    console = Console(stderr=True)

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
        seed: Optional[int] = typer.Option(None),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Structured sparsity learning: baseline, group-Lasso variants, thinning, FLOPs, CPU speedups, report."""
        import torch
        from rich.console import Console

        from ..runs.progress import Progress
        from ..studies.ssl import run_ssl

        err = Console(stderr=True)
        if not (recipe or config):
            recipe = "lenet-filter"
        overrides = drop_none({
            "data": {"name": dataset, "limit": limit, "seed": seed},
            "train": {"epochs": epochs, "seed": seed},
            "ssl": {"epochs": ssl_epochs, "finetune_epochs": finetune_epochs},
            "bench": {"threads": bench_threads},
            "threads": threads, "seed": seed,
        })
        try:  # bad values in the recipe, or a run directory made with other settings
            spec = load_spec(config, recipe, overrides)
            torch.set_num_threads(spec.threads)
            cfg = spec.experiment()
            err.print(f"ssl {spec.name}: {spec.model} on {spec.data.name}, {len(spec.variants)} variant(s) -> "
                      f"{run_dir}")
            out = run_ssl(cfg, run_dir, overwrite=overwrite,
                          callbacks_for=lambda label: [Progress(label, enabled=not quiet), _sparsity_line(label, not quiet)])
        except ConfigError as e:
            err.print(f"[red]error:[/red] {e}", soft_wrap=True)
            raise typer.Exit(2) from None
        con = Console()
        for res in [out["baseline"]] + out["variants"]:
            con.print(f"{res['model']:>16}: error {100 * res['test_err']:.2f}%  FLOPs {100 * res['flop_pct']:.1f}%  "
                      f"depth {res['depth_thinned']}  speedup {res['speedup']:.2f}x  "
                      f"(thinned max |diff| {res['max_abs_diff']:.1e})")
        con.print(f"wrote {run_dir}/report.md, table.csv, layers.csv, conv1_filters.png, sparsity.png")
