"""Benchmark: SparseLinear against every dense path available, at equal shapes, in one run.

Times are the minimum over ``repeats`` runs after warm-up, with torch's thread count set explicitly
(these machines are shared: only ratios measured in the same run are meaningful). Ratios are
``best dense time / sparse time`` for the same operation (higher is better).
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import torch
from torch import nn

from ..nn import SparseLinear
from ..topology import structured, valid_out_degrees


def best_time(fn: Callable[[], object], repeats: int = 7, warmup: int = 2) -> float:
    """Minimum wall-clock seconds of ``fn()`` over ``repeats`` runs."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _train_step(module_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, g: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        y = module_fn(x)
        y.backward(g)

    return step


def dense_baselines(n_in: int, n_out: int, batch: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Seconds per forward (``fwd``) and forward+backward (``train``) of the dense paths.

    Paths: ``nn.Linear`` (batch-major), ``torch.mm`` (feature-major ``W @ x``), and oneDNN
    (``torch.utils.mkldnn`` inference linear; forward only) where this torch build has it.
    """
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out)
    x = torch.randn(batch, n_in, requires_grad=True)
    g = torch.randn(batch, n_out)
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        out["nn.Linear"] = {"fwd": best_time(lambda: lin(x))}
    out["nn.Linear"]["train"] = best_time(_train_step(lin, x, g))
    w = lin.weight.detach().clone().requires_grad_()
    x_fm = x.detach().t().contiguous().requires_grad_()
    g_fm = g.t().contiguous()
    with torch.no_grad():
        out["torch.mm"] = {"fwd": best_time(lambda: torch.mm(w, x_fm))}
    out["torch.mm"]["train"] = best_time(_train_step(lambda v: torch.mm(w, v), x_fm, g_fm))
    if torch.backends.mkldnn.is_available():
        try:
            from torch.utils import mkldnn as mkldnn_utils

            mlin = mkldnn_utils.to_mkldnn(nn.Linear(n_in, n_out))
            xm = x.detach().to_mkldnn()
            with torch.no_grad():
                out["oneDNN"] = {"fwd": best_time(lambda: mlin(xm))}
        except (RuntimeError, AttributeError):  # build without oneDNN linear
            pass
    return out


def sparse_times(n_in: int, n_out: int, batch: int, density: float, seed: int = 0) -> dict[str, dict[str, float]]:
    """Seconds per forward and forward+backward of SparseLinear (feature-major) and torch CSR."""
    d_out = min(valid_out_degrees(n_in, n_out), key=lambda d: abs(d / n_out - density))
    pattern = structured(n_in, n_out, d_out, seed=seed)
    layer = SparseLinear(pattern)
    x_fm = torch.randn(n_in, batch, requires_grad=True)
    g_fm = torch.randn(n_out, batch)
    out: dict[str, dict[str, float]] = {"density": {"value": pattern.density}}
    with torch.no_grad():
        out["SparseLinear"] = {"fwd": best_time(lambda: layer.forward_fm(x_fm))}
    out["SparseLinear"]["train"] = best_time(_train_step(layer.forward_fm, x_fm, g_fm))
    w_csr = layer.to_dense().to_sparse_csr()
    with torch.no_grad():
        out["torch CSR"] = {"fwd": best_time(lambda: torch.sparse.mm(w_csr, x_fm))}
    return out


def run(
    n: int = 4096,
    batch: int = 256,
    densities: Sequence[float] = (1.0, 0.5, 0.2, 0.1, 0.05, 0.01),
    threads: int = 2,
    seed: int = 0,
) -> dict:
    """The whole benchmark; returns ``{"setup": ..., "dense": ..., "rows": [...]}`` (JSON-ready).

    Each row: density, sparse and CSR times (ms), and ``speedup_fwd`` / ``speedup_train`` = best dense
    time / SparseLinear time for forward and for forward+backward.
    """
    torch.set_num_threads(threads)
    dense = dense_baselines(n, n, batch, seed)
    best_fwd = min(v["fwd"] for v in dense.values())
    best_train = min(v["train"] for v in dense.values() if "train" in v)
    rows = []
    for rho in densities:
        s = sparse_times(n, n, batch, rho, seed)
        rows.append(
            dict(
                density=s["density"]["value"],
                sparse_fwd_ms=1e3 * s["SparseLinear"]["fwd"],
                sparse_train_ms=1e3 * s["SparseLinear"]["train"],
                csr_fwd_ms=1e3 * s["torch CSR"]["fwd"],
                speedup_fwd=best_fwd / s["SparseLinear"]["fwd"],
                speedup_train=best_train / s["SparseLinear"]["train"],
                gflops_fwd=2 * s["density"]["value"] * n * n * batch / s["SparseLinear"]["fwd"] / 1e9,
            )
        )
    return dict(
        setup=dict(n_in=n, n_out=n, batch=batch, threads=threads, torch=torch.__version__),
        dense={k: {op: 1e3 * t for op, t in v.items()} for k, v in dense.items()},
        best_dense_fwd_ms=1e3 * best_fwd,
        best_dense_train_ms=1e3 * best_train,
        rows=rows,
    )
