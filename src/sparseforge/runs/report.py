"""The one report writer of the studies: tables as CSV, figures as PNG, then ``report.md`` last.

Every file is written atomically (``sparseforge.io``), and the markdown goes last, so a report that exists
describes files that exist. Figures are given as functions of the path to write (the plot functions of
``runs/plots.py``), so matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .. import io


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   fmt: Mapping[str, Callable[[Any], str]] | None = None) -> str:
    """A GitHub markdown table: one column per key (``columns``, default the first row's keys), numbers
    right-aligned; ``fmt[key]`` formats that column (None shows as an empty cell)."""
    fmt = fmt or {}
    cols = list(columns) if columns is not None else (list(rows[0]) if rows else [])
    num = {c: any(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) for r in rows) for c in cols}
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---:" if num[c] else "---" for c in cols) + "|"]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append("" if v is None else fmt[c](v) if c in fmt else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(run_dir: str | Path, markdown: str, *, tables: Mapping[str, Sequence[Mapping]] | None = None,
                 figures: Mapping[str, Callable[[Path], Any]] | None = None,
                 data: Mapping[str, Any] | None = None, name: str = "report.md") -> list[Path]:
    """Write ``tables`` (file name → rows, as CSV), ``data`` (file name → JSON-able value), ``figures``
    (file name → function drawing into that path) and finally ``markdown`` as ``name``, all under
    ``run_dir``. Returns the paths written, the markdown last."""
    run_dir = Path(run_dir)
    paths = [io.write_csv(run_dir / f, list(rows)) for f, rows in (tables or {}).items()]
    paths += [io.write_json(run_dir / f, v) for f, v in (data or {}).items()]
    for f, draw in (figures or {}).items():
        draw(run_dir / f)
        paths.append(run_dir / f)
    paths.append(io.write_text(run_dir / name, markdown if markdown.endswith("\n") else markdown + "\n"))
    return paths
