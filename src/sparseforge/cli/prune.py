"""``sparseforge prune``: the pruning study from flags or a YAML config (see ``recipes/prune_*.yaml``).

Hook-up: ``cli.py`` calls :func:`register` on its Typer app. The config is validated once here by
:class:`PruneSpec` (unknown keys refused; errors name the field, the value and what is allowed) and
turned into the plain :class:`~sparseforge.studies.prune.PruneStudyConfig` the recipes trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer
from pydantic import Field, field_validator, model_validator
from rich.console import Console
from rich.table import Table

from ..config import resolve_recipe, ConfigError, drop_none, DataSpec, _Strict, load_yaml, merge, parse

out = Console()
from .console import err  # noqa: E402  (one line per error, however narrow the terminal)

def _check_fractions(values: list[float], what: str) -> list[float]:
    for v in values:
        if not 0.0 < v < 1.0:
            raise ValueError(f"each {what} must be a fraction in (0, 1) (e.g. 0.9 for 90%), got {v}")
    return values


class ScheduleSpec(_Strict):
    """Shape of the iterative schedule; its final sparsity is each target of the sweep."""

    kind: Literal["cubic", "linear", "constant", "piecewise"] = "cubic"
    initial: float = Field(default=0.0, ge=0, lt=1, description="sparsity when pruning starts")
    start_epoch: float = Field(default=0.0, ge=0)
    end_epoch: Optional[float] = Field(default=None, gt=0, description="None: 2/3 of the fine-tuning epochs")
    every: Optional[int] = Field(default=None, ge=1, description="prune every this many steps (None: ~30 prunings)")
    points: list[tuple[float, float]] = Field(default_factory=list,
                                              description="piecewise: [epoch, fraction of the target] pairs")

    @model_validator(mode="after")
    def _shape(self) -> ScheduleSpec:
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch={self.end_epoch} must be >= start_epoch={self.start_epoch}")
        if self.kind == "piecewise":
            if not self.points:
                raise ValueError("kind piecewise needs points: [[epoch, fraction of target], ...]")
            for (e0, f0), (e1, f1) in zip(self.points[:-1], self.points[1:]):
                if e1 <= e0 or f1 < f0:
                    raise ValueError(f"points ({e0}, {f0}) -> ({e1}, {f1}): epochs must increase and "
                                     "fractions must not decrease (a sparsity schedule is monotone)")
            for e, f in self.points:
                if e < 0 or not 0 <= f <= 1:
                    raise ValueError(f"point ({e}, {f}): epoch must be >= 0 and fraction in [0, 1]")
        return self


class PretrainSpec(_Strict):
    epochs: int = Field(default=8, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=1e-3, gt=0)


class PruneSection(_Strict):
    sparsities: list[float] = Field(default=[0.5, 0.75, 0.9, 0.95, 0.99], min_length=1)
    methods: list[Literal["one-shot", "iterative"]] = Field(default=["one-shot", "iterative"], min_length=1)
    scope: Literal["layer", "global"] = "layer"
    finetune_epochs: int = Field(default=6, ge=1)
    finetune_lr: float = Field(default=1e-3, gt=0)
    schedule: ScheduleSpec = ScheduleSpec()
    curve_points: int = Field(default=4, ge=0, description="accuracy samples per epoch in iterative runs")

    @field_validator("sparsities")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        return _check_fractions(v, "sparsity")


class RetrainSection(_Strict):
    sparsities: list[float] = Field(default=[0.9, 0.95, 0.99])
    seeds: list[int] = Field(default=[1, 2, 3], min_length=1)
    epochs: Optional[int] = Field(default=None, ge=1, description="None: the pre-training epochs")
    from_method: Literal["one-shot", "iterative"] = "iterative"
    random_control: bool = True

    @field_validator("sparsities")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        return _check_fractions(v, "sparsity")


class BenchSection(_Strict):
    batches: list[int] = Field(default=[1, 64, 256], min_length=1)
    repeats: int = Field(default=30, ge=1)
    threads: int = Field(default=1, ge=1)

    @field_validator("batches")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v):
            raise ValueError(f"batch sizes must be >= 1, got {v}")
        return v


class PruneSpec(_Strict):
    """Everything ``sparseforge prune`` needs (YAML sections of the same names)."""

    model: Literal["lenet300", "lenet5"] = "lenet300"
    data: DataSpec = DataSpec()
    pretrain: PretrainSpec = PretrainSpec()
    prune: PruneSection = PruneSection()
    retrain: RetrainSection = RetrainSection()
    bench: BenchSection = BenchSection()
    parts: list[Literal["sweep", "retrain", "bench"]] = Field(default=["sweep", "retrain", "bench"], min_length=1)
    seed: int = 0
    threads: Optional[int] = Field(default=1, ge=1, description="torch intra-op threads for training")

    def to_config(self):
        """The plain dataclass the experiment recipes take."""
        from ..studies.prune import PruneStudyConfig, ScheduleShape

        sch = self.prune.schedule
        return PruneStudyConfig(
            model=self.model, dataset=self.data.name, data_root=str(self.data.root) if self.data.root else None,
            limit=self.data.limit, data_seed=self.data.seed, val_size=self.data.val_size,
            epochs=self.pretrain.epochs, batch_size=self.pretrain.batch_size, lr=self.pretrain.lr,
            finetune_epochs=self.prune.finetune_epochs, finetune_lr=self.prune.finetune_lr,
            sparsities=tuple(self.prune.sparsities), methods=tuple(self.prune.methods), scope=self.prune.scope,
            schedule=ScheduleShape(kind=sch.kind, initial=sch.initial, start_epoch=sch.start_epoch,
                                   end_epoch=sch.end_epoch, every=sch.every, points=tuple(map(tuple, sch.points))),
            curve_points=self.prune.curve_points, retrain_sparsities=tuple(self.retrain.sparsities),
            retrain_seeds=tuple(self.retrain.seeds), retrain_epochs=self.retrain.epochs,
            retrain_from=self.retrain.from_method, random_control=self.retrain.random_control,
            bench_batches=tuple(self.bench.batches), bench_repeats=self.bench.repeats,
            bench_threads=self.bench.threads, seed=self.seed, parts=tuple(self.parts),
        )


# ---------------------------------------------------------------------------------------------- flags
def _split(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [v for v in text.replace(" ", "").split(",") if v]


def _fractions(text: Optional[str], flag: str) -> Optional[list[float]]:
    vals = _split(text)
    if vals is None:
        return None
    try:
        return [float(v.rstrip("%")) / (100 if v.endswith("%") else 1) for v in vals]
    except ValueError:
        raise ConfigError(f"--{flag}: expected comma-separated fractions like 0.5,0.9 or 50%,90%, got {text!r}") from None


def _ints(text: Optional[str], flag: str) -> Optional[list[int]]:
    vals = _split(text)
    if vals is None:
        return None
    try:
        return [int(v) for v in vals]
    except ValueError:
        raise ConfigError(f"--{flag}: expected comma-separated integers like 1,2,3, got {text!r}") from None


def resolve_config(path: Path) -> Path:
    """``path`` itself, or the packaged recipe of that name."""
    return resolve_recipe(path, "prune_")




def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _show(result: dict[str, list[dict]]) -> None:
    from ..studies.prune import retrain_summary

    if "sweep" in result:
        t = Table(title="one-shot vs iterative pruning (test accuracy)")
        for c in ("method", "target", "reached", "after prune", "test acc", "params"):
            t.add_column(c, justify="right")
        for r in result["sweep"]:
            t.add_row(r["method"], _pct(r["target"]), _pct(r["sparsity"]), _pct(r.get("acc_after_prune")),
                      _pct(r["test_acc"]), f"{r['params']:,}")
        out.print(t)
        layers = result.get("layers", [])
        names = [r["layer"] for r in layers if r["layer"] != "overall"]
        names = list(dict.fromkeys(names))
        if layers:
            t = Table(title="per-layer sparsity (reached)")
            for c in ["method", "target", *[f"layer {n}" for n in names], "overall"]:
                t.add_column(c, justify="right")
            keys = list(dict.fromkeys((r["method"], r["target"]) for r in layers))
            for m, s in keys:
                by = {r["layer"]: r["sparsity"] for r in layers if (r["method"], r["target"]) == (m, s)}
                t.add_row(m, _pct(s), *[_pct(by.get(n)) for n in names], _pct(by.get("overall")))
            out.print(t)
    if "retrain" in result:
        t = Table(title="retraining the pruned structure from scratch (test accuracy over seeds)")
        for c in ("structure", "target", "seeds", "mean", "std", "min", "max"):
            t.add_column(c, justify="right")
        for r in retrain_summary(result["retrain"]):
            t.add_row(r["structure"], _pct(r["target"]), str(r["seeds"]), _pct(r["mean_acc"]),
                      f"{100 * r['std_acc']:.2f}", _pct(r["min_acc"]), _pct(r["max_acc"]))
        out.print(t)
    if "bench" in result:
        t = Table(title="converted (SparseLinear) vs dense: speedup = best dense time / sparse time")
        for c in ("sparsity", "kernels", "batch", "params", "sparse fwd ms", "fwd speedup", "train speedup"):
            t.add_column(c, justify="right")
        for r in result["bench"]:
            t.add_row(_pct(r["sparsity"]), r.get("backend", ""), str(r["batch"]), f"{r['params']:,}/{r['dense_params']:,}",
                      f"{r['sparse_fwd_ms']:.3f}", f"{r['speedup_fwd']:.2f}x", f"{r['speedup_train']:.2f}x")
        out.print(t)


# ---------------------------------------------------------------------------------------------- command
def register(app: typer.Typer) -> None:
    """Add the ``prune`` command to ``app``."""

    @app.command("prune")
    def prune(
        config: Optional[Path] = typer.Option(None, help="YAML config, or a packaged recipe name (prune_tiny, ...)"),
        model: Optional[str] = typer.Option(None, help="lenet300 or lenet5"),
        dataset: Optional[str] = typer.Option(None, help="mnist, fashion-mnist, digits"),
        data_root: Optional[Path] = typer.Option(None, help="directory with the dataset files"),
        limit: Optional[int] = typer.Option(None, help="samples per split (quick runs)"),
        epochs: Optional[int] = typer.Option(None, help="dense pre-training epochs"),
        finetune_epochs: Optional[int] = typer.Option(None, help="epochs of every pruned run"),
        sparsities: Optional[str] = typer.Option(None, help="targets, e.g. 50%,75%,90%,95%,99%"),
        methods: Optional[str] = typer.Option(None, help="one-shot,iterative"),
        scope: Optional[str] = typer.Option(None, help="layer or global magnitude ranking"),
        schedule: Optional[str] = typer.Option(None, help="iterative schedule: cubic, linear, constant"),
        retrain_sparsities: Optional[str] = typer.Option(None, help="structures to retrain from scratch"),
        retrain_seeds: Optional[str] = typer.Option(None, help="initialisation seeds, e.g. 1,2,3"),
        retrain_epochs: Optional[int] = typer.Option(None),
        bench_batches: Optional[str] = typer.Option(None, help="batch sizes of the speed benchmark, e.g. 1,64,256"),
        bench_repeats: Optional[int] = typer.Option(None, help="timed runs per measurement (the minimum is kept)"),
        parts: Optional[str] = typer.Option(None, help="which of sweep,retrain,bench to run"),
        seed: Optional[int] = typer.Option(None, help="seed of the dense model and shuffling"),
        threads: Optional[int] = typer.Option(None, help="torch threads for training"),
        run_dir: Path = typer.Option(Path("runs/prune"), help="run directory (resumes a study of the same settings)"),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a study of other settings) and start again"),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Pruning study (seed 004): one-shot vs iterative, retraining the pruned structure, sparse speed."""
        try:
            base = load_yaml(resolve_config(config), PruneSpec).model_dump(mode="json") if config else {}
            flags = drop_none({
                "model": model, "seed": seed, "threads": threads,
                "data": {"name": dataset, "root": str(data_root) if data_root else None, "limit": limit},
                "pretrain": {"epochs": epochs},
                "prune": {"finetune_epochs": finetune_epochs, "sparsities": _fractions(sparsities, "sparsities"),
                          "methods": _split(methods), "scope": scope,
                          "schedule": {"kind": schedule} if schedule else None},
                "retrain": {"sparsities": _fractions(retrain_sparsities, "retrain-sparsities"),
                            "seeds": _ints(retrain_seeds, "retrain-seeds"), "epochs": retrain_epochs},
                "bench": {"batches": _ints(bench_batches, "bench-batches"), "repeats": bench_repeats},
                "parts": _split(parts),
            })
            spec = parse(PruneSpec, merge(base, flags))
        except ConfigError as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2)

        import torch

        from ..data import DatasetUnavailable
        from ..runs.progress import Progress
        from ..studies.prune import build_model, run_study

        if spec.threads:
            torch.set_num_threads(spec.threads)
        cfg = spec.to_config()

        def notify(label: str, row: dict) -> None:
            if quiet:
                return
            acc = row.get("test_acc")
            extra = f"test acc {100 * acc:.2f}%" if acc is not None else (
                f"fwd speedup {row['speedup_fwd']:.2f}x, train {row['speedup_train']:.2f}x" if "speedup_fwd" in row else "")
            err.print(f"[green]done[/green] {label}: {extra}")

        err.print(f"prune: {cfg.model} on {cfg.dataset}, parts {', '.join(cfg.parts)} -> {run_dir}")
        try:
            data = cfg.load_data()
            build_model(cfg.model, data)  # does the model fit the data? (a user error if not)
        except (ValueError, DatasetUnavailable) as e:
            err.print(f"[red]error:[/red] {e}")
            raise typer.Exit(2)
        result = run_study(cfg, run_dir, data=data, notify=notify, overwrite=overwrite,
                           callbacks_for=lambda label: [Progress(label, enabled=not quiet)])
        _show(result)
        out.print(f"wrote {run_dir}/report.md, CSV tables and figures/")
