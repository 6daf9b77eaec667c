"""``sparseforge bench linear --device cuda``: SparseLinear on the GPU against cuBLAS dense, torch CSR
(cuSPARSE) and 2:4 semi-structured sparsity, forward and training step.

Times are CUDA-event medians (ms) over ``repeats`` runs after a warm-up (on the CPU, for tests of this code
path on machines without a GPU: wall-clock medians). Every contender's output is checked against the dense
product of the same weights before it is timed. Ratios are against the best dense path of the same run and
dtype (``nn.Linear``: cuBLAS on CUDA); torch CSR and 2:4 are forward only; 2:4 has its own density (50%)
and runs only where torch supports it (half precision on GPUs with sparse tensor cores): elsewhere its row
says why it is missing instead of failing the run.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..kernels import resolve_backend
from ..nn import SparseLinear
from ..topology import structured
from ..topology.block import block as block_pattern
from .bench import _out_degree, torch_csr

DTYPES = ("float16", "bfloat16", "float32")


def _timer(device: torch.device, repeats: int) -> Callable[[Callable[[], object]], float]:
    """``ms(fn)``: median milliseconds of ``fn()`` after one warm-up call (CUDA events on a GPU)."""

    def cuda_ms(fn: Callable[[], object]) -> float:
        fn()
        torch.cuda.synchronize(device)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def wall_ms(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
        return statistics.median(times)

    return cuda_ms if device.type == "cuda" else wall_ms


def _step(layer: torch.nn.Module, x: torch.Tensor, gy: torch.Tensor) -> Callable[[], None]:
    """One training step's products: forward and backward (grad input, grad weights, grad bias)."""

    def run() -> None:
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(gy)

    return run


def _tolerance(dtype: torch.dtype) -> dict:
    return dict(rtol=2e-2, atol=2e-1) if dtype in (torch.float16, torch.bfloat16) else dict(rtol=1e-4, atol=1e-4)


def gpu_table(n: int = 4096, batch: int = 256, densities: Sequence[float] = (0.1, 0.05, 0.01),
              dtypes: Sequence[str] = ("float16", "float32"), block: int = 16, repeats: int = 20,
              device: str = "cuda", seed: int = 0) -> dict:
    """SparseLinear (structured and ``block x block`` patterns) vs the dense and sparse products of torch.

    Args:
        n: ``n_in = n_out``; batch: rows of ``x[batch, n]`` (batch-major, as ``nn.Linear`` is called).
        densities: per pattern, in (0, 1]; rounded to whole out-degrees (the rows report what was built).
        dtypes: names in :data:`DTYPES`.
        device: ``"cuda"`` (or ``"cuda:1"``), or ``"cpu"`` to exercise this code path without a GPU.

    Returns ``{"setup": {...}, "notes": [why a contender is missing], "rows": [...]}``; a row has
    ``dtype, contender, density, fwd_ms, train_ms`` (None: no training step) and ``x_fwd``, ``x_train``:
    best dense time of the same dtype / contender time.

    Raises :class:`ConfigError` for an unknown dtype or a CUDA device that is not there.
    """
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r}: no CUDA device here (torch {torch.__version__}, "
                          "torch.cuda.is_available() is False); run on a GPU machine (benchmarks/gpu.sh)")
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ConfigError(f"dtypes={list(dtypes)}: {bad} not allowed; choose from {list(DTYPES)}")
    ms = _timer(dev, repeats)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    rows: list[dict] = []
    notes: list[str] = []
    for dname in dtypes:
        dtype = getattr(torch, dname)
        tol = _tolerance(dtype)
        torch.manual_seed(seed)
        x = torch.randn(batch, n, device=dev, dtype=dtype, requires_grad=True)
        gy = torch.randn(batch, n, device=dev, dtype=dtype)
        dense = torch.nn.Linear(n, n, device=dev, dtype=dtype)
        with torch.no_grad():
            d_fwd = ms(lambda: dense(x))
        d_train = ms(_step(dense, x, gy))
        found = [dict(contender="dense nn.Linear" + (" (cuBLAS)" if dev.type == "cuda" else ""), density=1.0,
                      fwd_ms=d_fwd, train_ms=d_train)]
        try:  # 2:4 semi-structured: the dense weight pruned to 2 of every 4, forward only
            from torch.sparse import to_sparse_semi_structured

            mask = torch.tensor([1, 1, 0, 0], device=dev, dtype=torch.bool).tile(n, n // 4)
            w24 = to_sparse_semi_structured(dense.weight.detach() * mask)
            with torch.no_grad():
                torch.testing.assert_close(F.linear(x, w24), F.linear(x, dense.weight * mask), **tol)
                found.append(dict(contender="2:4 semi-structured", density=0.5, fwd_ms=ms(lambda: F.linear(x, w24)),
                                  train_ms=None))
        except Exception as exc:  # CPU, fp32, older GPUs: say why, keep going
            notes.append(f"2:4 semi-structured ({dname}): n/a ({type(exc).__name__}: {str(exc).strip()[:100]})")
        for rho in densities:
            for kind, pattern in (("structured", structured(n, n, _out_degree(n, rho), seed=seed)),
                                  (f"block{block}", block_pattern(n, n, block * _out_degree(n // block, rho),
                                                                   block=block, seed=seed))):
                layer = SparseLinear(pattern).to(device=dev, dtype=dtype)
                w = layer.to_dense()
                with torch.no_grad():
                    torch.testing.assert_close(layer(x), F.linear(x, w, layer.bias), **tol)
                    fwd = ms(lambda: layer(x))
                found.append(dict(contender=f"SparseLinear {kind} [{resolve_backend(x.device, dtype)}]",
                                  density=pattern.density, fwd_ms=fwd, train_ms=ms(_step(layer, x, gy))))
                try:  # cuSPARSE CSR (no half-precision CSR mm on every build)
                    w_csr = torch_csr(w)
                    xt = x.detach().t().contiguous()
                    with torch.no_grad():
                        torch.testing.assert_close(torch.sparse.mm(w_csr, xt), w @ xt, **tol)
                    found.append(dict(contender=f"torch CSR {kind}", density=pattern.density,
                                      fwd_ms=ms(lambda: torch.sparse.mm(w_csr, xt)), train_ms=None))
                except Exception as exc:
                    notes.append(f"torch CSR {kind} ({dname}): n/a ({type(exc).__name__}: {str(exc).strip()[:100]})")
        for r in found:
            r.update(dtype=dname, x_fwd=d_fwd / r["fwd_ms"],
                     x_train=None if r["train_ms"] is None else d_train / r["train_ms"])
        rows += found
    return dict(setup=dict(device=name, torch=torch.__version__, n=n, batch=batch, repeats=repeats), notes=notes,
                rows=rows)
