"""Figures of a network's connectivity (matplotlib Agg; no display, no pyplot global state).

Each function takes data and a path and writes one PNG atomically (a temporary file in the same
directory, then ``os.replace``), returning the path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import require
from ..io import atomic_path

require("matplotlib", "topology figures")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from ..topology.analysis import path_counts
from ..topology.network import NetworkTopology

__all__ = ["plot_adjacency", "plot_path_counts"]


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return path


def plot_adjacency(net: NetworkTopology, path: str | Path, *, dpi: int = 120, max_cols: int = 4) -> Path:
    """One panel per junction: the boolean matrix ``[n_out, n_in]`` (rows = right nodes, black = edge),
    titled with the junction's sizes, edges and density. Writes a PNG at ``path``."""
    n = len(net.patterns)
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4 * cols, 3.6 * rows))
    for i, p in enumerate(net.patterns):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(p.to_dense(), cmap="Greys", interpolation="nearest", aspect="auto", vmin=0, vmax=1)
        ax.set_title(
            f"junction {i + 1}: {p.n_in} -> {p.n_out}\n{p.edges} edges, density {100 * p.density:.3g}%",
            fontsize=9,
        )
        ax.set_xlabel(f"left node (0..{p.n_in - 1})", fontsize=8)
        ax.set_ylabel(f"right node (0..{p.n_out - 1})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{net.family}: N_net = {list(net.sizes)}, rho_net = {100 * net.rho_net:.3g}%", fontsize=10)
    return _save(fig, path, dpi)


def plot_path_counts(
    net: NetworkTopology,
    path: str | Path,
    *,
    counts: np.ndarray | None = None,
    dpi: int = 120,
    bins: int = 50,
) -> Path:
    """Histogram of the number of paths over all ``N_0 x N_L`` input-output pairs (a single bar when
    every pair has the same count, as in RadiX-Nets), with min / max / mean and the fraction of
    connected pairs in the title. ``counts`` (``[N_L, N_0]``, from :func:`path_counts`) is computed when
    not given. Writes a PNG at ``path``."""
    if counts is None:
        try:
            counts = path_counts(net, exact=True)
        except OverflowError:
            counts = path_counts(net, exact=False)
    c = counts.reshape(-1).astype(np.float64)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = float(c.min()), float(c.max())
    if lo == hi:
        ax.bar([lo], [c.size], width=max(1.0, 0.05 * max(abs(lo), 1.0)), color="C0")
    else:
        ax.hist(c, bins=min(bins, int(hi - lo) + 1) if hi - lo < bins else bins, color="C0")
    ax.set_xlabel("number of paths from an input to an output")
    ax.set_ylabel("input-output pairs")
    ax.set_title(
        f"{net.family} {list(net.sizes)}: paths min {lo:.6g}, max {hi:.6g}, mean {c.mean():.4g}\n"
        f"connected pairs {100 * np.count_nonzero(c) / c.size:.4g}%",
        fontsize=9,
    )
    ax.grid(True, alpha=0.3)
    return _save(fig, path, dpi)
