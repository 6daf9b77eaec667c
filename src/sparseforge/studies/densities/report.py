"""What a study produced (:class:`AnalysisResult`, :class:`StudyResult`) and how it is written:
CSV tables, summary.json and report.md."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ... import io
from .schema import Recipe, StudyTrain


@dataclass
class AnalysisResult:
    """What a study's analysis produced: conclusion sentences, a machine-readable verdict, extra tables
    (name -> rows, each written as ``<name>.csv`` and shown in the report) and figure file names."""

    conclusions: list[str]
    verdict: dict
    tables: dict[str, list[dict]] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    columns: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class StudyResult:
    recipe: Recipe
    setting: str
    seeds: list[int]
    rows: list[dict]
    table: list[dict]
    analysis: AnalysisResult
    trained: int
    reused: int
    wall_s: float
    run_dir: Path



def pct(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.{digits}f}%"


def acc_text(r: dict, m: str = "test_acc") -> str:
    """``mean [min, max]`` in percent."""
    return f"{100 * r[m + '_mean']:.2f} [{100 * r[m + '_min']:.2f}, {100 * r[m + '_max']:.2f}]"


def densities_text(r: dict) -> str:
    ks = sorted((k for k in r if re.fullmatch(r"rho_\d+", k)), key=lambda k: int(k[4:]))
    return ", ".join(f"{100 * r[k]:.1f}%" for k in ks)


# =========================================================================================== outputs
def _cell(r: dict, spec: str) -> str:
    name, _, fmt = spec.partition(":")
    if "/" in name:
        return " / ".join(_cell(r, f"{n}:{fmt}") for n in name.split("/"))
    v = r.get(name)
    if v is None:
        return "n/a"
    if fmt == "pct":
        return pct(v)
    if fmt == "pts":
        return f"{100 * v:+.2f}"
    if fmt == "g":
        return f"{v:g}"
    if fmt == "3f":
        return f"{v:.3f}"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def md_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> list[str]:
    """Markdown table lines; ``columns`` = (header, ``key[:fmt]``) with fmt pct, pts, g or 3f."""
    out = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(r, c) for _, c in columns) + " |" for r in rows]
    return out


def write_outputs(res: StudyResult) -> None:
    """runs.csv, table.csv, <analysis tables>.csv, summary.json and report.md (figures are already written)."""
    d = res.run_dir
    io.write_csv(d / "runs.csv", res.rows)
    io.write_csv(d / "table.csv", res.table)
    for name, rows in res.analysis.tables.items():
        if rows:
            io.write_csv(d / f"{name}.csv", rows)
    io.write_json(d / "summary.json", dict(
        study=res.recipe.name, setting=res.setting, seeds=res.seeds, conclusions=res.analysis.conclusions,
        verdict=res.analysis.verdict, trained=res.trained, reused=res.reused, wall_s=res.wall_s,
        train_time_s=sum(r.get("train_time_s", 0.0) for r in res.rows),
        files=sorted(p.name for p in d.iterdir() if p.is_file() and not p.name.startswith(".")),
    ))
    io.write_text(d / "report.md", report_markdown(res))


def report_markdown(res: StudyResult) -> str:
    r, s = res.recipe, res.recipe.settings[res.setting]
    datasets = list(dict.fromkeys(x["dataset"] for x in res.table))
    nets = list(dict.fromkeys(x["net"] for x in res.table))
    train = StudyTrain.model_validate(s.train) if s.train else StudyTrain()
    train_s = sum(x.get("train_time_s", 0.0) for x in res.rows)
    lines = [
        f"# {r.title}",
        "",
        f"> Claim under test ({r.source or 'seed'}): *{r.claim}*",
        "",
        f"Setting **{res.setting}**: {len(res.table)} configurations x {len(res.seeds)} seeds ({res.seeds}); "
        f"data {', '.join(datasets)}; networks {', '.join(nets)}; base training {train.epochs} epochs, "
        f"{train.optimizer} lr {train.lr:g} ({train.lr_schedule}), batch {train.batch_size}"
        + (f", L2 lambda {train.l2:g}" if train.l2 else "") + f"; {s.threads} torch thread(s). "
        f"Every network is trained from scratch with its pre-defined pattern (sparse all the way).",
        "",
        f"This invocation trained {res.trained} sub-runs and reused {res.reused}; training time of all sub-runs "
        f"{train_s:.0f} s; wall time of this invocation {res.wall_s:.0f} s.",
    ]
    if s.note:
        lines += ["", s.note.strip()]
    lines += ["", "## Conclusion", ""] + [f"- {c}" for c in res.analysis.conclusions]
    for name, rows in res.analysis.tables.items():
        cols = res.analysis.columns.get(name)
        if rows and cols:
            lines += ["", f"### {name.replace('_', ' ')}", ""] + md_table(rows, cols)
    lines += ["", "## Results (test accuracy %, mean [min, max] over seeds)", ""]
    cols = [("configuration", "label"), ("data", "dataset"), ("N_net", "net"), ("family", "family"),
            ("rho_net", "rho_net:pct"), ("junction densities", "dens"), ("weights", "edges")]
    if any(x.get("l2") for x in res.table):
        cols.append(("lambda", "l2:g"))
    cols += [("val acc", "val"), ("test acc", "test"), ("seeds", "n_seeds")]
    view = [dict(x, dens=densities_text(x), val=acc_text(x, "val_acc"), test=acc_text(x)) for x in res.table]
    lines += md_table(view, cols)
    lines += [""] + [f"![{f}]({f})" for f in res.analysis.figures]
    lines += ["", "Files: `runs.csv` (one row per sub-run), `table.csv` (per configuration, aggregated), "
              + ", ".join(f"`{n}.csv`" for n, rows in res.analysis.tables.items() if rows)
              + ", `summary.json`; sub-runs in `runs/<configuration>/seed<s>/`.",
              "", f"Reproduce: `sparseforge study {r.name} --setting {res.setting}"
              + (f" --seeds {len(res.seeds)}" if res.seeds != list(s.seeds) else "") + "`", ""]
    return "\n".join(lines)
