"""Figures for reports. Each figure has its own Agg canvas: no display needed, no pyplot state, and the
user's matplotlib backend is never changed; matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..errors import require
from ..io import atomic_path


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, **kwargs):
    """``(figure, axes)`` as ``pyplot.subplots`` returns them, on a figure of its own (Agg canvas)."""
    require("matplotlib", "drawing figures")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (the format from the suffix, PNG by default)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    return path


def plot_metric_vs_density(
    rows: Sequence[dict],
    path: str | Path,
    *,
    x: str = "rho_net",
    y: str = "test_acc",
    group: str | None = None,
    title: str = "",
    ylabel: str = "test accuracy (%)",
    baseline: float | None = None,
) -> Path:
    """Line plot of ``y`` (fraction, shown in %) against ``x`` (density, shown in %, log axis).

    ``rows`` are dicts; with ``group``, one line per distinct value of that key. Rows sharing ``x`` within a
    group (several seeds) are drawn as mean with min-max error bars. ``baseline`` draws a dashed line (FC).
    """
    import matplotlib.ticker

    fig, ax = subplots(figsize=(6, 4))
    groups: dict = {}
    for r in rows:
        groups.setdefault(r.get(group) if group else "", []).append(r)
    for name, rs in groups.items():
        by_x: dict = {}
        for r in rs:
            by_x.setdefault(r[x], []).append(100 * r[y])
        xs = sorted(by_x)
        mean = [sum(by_x[v]) / len(by_x[v]) for v in xs]
        lo = [m - min(by_x[v]) for m, v in zip(mean, xs)]
        hi = [max(by_x[v]) - m for m, v in zip(mean, xs)]
        ax.errorbar([100 * v for v in xs], mean, yerr=[lo, hi], marker="o", capsize=3, label=str(name) or None)
    if baseline is not None:
        ax.axhline(100 * baseline, ls="--", c="gray", label="fully connected")
    ax.set_xscale("log")
    ticks = sorted({100 * r[x] for r in rows})
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.set_xlabel("overall density rho_net (%)")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if title:
        ax.set_title(title)
    if group or baseline is not None:
        ax.legend()
    return save_figure(fig, path)
