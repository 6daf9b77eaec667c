"""Model-search recipes (seed 003): run a search, compare samplers at equal budget, Pareto plot, overhead.

* :func:`run_search`: create the search once (in the run directory's journal file, or a database URL),
  run one worker in this process or several as subprocesses, then write the report
  (``trials.csv``, ``summary.json``, ``pareto.png``, ``report.md``). Run it again to resume.
* :func:`compare`: the same spec with several samplers (GP-EI, random, TPE, Optuna's GP) and seeds at
  equal per-stage budgets; a table of the best f per seed and sampler, and best-so-far curves.
* ``python -m sparseforge.studies.search worker --storage URL --study NAME`` is one worker process
  (what ``sparseforge search worker`` runs; used for many workers).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import io
from ..config import ConfigError, merge, parse, read_mapping
from ..data import DataSplits
from ..search import (
    Search, SearchSpec, create_search, default_storage, front_rows, load_search, run_worker, summary, trial_rows,
)
from ..search.sampler import design_size
from ..search.study import die_with_parent
from ..search.objective import load_search_data
from ..runs import report as run_report
from ..runs.plots import save_figure, subplots

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


# ---------------------------------------------------------------------------------------------- specs
def recipe_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML path as given, or a bundled recipe by name (``mlp-mnist`` -> ``recipes/search_mlp_mnist.yaml``)."""
    from ..config import resolve_recipe

    return resolve_recipe(name_or_path, "search_")


def load_spec(path: str | os.PathLike, overrides: dict | None = None) -> SearchSpec:
    """Read and validate a search spec from YAML (a path or a recipe name); ``overrides`` are deep-merged
    first, e.g. ``{"sampler": {"name": "random", "seed": 1}}``. Errors name the field."""
    path = recipe_path(path)
    data = read_mapping(path)
    return parse(SearchSpec, merge(data, overrides or {}), where=f"{path}: ")


def with_sampler(spec: SearchSpec, name: str | None = None, seed: int | None = None) -> SearchSpec:
    """The spec with another sampler name (``gp-ei`` is ``gp``) and/or seed."""
    name = SAMPLER_ALIASES.get(name, name) if name is not None else None
    upd = {k: v for k, v in (("name", name), ("seed", seed)) if v is not None}
    return spec.model_copy(update={"sampler": spec.sampler.model_copy(update=upd)}) if upd else spec


# ---------------------------------------------------------------------------------------------- run
def run_search(spec: SearchSpec, run_dir: str | os.PathLike, *, storage: str | None = None,
               study: str | None = None, workers: int = 1, data: DataSplits | None = None,
               on_trial: Callable[[dict], None] | None = None, report: bool = True) -> dict:
    """Create (once) and run a search; resumes whatever the storage already holds. Returns the summary
    (with ``report_dir``: where the report went).

    A run directory may hold several searches: each has its own folder ``run_dir/<name>-<spec hash>``
    (:attr:`Search.key`) for its trial checkpoints and its report, and ``run_dir/search.json`` lists them.
    With ``workers > 1`` the workers are subprocesses (``python -m sparseforge.studies.search
    worker``) sharing the storage; they end with this process (killed or interrupted), and this process
    only creates the search and writes the report.
    """
    import time

    run_dir = Path(run_dir)
    storage = storage or default_storage(run_dir)
    search = create_search(spec, storage, study, data=data)
    register_study(run_dir, search, storage)
    if workers <= 1:
        run_worker(search, data=data, run_dir=run_dir, worker_rank=0, on_trial=on_trial)
    else:
        procs = [subprocess.Popen(worker_command(storage, search.name, run_dir, rank=i, parent_pid=os.getpid()),
                                  env={**os.environ, "OMP_NUM_THREADS": str(spec.threads)})
                 for i in range(workers)]
        try:
            codes = [p.wait() for p in procs]
        finally:  # interrupted: stop the workers (a kill -9 of this process stops them by their death signal)
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            deadline = time.monotonic() + 10
            for p in procs:
                try:
                    p.wait(timeout=max(deadline - time.monotonic(), 0.1))
                except subprocess.TimeoutExpired:
                    p.kill()
        if any(codes):
            raise RuntimeError(f"search workers exited with {codes}; rerun the same command to resume")
    return write_report(search, run_dir) if report else summary(search)


