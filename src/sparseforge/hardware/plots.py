"""Plots of the hardware design space (matplotlib, Agg canvas: no display, no global backend change)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..io import atomic_path
from .resources import SweepPoint

__all__ = ["plot_z_sweep"]


def plot_z_sweep(points: Sequence[SweepPoint], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Three panels: clocks per input against memory (kbit), against physical memory blocks and against
    multipliers; one marker per configuration, labelled with its ``z``. Writes ``path`` (format from
    the suffix, e.g. .png, .pdf) atomically and returns it."""
    from ..errors import require

    require("matplotlib", "plot_z_sweep")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not points:
        raise ValueError("plot_z_sweep: no configurations to plot")
    fig = Figure(figsize=(14, 4.5))
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.13, top=0.9, wspace=0.08)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3, sharey=True)
    y = [p.clocks_per_input for p in points]
    for ax, x, label in (
        (axes[0], [p.memory_bits / 1000 for p in points], "memory (kbit)"),
        (axes[1], [p.blocks for p in points], "memory blocks (block RAMs)"),
        (axes[2], [p.multipliers for p in points], "multipliers"),
    ):
        colors = ["tab:blue" if p.balanced else "tab:orange" for p in points]
        ax.scatter(x, y, c=colors, s=25)
        for xi, yi, p in zip(x, y, points):
            if len(points) > 16 and not p.balanced:
                continue  # label the balanced configurations only when crowded
            ax.annotate("z=" + ",".join(map(str, p.z)), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    axes[1].set_xscale("log")
    axes[2].set_xscale("log")
    axes[0].set_ylabel("clocks per input (block cycle)")
    fig.suptitle(title or "design space over z (blue: balanced pipeline, orange: unbalanced)")
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path
