"""``sparseforge export`` and ``sparseforge predict``: take a trained run elsewhere, or check it again."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .console import err, out
from .parse import UserError, file_arg


def register(app: typer.Typer) -> None:
    """Add the ``export`` and ``predict`` commands to ``app``."""

    @app.command()
    def export(
        run_dir: Path = typer.Option(..., help="a finished `sparseforge train` run directory"),
        format: str = typer.Option("onnx", help="onnx or torchscript"),
        out_path: Optional[Path] = typer.Option(None, "--out", metavar="<path>", parser=file_arg("out", "model.onnx"),
                                                help="file to write (default: RUN_DIR/model.onnx or .pt)"),
    ) -> None:
        """Write a trained model as ONNX or TorchScript (standard operators only: Gather, Mul, ReduceSum)."""
        from ..deploy import FORMATS, export as export_model, load

        if format not in FORMATS:
            raise UserError(f"--format: {format!r} is not supported; allowed: {', '.join(FORMATS)}")
        model = load(run_dir)
        path = out_path or run_dir / ("model.onnx" if format == "onnx" else "model.pt")
        export_model(model, path, format=format)
        out.print(f"wrote {path} ({format}, {path.stat().st_size:,} bytes, {model.topology.edges:,} edges)")

    @app.command()
    def predict(
        run_dir: Path = typer.Option(..., help="a finished `sparseforge train` run directory"),
        dataset: Optional[str] = typer.Option(None, help="dataset to score (default: the run's own)"),
        data_root: Optional[Path] = typer.Option(None, help="directory with the dataset files"),
    ) -> None:
        """Load a trained run's model and print its test accuracy (and the one the run recorded)."""
        from ..deploy import predict as predict_run

        res = predict_run(run_dir, dataset=dataset, root=data_root)
        recorded = res["recorded_test_acc"]
        note = "" if recorded is None else f" (recorded by the run: {100 * recorded:.2f}%)"
        out.print(f"test accuracy {100 * res['test_acc']:.2f}% on {res['samples']:,} {res['dataset']} samples{note}")
        if recorded is None:
            err.print("note: the run recorded no test accuracy (result.json missing: unfinished run?)")