def register_study(run_dir: str | os.PathLike, search: Search, storage: str) -> None:
    """Record the search in ``run_dir/search.json`` (``{"studies": {name: {"key", "storage"}}}``) and its
    spec in ``run_dir/<key>/spec.json``. A database URL may hold a password: only a journal file's path
    is remembered."""
    run_dir = Path(run_dir)
    meta = run_dir / "search.json"
    saved = json.loads(meta.read_text()) if meta.exists() else {}
    studies = saved.get("studies", {})
    studies[search.name] = {"key": search.key, "storage": None if "://" in storage else storage}
    io.write_json(run_dir / search.key / "spec.json", search.spec.model_dump(mode="json"))
    io.write_json(meta, {"studies": studies})


def registered_studies(run_dir: str | os.PathLike) -> dict[str, dict]:
    """The searches of a run directory (see :func:`register_study`); {} when it has none."""
    meta = Path(run_dir) / "search.json"
    return json.loads(meta.read_text()).get("studies", {}) if meta.exists() else {}


def worker_command(storage: str, study: str, run_dir: str | os.PathLike | None = None,
                   rank: int | None = None, parent_pid: int | None = None) -> list[str]:
    """The command line of one worker process (``parent_pid``: it ends when that process does)."""
    cmd = [sys.executable, "-m", "sparseforge.studies.search", "worker", "--storage", str(storage),
           "--study", study]
    if run_dir is not None:
        cmd += ["--run-dir", str(run_dir)]
    if rank is not None:
        cmd += ["--rank", str(rank)]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    return cmd


