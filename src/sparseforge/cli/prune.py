"""``sparseforge prune``: the pruning study from flags or a YAML config (see ``recipes/prune_*.yaml``).

Hook-up: ``cli/main.py`` calls :func:`register` on its Typer app. Flags and the YAML file are merged and
validated once as :class:`~sparseforge.studies.prune.PruneSpec` (unknown keys refused; errors name the
field, the value and what is allowed), which the study runs on as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .console import err, out, pct as _pct
from .parse import UserError, floats, ints, output_dir
from ..config import drop_none, load_yaml, merge, parse, resolve_recipe
from ..studies.prune import PruneSpec

# ---------------------------------------------------------------------------------------------- flags
def _split(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [v for v in text.replace(" ", "").split(",") if v]


def resolve_config(path: Path) -> Path:
    """``path`` itself, or the packaged recipe of that name."""
    return resolve_recipe(path, "prune_")




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
        seed: Optional[int] = typer.Option(None, min=0, help="seed of the dense model and shuffling"),
        threads: Optional[int] = typer.Option(None, help="torch threads for training"),
        run_dir: Path = typer.Option(Path("runs/prune"), help="run directory (resumes a study of the same settings)"),
        overwrite: bool = typer.Option(False, help="clear --run-dir (a study of other settings) and start again"),
        quiet: bool = typer.Option(False, help="no progress output"),
    ) -> None:
        """Pruning study (seed 004): one-shot vs iterative, retraining the pruned structure, sparse speed."""
        output_dir(run_dir, "run-dir")
        base = load_yaml(resolve_config(config), PruneSpec).model_dump(mode="json") if config else {}
        flags = drop_none({
            "model": model, "seed": seed, "threads": threads,
            "data": {"name": dataset, "root": str(data_root) if data_root else None, "limit": limit},
            "pretrain": {"epochs": epochs},
            "prune": {"finetune_epochs": finetune_epochs, "sparsities": floats(sparsities, "sparsities"),
                      "methods": _split(methods), "scope": scope,
                      "schedule": {"kind": schedule} if schedule else None},
            "retrain": {"sparsities": floats(retrain_sparsities, "retrain-sparsities"),
                        "seeds": ints(retrain_seeds, "retrain-seeds"), "epochs": retrain_epochs},
            "bench": {"batches": ints(bench_batches, "bench-batches"), "repeats": bench_repeats},
            "parts": _split(parts),
        })
        spec = parse(PruneSpec, merge(base, flags))

        import torch

        from ..runs.progress import Progress
        from ..studies.prune import build_model, run_study

        if spec.threads:
            torch.set_num_threads(spec.threads)
        cfg = spec

        def notify(label: str, row: dict) -> None:
            if quiet:
                return
            acc = row.get("test_acc")
            extra = f"test acc {100 * acc:.2f}%" if acc is not None else (
                f"fwd speedup {row['speedup_fwd']:.2f}x, train {row['speedup_train']:.2f}x" if "speedup_fwd" in row else "")
            err.print(f"[green]done[/green] {label}: {extra}")

        err.print(f"prune: {cfg.model} on {cfg.data.name}, parts {', '.join(cfg.parts)} -> {run_dir}")
        data = cfg.load_data()
        try:
            build_model(cfg.model, data)  # does the model fit the data? (a user error if not)
        except ValueError as e:
            raise UserError(f"--model {cfg.model} does not fit --dataset {cfg.data.name}: {e}") from None
        result = run_study(cfg, run_dir, data=data, notify=notify, overwrite=overwrite,
                           callbacks_for=lambda label: [Progress(label, enabled=not quiet)])
        _show(result)
        out.print(f"wrote {run_dir}/report.md, CSV tables and figures/")
