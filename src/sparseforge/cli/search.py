"""``sparseforge search ...``: run, resume, scale out and compare model searches (seed 003).

Registered onto the main app by ``register(app)``::

    sparseforge search run tiny-digits --run-dir runs/s1            # create + run here; rerun to resume
    sparseforge search run mlp-mnist --run-dir runs/s2 --workers 2  # two worker processes, one journal file
    sparseforge search create mlp-mnist --storage postgresql://u@host/db --study s3
    sparseforge search worker --storage postgresql://u@host/db --study s3   # on every machine
    sparseforge search report --run-dir runs/s1
    sparseforge search compare mlp-mnist --run-dir runs/cmp --samplers gp,random,tpe --seeds 0,1,2
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .console import err, out, typer_app
from .parse import UserError, ints, output_dir, output_file


def _journal(storage: Optional[str], flag: str = "storage", must_exist: bool = False) -> Optional[str]:
    """``storage`` when it is a database URL, or a journal file path that is usable: not a directory, a text
    file when it exists (``must_exist``: it must, as a worker joins a created search)."""
    if storage is None or ("://" in storage and not storage.startswith("journal:")):
        return storage
    path = Path(storage[len("journal:"):] if storage.startswith("journal:") else storage)
    if path.is_dir():
        raise UserError(f"--{flag}: {str(path)!r} is a directory; give a journal file path or a database URL")
    if path.exists():
        with open(path, "rb") as f:
            head = f.read(4096)
        try:
            head.decode("utf-8")
        except UnicodeDecodeError:
            head = b"\0"
        if b"\0" in head:
            raise UserError(f"--{flag}: {str(path)!r} is not a search journal (binary content)")
    elif must_exist:
        raise UserError(f"--{flag}: journal file {str(path)!r} does not exist; create the search first "
                        "(sparseforge search create) or give its database URL")
    else:
        output_file(path, flag)
    return storage


def _trial_printer(quiet: bool, prefix: str = ""):
    if quiet:
        return None

    def show(r: dict) -> None:
        if r["state"] == "COMPLETE":
            err.print(f"{prefix}stage {r['stage'] + 1} trial {r['number']:>3}: f = {r['f']:.4f}  val acc "
                      f"{100 * r['val_acc']:.2f}%  {r['params']:,} params  train {r['train_s']:.1f} s  "
                      f"engine {r['engine_s']:.3f} s")
        else:
            err.print(f"{prefix}stage {r['stage'] + 1} trial {r['number']:>3}: {r['state']} {r.get('error', '')}")
    return show


def _summary_table(sm: dict) -> Table:
    t = Table(title=f"search {sm['name']}")
    for c in ("stage", "name", "budget", "complete", "pruned", "failed", "best f", "best val acc"):
        t.add_column(c, justify="right")
    for s in sm["stages"]:
        t.add_row(str(s["stage"]), s["name"], str(s["budget"]), str(s["complete"]), str(s["pruned"]),
                  str(s["failed"]), "-" if s["best_f"] is None else f"{s['best_f']:.4f}",
                  "-" if s["best_val_acc"] is None else f"{100 * s['best_val_acc']:.2f}%")
    return t


def _sampler_overrides(sampler: Optional[str], seed: Optional[int]) -> dict:
    """``{"sampler": {...}}`` overrides for the spec from ``--sampler`` / ``--seed`` (``gp-ei`` is ``gp``); the spec's
    schema validates them."""
    from ..studies.search import SAMPLER_ALIASES

    given = {k: v for k, v in (("name", SAMPLER_ALIASES.get(sampler, sampler)), ("seed", seed)) if v is not None}
    return {"sampler": given} if given else {}


BUDGET = typer.Option(None, min=1, help="total trials per search, split over the stages like the spec's budgets "
                      "(default: the spec's budgets)")


def register(app: typer.Typer) -> None:
    """Add the ``search`` command group to ``app``."""
    search_app = typer_app(help="Bayesian-optimisation model search (GP + EI over staged spaces).")
    app.add_typer(search_app, name="search")

    @search_app.command("run")
    def run(
        config: str = typer.Argument(..., help="search YAML, or a recipe name (tiny-digits, mlp-mnist, cnn-fashion)"),
        run_dir: Path = typer.Option(Path("runs/search"), help="run directory (journal, checkpoints, report)"),
        storage: Optional[str] = typer.Option(None, help="database URL (postgresql://...) instead of the run "
                                              "directory's journal file"),
        study: Optional[str] = typer.Option(None, help="study name (default: the spec's name)"),
        sampler: Optional[str] = typer.Option(None, help="gp, tpe, random or optuna-gp (overrides the spec)"),
        seed: Optional[int] = typer.Option(None, min=0, help="sampler seed (overrides the spec)"),
        workers: int = typer.Option(1, min=1, help="worker processes on this machine"),
        limit: Optional[int] = typer.Option(None, help="samples per split (overrides data.limit)"),
        epochs: Optional[int] = typer.Option(None, help="epochs per trial (overrides train.epochs)"),
        w_c: Optional[float] = typer.Option(None, "--w-c", help="weight of complexity in f = f_p + w_c f_c "
                                            "(overrides objective.w_c)"),
        complexity: Optional[str] = typer.Option(None, help="f_c: params, flops or time (per epoch, measured) "
                                                 "relative to the reference net (overrides objective.complexity)"),
        budget: Optional[int] = BUDGET,
        quiet: bool = typer.Option(False, help="no line per trial"),
    ) -> None:
        """Create the search (once) and run it; run the same command again to resume after a kill."""
        from ..studies.search import load_spec, run_search, with_budget

        output_dir(run_dir, "run-dir")
        over = _sampler_overrides(sampler, seed)
        if limit is not None:
            over["data"] = {"limit": limit}
        if epochs is not None:
            over["train"] = {"epochs": epochs}
        objective = {k: v for k, v in (("w_c", w_c), ("complexity", complexity)) if v is not None}
        if objective:
            over["objective"] = objective
        spec = load_spec(config, over)
        if budget is not None:
            spec = with_budget(spec, budget)
        sm = run_search(spec, run_dir, storage=_journal(storage), study=study, workers=workers, on_trial=_trial_printer(quiet))
        out.print(_summary_table(sm))
        b = sm["best"]
        if b:
            test = "-" if b["test_acc"] is None else f"{100 * b['test_acc']:.2f}%"
            out.print(f"best f = {b['f']:.4f}: val acc {100 * b['val_acc']:.2f}%, test acc {test}, "
                      f"{b['params']:,} parameters; config {b['config']}")
        out.print(f"wrote {sm['report_dir']}/trials.csv, summary.json, pareto.png, report.md")

    @search_app.command("create")
    def create(
        config: str = typer.Argument(..., help="search YAML or recipe name"),
        storage: str = typer.Option(..., help="database URL or journal file path"),
        study: Optional[str] = typer.Option(None, help="study name (default: the spec's name)"),
        sampler: Optional[str] = typer.Option(None),
        seed: Optional[int] = typer.Option(None, min=0),
    ) -> None:
        """Create a search once, for workers to load (``search worker``)."""
        from ..search import create_search
        from ..studies.search import load_spec

        spec = load_spec(config, _sampler_overrides(sampler, seed))  # validated like `search run`'s
        s = create_search(spec, _journal(storage), study)
        out.print(f"search {s.name!r} ready in {storage}: {spec.n_stages} stages, budgets "
                  f"{[st.trials for st in spec.stages]}")

    @search_app.command("worker")
    def worker(
        storage: str = typer.Option(..., help="database URL or journal file path"),
        study: str = typer.Option(..., help="study name"),
        run_dir: Optional[Path] = typer.Option(None, help="where trials checkpoint (resume of retried trials)"),
        rank: Optional[int] = typer.Option(None, help="worker number (seeds of Optuna's samplers)"),
        quiet: bool = typer.Option(False),
    ) -> None:
        """Work on a created search until it is done (start one per core / machine)."""
        from ..search import load_search, run_worker

        output_dir(run_dir, "run-dir")
        s = load_search(_journal(storage, must_exist=True), study)
        rep = run_worker(s, run_dir=run_dir, worker_rank=rank, on_trial=_trial_printer(quiet))
        out.print(f"worker done: {len(rep.trials)} trials, {len(rep.recovered)} crashed trials recovered")

    @search_app.command("report")
    def report(
        run_dir: Path = typer.Option(Path("runs/search"), help="run directory (report goes here)"),
        storage: Optional[str] = typer.Option(None, help="database URL (default: the run directory's journal)"),
        study: Optional[str] = typer.Option(None, help="study name (default: from search.json in the run directory)"),
    ) -> None:
        """Write trials.csv, summary.json, pareto.png and report.md of a search."""
        from ..search import default_storage, load_search
        from ..studies.search import registered_studies, write_report

        meta = run_dir / "search.json"
        try:
            saved = registered_studies(run_dir)
        except (OSError, ValueError) as e:
            raise UserError(f"{meta}: cannot be read as JSON ({e}); give --study (and --storage)") from None
        name = study
        if name is None:
            if len(saved) != 1:
                raise UserError(f"{run_dir}: holds the searches {', '.join(sorted(saved))}; pick one with --study"
                                if saved else f"{meta} not found: give --study (and --storage for a database)")
            name = next(iter(saved))
        s = load_search(_journal(storage or saved.get(name, {}).get("storage")) or default_storage(run_dir), name,
                        wait_s=0)
        sm = write_report(s, run_dir)
        out.print(_summary_table(sm))
        out.print(f"wrote {sm['report_dir']}/trials.csv, summary.json, pareto.png, report.md")

    @search_app.command("compare")
    def compare_cmd(
        config: str = typer.Argument(..., help="search YAML or recipe name (synthetic, mlp-mnist, cnn-fashion)"),
        run_dir: Path = typer.Option(Path("runs/search-compare")),
        samplers: str = typer.Option("gp-ei,tpe,optuna-gp,random",
                                     help="comma-separated: gp-ei (= gp), tpe, optuna-gp, random"),
        seeds: str = typer.Option("3", help="a number N (seeds 0..N-1) or comma-separated seeds"),
        budget: Optional[int] = BUDGET,
        limit: Optional[int] = typer.Option(None),
        epochs: Optional[int] = typer.Option(None),
        quiet: bool = typer.Option(False),
    ) -> None:
        """Every sampler and seed at equal budgets: mean ± std of the best f (compare.md, compare.csv) and
        the anytime curve (anytime.csv, compare.png)."""
        from ..search import SAMPLERS
        from ..studies.search import SAMPLER_ALIASES, compare, load_spec

        output_dir(run_dir, "run-dir")
        names = [s for s in samplers.replace(" ", "").split(",") if s]
        allowed = (*SAMPLER_ALIASES, *SAMPLERS)
        bad = [s for s in names if s not in allowed]
        if bad or not names or len(set(names)) != len(names):
            raise UserError(f"--samplers: got {samplers!r}; give distinct names from {', '.join(allowed)}")
        seed_list = ints(seeds, "seeds") or []
        if not seed_list or len(set(seed_list)) != len(seed_list) or ("," not in seeds and seed_list[0] < 1):
            raise UserError(f"--seeds: got {seeds!r}; give a number N >= 1 (seeds 0..N-1) or distinct "
                            f"comma-separated integers")
        if "," not in seeds:
            seed_list = list(range(seed_list[0]))
        over: dict = {}
        if limit is not None:
            over["data"] = {"limit": limit}
        if epochs is not None:
            over["train"] = {"epochs": epochs}
        show = _trial_printer(quiet)
        spec = load_spec(config, over)
        rows = compare(spec, run_dir, samplers=names, seeds=seed_list, budget=budget,
                       on_trial=(lambda n, s, r: show({**r}) if show else None))
        t = Table(title="best f (lower is better)")
        t.add_column("seed", justify="right")
        for n in names:
            t.add_column(n, justify="right")
        by = {(r["sampler"], r["seed"]): r for r in rows}
        for s in seed_list:
            t.add_row(str(s), *[f"{by[(n, s)]['best_f']:.4f}" for n in names])
        out.print(t)
        out.print(f"wrote {run_dir}/compare.md, compare.csv, anytime.csv, compare.png")