# ---------------------------------------------------------------------------------------------- report
def plot_pareto(rows: Sequence[dict], w_c: float, path: str | os.PathLike, *, title: str = "",
                other_w_c: Sequence[float] = (0.01, 1.0)) -> Path:
    """Validation accuracy vs normalised complexity of every complete trial (colour: stage), the Pareto
    front as a step line, and the point ``w_c`` picks (star); points other ``w_c`` would pick are ringed."""
    ok, front, chosen = front_rows(rows, w_c)
    fig, ax = subplots(figsize=(6.5, 4.5))
    stages = sorted({r["stage"] for r in ok})
    for s in stages:
        rs = [r for r in ok if r["stage"] == s]
        ax.scatter([r["f_c"] for r in rs], [100 * (1 - r["f_p"]) for r in rs], s=22, alpha=0.7,
                   label=f"stage {s}: {rs[0].get('stage_name', '')}")
    if front:
        fx = [ok[i]["f_c"] for i in front]
        fy = [100 * (1 - ok[i]["f_p"]) for i in front]
        ax.step(fx, fy, where="post", c="k", lw=1, label="Pareto front")
    if chosen >= 0:
        c = ok[chosen]
        ax.scatter([c["f_c"]], [100 * (1 - c["f_p"])], marker="*", s=260, c="red", edgecolors="k", zorder=5,
                   label=f"chosen by w_c={w_c:g} (f={c['f_p'] + w_c * c['f_c']:.4f})")
        for w in other_w_c:
            if w == w_c:
                continue
            _, _, j = front_rows(ok, w)
            o = ok[j]
            ax.scatter([o["f_c"]], [100 * (1 - o["f_p"])], s=160, facecolors="none", edgecolors="gray", zorder=4)
            ax.annotate(f"w_c={w:g}", (o["f_c"], 100 * (1 - o["f_p"])), textcoords="offset points",
                        xytext=(6, -12), fontsize=8, color="gray")
    ax.set_xscale("log")
    ax.set_xlabel("complexity f_c (normalised to the reference network)")
    ax.set_ylabel("best validation accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def _fmt(v: Any, spec: str = ".4f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def overhead(rows: Sequence[dict]) -> dict:
    """Engine time per trial (ask + proposal + tell) against training time, overall and by phase."""
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    done = [r for r in rows if r["state"] == "COMPLETE"]
    out = dict(trials=len(done), engine_s=mean([r["engine_s"] for r in done]),
               train_s=mean([r["train_s"] for r in done]))
    for ph in ("sobol", "gp"):
        rs = [r for r in done if r.get("phase") == ph]
        out[f"{ph}_engine_s"] = mean([r["engine_s"] for r in rs])
        out[f"{ph}_sampler_s"] = mean([r.get("sampler_s") for r in rs])
        out[f"{ph}_trials"] = len(rs)
    if out["engine_s"] is not None and out["train_s"]:
        out["engine_over_train"] = out["engine_s"] / out["train_s"]
    return out


def write_report(search: Search, run_dir: str | os.PathLike) -> dict:
    """``trials.csv``, ``summary.json``, ``pareto.png`` and ``report.md`` in ``run_dir/<search key>``;
    returns the summary (``report_dir`` added)."""
    run_dir = Path(run_dir) / search.key
    rows = trial_rows(search, all_states=True)
    flat = [{**{k: v for k, v in r.items() if k != "config"}, "config": json.dumps(r["config"])} for r in rows]
    sm = summary(search)
    sm["overhead"] = overhead(rows)
    w_c = search.spec.objective.w_c
    figures = {"pareto.png": lambda path: plot_pareto(rows, w_c, path, title=f"{search.name}: accuracy vs complexity")}
    draw = any(r["state"] == "COMPLETE" for r in rows) and search.spec.model != "synthetic"  # synthetic: f_c = 0
    lines = [f"# Search {search.name}", "",
             f"model {search.spec.model} on {search.spec.data.name}; sampler {search.spec.sampler.name} "
             f"(seed {search.spec.sampler.seed}); f = f_p + {w_c:g} f_c "
             f"({search.spec.objective.complexity}, reference {search.reference:g})", "",
             "| stage | name | budget | complete | pruned | failed | best f | best val acc |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in sm["stages"]:
        lines.append(f"| {s['stage']} | {s['name']} | {s['budget']} | {s['complete']} | {s['pruned']} | "
                     f"{s['failed']} | {_fmt(s['best_f'])} | {_fmt(s['best_val_acc'])} |")
    b = sm["best"]
    if b:
        test = "-" if b["test_acc"] is None else f"{100 * b['test_acc']:.2f}%"
        lines += ["", f"best: f = {b['f']:.4f} (val acc {100 * b['val_acc']:.2f}%, test acc "
                  f"{test}, {b['params']:,} parameters, f_c = {b['f_c']:.4f}), "
                  f"stage {b['stage']} trial {b['number']}", "", f"config: `{json.dumps(b['config'])}`"]
    o = sm["overhead"]
    lines += ["", f"engine time per trial {_fmt(o['engine_s'], '.3f')} s vs training {_fmt(o['train_s'], '.3f')} s "
              f"(GP phase: {_fmt(o['gp_engine_s'], '.3f')} s over {o['gp_trials']} trials)", "",
              "![pareto](pareto.png)", ""]
    run_report.write_report(run_dir, "\n".join(lines), tables={"trials.csv": flat}, data={"summary.json": sm},
                            figures=figures if draw else {})
    return {**sm, "report_dir": str(run_dir)}


# ---------------------------------------------------------------------------------------------- compare
def best_so_far(rows: Sequence[dict]) -> list[float]:
    """Best f after each finished trial, in the order trials ran (stage, then number)."""
    out, best = [], math.inf
    for r in sorted(rows, key=lambda r: (r["stage"], r["number"])):
        if r["state"] == "COMPLETE" and r["f"] is not None:
            best = min(best, r["f"])
        if r["state"] in ("COMPLETE", "PRUNED"):
            out.append(best)
    return out


def compare(spec: SearchSpec, run_dir: str | os.PathLike, *, samplers: Sequence[str] = ("gp", "random", "tpe"),
            seeds: Sequence[int] = (0, 1, 2), budget: int | None = None, data: DataSplits | None = None,
            on_trial: Callable[[str, int, dict], None] | None = None) -> list[dict]:
    """Run the spec with every sampler and seed at the same per-stage budgets (each in
    ``run_dir/<sampler>-seed<k>``, resumable; ``budget``: total trials, see :func:`with_budget`) and
    tabulate the best f found. Writes ``compare.csv`` (one row per run), ``compare.md`` (mean ± std of the
    best f per sampler, per-seed table, wins of GP-EI), ``anytime.csv`` and ``compare.png`` (best f so far
    against trials, mean ± standard error over seeds). Returns one row per run."""
    run_dir = Path(run_dir)
    spec = with_budget(spec, budget) if budget is not None else spec
    data = data if data is not None else load_search_data(spec)
    rows, curves = [], {}
    for seed in seeds:
        for name in samplers:
            sp = with_sampler(spec, SAMPLER_ALIASES.get(name, name), seed)
            sub = run_dir / f"{name}-seed{seed}"
            cb = (lambda r, n=name, s=seed: on_trial(n, s, r)) if on_trial else None
            sm = run_search(sp, sub, data=data, on_trial=cb)
            search = load_search(default_storage(sub), sp.name)
            trows = trial_rows(search, all_states=True)
            curves.setdefault(name, []).append(best_so_far(trows))
            b = sm["best"] or {}
            o = sm["overhead"]
            rows.append(dict(sampler=name, seed=seed, best_f=b.get("f"), best_val_acc=b.get("val_acc"),
                             best_test_acc=b.get("test_acc"), best_params=b.get("params"), best_f_c=b.get("f_c"),
                             trials=len([r for r in trows if r["state"] in ("COMPLETE", "PRUNED")]),
                             engine_s=o["engine_s"], train_s=o["train_s"]))
    _compare_report(rows, curves, spec, run_dir, samplers, seeds)
    return rows


#: names the compare command accepts besides the spec's sampler names
SAMPLER_ALIASES = {"gp-ei": "gp"}


def with_budget(spec: SearchSpec, budget: int) -> SearchSpec:
    """The spec with ``budget`` trials in all, split over the stages in proportion to their budgets (at
    least one each; largest remainders first), and ``n_initial`` capped at a third of the smallest stage
    (at least 2) so every model-based sampler gets to use its model."""
    n = spec.n_stages
    if budget < n:
        raise ConfigError(f"budget: {budget} trials cannot cover {n} stages; give at least {n}")
    total = sum(s.trials for s in spec.stages)
    raw = [budget * s.trials / total for s in spec.stages]
    alloc = [max(1, int(r)) for r in raw]
    for i in sorted(range(n), key=lambda i: raw[i] - int(raw[i]), reverse=True):
        if sum(alloc) >= budget:
            break
        alloc[i] += 1
    while sum(alloc) > budget:  # the minimum of one per stage overshot: take from the largest
        alloc[alloc.index(max(alloc))] -= 1
    stages = [s.model_copy(update={"trials": t}) for s, t in zip(spec.stages, alloc)]
    n_init = min(spec.sampler.n_initial, max(2, min(alloc) // 3))
    return spec.model_copy(update={"stages": stages,
                                   "sampler": spec.sampler.model_copy(update={"n_initial": n_init})})


def anytime(curves: dict[str, list[list[float]]]) -> list[dict]:
    """Best f so far after each trial: mean, std and standard error over seeds per sampler (rows of
    ``sampler, trial, mean, std, se, seeds``), up to the shortest run of each sampler."""
    out = []
    for name, cs in curves.items():
        length = min((len(c) for c in cs), default=0)
        for i in range(length):
            vals = np.array([c[i] for c in cs], dtype=np.float64)
            ok = vals[np.isfinite(vals)]
            if not len(ok):
                continue
            sd = float(ok.std(ddof=1)) if len(ok) > 1 else 0.0
            out.append(dict(sampler=name, trial=i + 1, mean=float(ok.mean()), std=sd,
                            se=sd / math.sqrt(len(ok)), seeds=len(ok)))
    return out


def _mean_sd(vals: Sequence[float]) -> tuple[float, float, float]:
    v = np.array([x for x in vals if x is not None], dtype=np.float64)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return float(v.mean()), sd, sd / math.sqrt(max(len(v), 1))


def _compare_report(rows, curves, spec, run_dir, samplers, seeds) -> None:
    by = {(r["sampler"], r["seed"]): r for r in rows}
    stats = {n: _mean_sd([by[(n, s)]["best_f"] for s in seeds]) for n in samplers}
    syn = spec.model == "synthetic"
    design = [design_size(spec.sampler.n_initial, spec.stage(i).dim, s.trials) for i, s in enumerate(spec.stages)]
    lines = [f"# Sampler comparison: {spec.name}", "",
             f"best f = f_p + {spec.objective.w_c:g} f_c over all stages (lower is better); budgets "
             f"{[s.trials for s in spec.stages]} per stage ({sum(s.trials for s in spec.stages)} trials), "
             f"{spec.sampler.n_initial} initial points per stage (gp-ei's design: {design}), {len(seeds)} seeds"
             + ("; known optimum f = 0" if syn else ""), "",
             "| sampler | mean best f | std | std error | mean engine s / trial | mean train s / trial |",
             "| --- | --- | --- | --- | --- | --- |"]
    for n in samplers:
        m, sd, se = stats[n]
        eng = _mean_sd([by[(n, s)]["engine_s"] for s in seeds])[0]
        tr = _mean_sd([by[(n, s)]["train_s"] for s in seeds])[0]
        lines.append(f"| {n} | {m:.4f} | {sd:.4f} | {se:.4f} | {eng:.3f} | {tr:.3f} |")
    lines += ["", "| seed | " + " | ".join(samplers) + " |", "| --- " * (len(samplers) + 1) + "|"]
    for s in seeds:
        vals = [by[(n, s)]["best_f"] for n in samplers]
        best = min(v for v in vals if v is not None)
        lines.append(f"| {s} | " + " | ".join(("**" + _fmt(v) + "**") if v == best else _fmt(v) for v in vals) + " |")
    gp = next((n for n in samplers if SAMPLER_ALIASES.get(n, n) == "gp"), None)
    if gp is not None:
        lines.append("")
        for other in samplers:
            if other == gp:
                continue
            wins = sum(by[(gp, s)]["best_f"] < by[(other, s)]["best_f"] for s in seeds)
            diff = stats[other][0] - stats[gp][0]
            se = math.sqrt(stats[gp][2] ** 2 + stats[other][2] ** 2)
            lines.append(f"- {gp} vs {other}: lower best f in {wins} of {len(seeds)} seeds; mean difference "
                         f"{diff:+.4f} ({'GP-EI better' if diff > 0 else 'GP-EI worse' if diff < 0 else 'tie'}; "
                         f"standard error of the difference {se:.4f})")
    lines += ["", "![anytime](compare.png)", ""]
    curve_rows = anytime(curves)
    run_report.write_report(run_dir, "\n".join(lines), tables={"compare.csv": rows, "anytime.csv": curve_rows},
                            figures={"compare.png": lambda path: _plot_anytime(curve_rows, spec, samplers, seeds, path)},
                            name="compare.md")


def _plot_anytime(curve_rows, spec, samplers, seeds, path) -> Path:
    fig, ax = subplots(figsize=(6.5, 4.2))
    for n in samplers:
        rs = [r for r in curve_rows if r["sampler"] == n]
        if not rs:
            continue
        x = np.array([r["trial"] for r in rs])
        m = np.array([r["mean"] for r in rs])
        se = np.array([r["se"] for r in rs])
        ax.plot(x, m, label=n)
        ax.fill_between(x, m - se, m + se, alpha=0.2)
    for b in np.cumsum([s.trials for s in spec.stages])[:-1]:
        ax.axvline(b + 0.5, c="gray", lw=0.5, ls=":")
    ax.set_xlabel("finished trials (dotted: stage boundaries)")
    ax.set_ylabel(f"best f so far (mean ± s.e., {len(seeds)} seeds)")
    ax.set_title(f"{spec.name}: anytime performance")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


# ---------------------------------------------------------------------------------------------- worker entry
def _worker_main(argv: Sequence[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sparseforge.studies.search worker")
    ap.add_argument("command", choices=["worker"])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--rank", type=int, default=None)
    ap.add_argument("--parent-pid", type=int, default=None, help="end when this process ends")
    a = ap.parse_args(argv)
    if a.parent_pid is not None:
        die_with_parent(a.parent_pid)
    search = load_search(a.storage, a.study)
    run_worker(search, run_dir=a.run_dir, worker_rank=a.rank)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
