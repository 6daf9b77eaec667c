"""``sparseforge study``: run one of the packaged studies (``recipes/study_*.yaml``) or a study YAML file.

    sparseforge study --list
    sparseforge study junction_densities --setting tiny
    sparseforge study families --setting full --run-dir runs/families --seeds 5 --quiet

Hook-up: ``cli.py`` calls :func:`register` on its Typer app. Recipes are validated before anything runs
(unknown keys refused; errors name the field, the value and what is allowed); a stopped study resumes
where it stopped when run again with the same run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from .console import err, out
from .parse import UserError, output_dir


def _list() -> None:
    from ..studies.densities import list_studies

    t = Table(title="studies (sparseforge study NAME --setting SETTING)")
    for c in ("name", "title", "settings (sub-runs)"):
        t.add_column(c)
    for s in list_studies():
        t.add_row(s["name"], s["title"], ", ".join(f"{k} ({v})" for k, v in s["settings"].items()))
    from ..studies.transformer import SETTINGS

    t.add_row("transformer", "ViT with pre-defined sparse feed-forward layers: accuracy and step time vs dense",
              ", ".join(f"{k} ({len(v.densities)})" for k, v in SETTINGS.items()))
    out.print(t)


def _transformer(setting: str, run_dir: Optional[Path], quiet: bool, overwrite: bool) -> None:
    """``sparseforge study transformer``: a code-defined study (no YAML recipe)."""
    import torch

    from ..runs.progress import Progress
    from ..studies.transformer import SETTINGS, run_transformer_study

    if setting not in SETTINGS:
        raise UserError(f"--setting={setting!r} is not a setting of study transformer; choose one of {sorted(SETTINGS)}")
    cfg = SETTINGS[setting]
    torch.set_num_threads(cfg.threads)
    rd = run_dir or Path("runs") / f"study_transformer_{setting}"
    if not quiet:
        err.print(f"study transformer ({setting}): {len(cfg.densities)} feed-forward densities -> {rd}")
    res = run_transformer_study(cfg, rd, overwrite=overwrite, callbacks_for=lambda label: [Progress(label, enabled=not quiet)],
                                notify=lambda msg: None if quiet else err.print(msg))
    for r in res["timing"]:
        a = next(x for x in res["accuracy"] if x["label"] == r["label"])
        out.print(f"FF density {100 * a['ff_density']:.3g}%: test acc {100 * a['test_acc']:.2f}%, "
                  f"{a['params']:,} params; at d_model {r['d_model']}: train step {r['model_train_speedup']:.2f}x, "
                  f"inference {r['model_infer_speedup']:.2f}x, FF fwd+bwd {r['ff_train_speedup']:.2f}x vs dense")
    out.print(f"wrote {rd}/report.md, table.csv, timing.csv, accuracy_vs_density.png, speedup_vs_density.png")


def register(app: typer.Typer) -> None:
    """Add the ``study`` command to ``app``."""

    @app.command("study")
    def study(
        name: Optional[str] = typer.Argument(None, help="study name (see --list) or a study YAML file"),
        setting: str = typer.Option("tiny", "--setting", help="tiny (CI, seconds), medium or full (see --list)"),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir",
                                               help="run directory (default runs/study_NAME_SETTING); resumes"),
        seeds: Optional[int] = typer.Option(None, "--seeds", help="number of seeds (default: the setting's)"),
        list_: bool = typer.Option(False, "--list", help="list the studies and their settings"),
        overwrite: bool = typer.Option(False, "--overwrite", help="clear --run-dir (a study of other settings) first"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress output"),
    ) -> None:
        """Studies of pre-defined sparsity (seed 000 'trends and guidelines', 004 families): CSV, plots, report."""
        output_dir(run_dir, "run-dir")
        if name == "transformer" and not list_:
            if seeds is not None:
                raise UserError(f"--seeds={seeds}: study transformer runs one seed per setting (its settings are "
                                "code-defined; see --list); drop --seeds")
            _transformer(setting, run_dir, quiet, overwrite)
            return
        if list_:
            _list()
            return
        if name is None:
            raise UserError("give a study NAME (or --list to see them; `sparseforge recipes` lists every recipe)")
        from ..studies.densities import expand, load_recipe, seeds_for

        recipe = load_recipe(name)
        plan = expand(recipe, setting)
        seed_list = seeds_for(recipe.settings[setting], seeds)

        import torch

        from ..runs.progress import Progress
        from ..studies.densities import run_study

        torch.set_num_threads(recipe.settings[setting].threads)
        rd = run_dir or Path("runs") / f"study_{recipe.name}_{setting}"
        total = len(plan) * len(seed_list)
        if not quiet:
            err.print(f"study {recipe.name} ({setting}): {len(plan)} configurations x {len(seed_list)} seeds = "
                      f"{total} sub-runs -> {rd}")

        def notify(ev: dict) -> None:
            if quiet:
                return
            row = ev["row"]
            tag = "[dim]reused[/dim]" if ev["reused"] else "[green]done[/green]"
            err.print(f"{tag} [{ev['index']}/{ev['total']}] {escape(ev['label'])} seed {ev['seed']}: "
                      f"rho_net {100 * row['rho_net']:.2f}%, test acc {100 * row['test_acc']:.2f}%")

        res = run_study(recipe, setting, rd, seeds=seeds, notify=notify, overwrite=overwrite,
                        callbacks_for=lambda label: [Progress(label, enabled=not quiet)])
        out.print(f"[bold]{recipe.title}[/bold] ({setting}, seeds {res.seeds})")
        for c in res.analysis.conclusions:
            out.print(f"- {c.replace('**', '')}")
        out.print(f"trained {res.trained}, reused {res.reused} sub-runs in {res.wall_s:.1f} s; "
                  f"wrote {rd}/report.md, table.csv, runs.csv, " + ", ".join(res.analysis.figures))
