"""Terminal output shared by the commands: consoles, Typer groups and rich tables of row dicts.

On a terminal, rich output (colours, a bar for progress); in a pipe or a log file, plain text that never
wraps a number or cuts a table cell (one very wide line instead).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 1000  # columns when not a terminal: tables keep every cell whole; nothing is wrapped


def _console(stream: Any, stderr: bool) -> Console:
    """On a terminal, rich output; in a pipe or a log file, plain text that never wraps a number or cuts a
    table cell (one wide line instead) and has no colour codes."""
    if stream.isatty():
        return Console(stderr=stderr, soft_wrap=stderr)  # an error stays one line however narrow the terminal
    return Console(stderr=stderr, width=PIPE_WIDTH, soft_wrap=True, no_color=True, highlight=False)


out = _console(sys.stdout, stderr=False)
err = _console(sys.stderr, stderr=True)

__all__ = ["err", "out", "notice", "notice_adjusted", "pct", "rich_table", "typer_app"]


def typer_app(**kwargs: Any) -> typer.Typer:
    """A Typer command group with the settings every group shares: plain (click) help text, so option names
    and types are never cut in a pipe and flags carry no ``<bool>``; help lines up to 200 columns."""
    kwargs.setdefault("no_args_is_help", True)
    settings: dict = {"max_content_width": 200}
    if not sys.stdout.isatty():  # a pipe or a file: wide lines rather than 80 columns
        settings["terminal_width"] = 200
    return typer.Typer(rich_markup_mode=None, context_settings=settings, **kwargs)


def notice(text: str) -> None:
    """A silent adjustment made visible (a rounded degree, a clipped density): one line on stderr."""
    err.print(f"notice: {text}", markup=False, highlight=False)


def notice_adjusted(asked: Any, topo: Any) -> None:
    """A notice for each junction of ``topo`` whose density differs from ``asked`` (one number for every
    junction, or one per junction): degrees are whole numbers, and a family may need a degree that fits the
    layer sizes, so 20% of 112 -> 10 can become 50%."""
    if asked is None:
        return
    per = list(asked) if isinstance(asked, (list, tuple)) else [asked] * len(topo.patterns)
    for j, (a, p) in enumerate(zip(per, topo.patterns), start=1):
        if abs(a - p.density) > 1e-9:
            notice(f"junction {j} ({p.n_in}->{p.n_out}): density {100 * a:g}% asked, {100 * p.density:.2f}% built "
                   "(degrees are whole numbers that fit the layer sizes)")


def rich_table(rows: list[dict], title: str = "", fmt: Optional[dict[str, Callable]] = None) -> Table:
    """A table with one column per key of the first row; ``fmt[key]`` formats that column's values."""
    fmt = fmt or {}
    t = Table(title=title)
    keys = list(rows[0]) if rows else []
    for k in keys:
        t.add_column(k, justify="right", no_wrap=True)
    for r in rows:
        t.add_row(*[(fmt[k](r[k]) if k in fmt and r[k] is not None else str(r[k])) for k in keys])
    return t


def pct(v: Optional[float]) -> str:
    """A fraction as a percentage with two decimals ('' for None)."""
    return "" if v is None else f"{100 * v:.2f}%"
