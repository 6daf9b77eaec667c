"""Terminal output shared by the commands: consoles and rich tables of row dicts."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from rich.console import Console
from rich.table import Table

out = Console(width=None if sys.stdout.isatty() else 160)  # tables stay whole when piped to a file
err = Console(stderr=True, soft_wrap=True)  # an error stays one line however narrow the terminal


def rich_table(rows: list[dict], title: str = "", fmt: Optional[dict[str, Callable]] = None) -> Table:
    """A table with one column per key of the first row; ``fmt[key]`` formats that column's values."""
    fmt = fmt or {}
    t = Table(title=title)
    keys = list(rows[0]) if rows else []
    for k in keys:
        t.add_column(k, justify="right")
    for r in rows:
        t.add_row(*[(fmt[k](r[k]) if k in fmt and r[k] is not None else str(r[k])) for k in keys])
    return t


def pct(v: Optional[float]) -> str:
    """A fraction as a percentage with two decimals ('' for None)."""
    return "" if v is None else f"{100 * v:.2f}%"
