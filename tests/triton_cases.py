"""Cases for the Triton kernels (:mod:`sparseforge.kernels.triton_ell`) against the float64 dense reference.

Run by ``tests/test_triton.py`` in a subprocess with ``TRITON_INTERPRET=1`` (Triton reads it when
``triton.language`` is imported, so it cannot be switched on inside a running test session): the kernels then run
on CPU tensors in Triton's interpreter. Shapes are small and uneven against the tiles (``BLOCK_B``, ``BLOCK_K``)
so the edge masks are exercised. Not collected on its own (no ``test_`` prefix).
"""

import os

import numpy as np
import pytest
import torch

from sparseforge.kernels import SparseLayout, triton_ell
from sparseforge.kernels import batch_major, ops
from sparseforge.kernels.batch_major import sparse_matmul
from sparseforge.kernels.ops import sparse_inference_fm, sparse_matmul_fm
from sparseforge.topology import random_uniform, structured
from sparseforge.topology.block import block
from sparseforge.topology.grouped import grouped

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" or not triton_ell.available(),
                                reason="run by tests/test_triton.py with TRITON_INTERPRET=1 and triton installed")

PATTERNS = {  # name -> (pattern, expected group)
    "ell": (structured(40, 24, 6, seed=1), 1),  # in-degree 10: one partial BLOCK_K tile
    "csr": (random_uniform(37, 29, density=0.3, seed=2), 1),  # variable degrees, some rows maybe empty
    "grouped": (grouped(40, 24, 12, group=4, seed=3), 4),  # in-degree 20: a full and a partial tile
    "block4": (block(32, 16, 8, block=4, seed=4), 4),
    "block16": (block(64, 32, 16, block=16, seed=5), 8),  # b=16 runs as two groups of 8
}


def _dense(pattern, values: torch.Tensor) -> torch.Tensor:
    """``W[n_out, n_in]`` float64 from the pattern's CSR arrays and ``values`` (independent of the kernels)."""
    w = torch.zeros(pattern.n_out, pattern.n_in, dtype=torch.float64)
    rows = np.repeat(np.arange(pattern.n_out), np.diff(pattern.indptr))
    w[torch.from_numpy(rows), torch.from_numpy(pattern.indices.copy())] = values.double()
    return w


def _operands(pattern, batch: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g).to(dtype)  # noqa: E731
    return r(pattern.edges), r(batch, pattern.n_in), r(pattern.n_out), r(batch, pattern.n_out)


TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float16: dict(rtol=2e-3, atol=2e-3),
       torch.bfloat16: dict(rtol=1.6e-2, atol=1.6e-2)}


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    assert got.dtype == dtype
    # the kernels accumulate in float32 and round once on the store: one rounding of the input dtype
    torch.testing.assert_close(got.double(), want, **TOL[dtype])


@pytest.mark.parametrize("name", PATTERNS)
@pytest.mark.parametrize("batch", [1, 37])
@pytest.mark.parametrize("batch_major", [True, False], ids=["bm", "fm"])
def test_products_match_dense_float64(name, batch, batch_major):
    pattern, group = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    assert layout.group == group  # the grouped kernel path is the one exercised
    v, x, b, gy = _operands(pattern, batch, torch.float32)
    w = _dense(pattern, v)
    want_y = x.double() @ w.t() + b.double()
    want_gx = gy.double() @ w
    want_gv = (gy.double().t() @ x.double())[torch.from_numpy(pattern.rows), torch.from_numpy(pattern.indices.copy())]
    if batch_major:
        y = triton_ell.spmm_bm(layout, v, x, bias=b)
        gx = triton_ell.spmm_bm(layout, v, gy, transposed=True)
        gv = triton_ell.sddmm_bm(layout, gy, x)
    else:  # feature-major operands, handed over as transposed (non-contiguous) views: strides, not copies
        y = triton_ell.spmm(layout, v, x.t(), bias=b).t()
        gx = triton_ell.spmm(layout, v, gy.t(), transposed=True).t()
        gv = triton_ell.sddmm(layout, gy.t(), x.t())
    _close(y, want_y, torch.float32)
    _close(gx, want_gx, torch.float32)
    _close(gv, want_gv, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name", ["ell", "block16"])
def test_half_precision_inputs_accumulate_in_float32(name, dtype):
    pattern, _ = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    v, x, b, gy = _operands(pattern, 37, dtype, seed=1)
    w = _dense(pattern, v)  # the reference sees exactly the rounded inputs, in float64
    _close(triton_ell.spmm_bm(layout, v, x, bias=b), x.double() @ w.t() + b.double(), dtype)
    _close(triton_ell.spmm_bm(layout, v, gy, transposed=True), gy.double() @ w, dtype)
    want_gv = (gy.double().t() @ x.double())[torch.from_numpy(pattern.rows), torch.from_numpy(pattern.indices.copy())]
    _close(triton_ell.sddmm_bm(layout, gy, x), want_gv, dtype)


def test_clamp_is_fused():
    pattern, _ = PATTERNS["grouped"]
    layout = SparseLayout.from_pattern(pattern)
    v, x, b, _ = _operands(pattern, 37, torch.float32, seed=2)
    want = (x.double() @ _dense(pattern, v).t() + b.double()).clamp(-0.5, 0.75)
    _close(triton_ell.spmm(layout, v, x.t().contiguous(), bias=b, clamp=(-0.5, 0.75)).t(), want, torch.float32)


def test_empty_batch_and_gradients():
    pattern, _ = PATTERNS["ell"]
    layout = SparseLayout.from_pattern(pattern)
    v, x, _, gy = _operands(pattern, 0, torch.float32)
    assert triton_ell.spmm_bm(layout, v, x).shape == (0, pattern.n_out)
    assert torch.equal(triton_ell.sddmm_bm(layout, gy, x), torch.zeros(pattern.edges))


@pytest.mark.parametrize("name", ["csr", "block4"])
def test_autograd_paths_run_the_triton_products(name, monkeypatch):
    """The layer's two entry points (batch-major Function, feature-major ops) with the backend resolved to
    "triton" (what a CUDA tensor gets): values and gradients vs float64 autograd on the dense matrix."""
    calls = []
    for module in (batch_major, ops):
        monkeypatch.setattr(module, "resolve_backend", lambda device, dtype: calls.append(dtype) or "triton")
    pattern, _ = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    v, x, b, gy = _operands(pattern, 37, torch.float32, seed=3)
    w = _dense(pattern, v).requires_grad_()
    x64, b64 = x.double().requires_grad_(), b.double().requires_grad_()
    (x64 @ w.t() + b64).backward(gy.double())
    want_gv = w.grad[torch.from_numpy(pattern.rows), torch.from_numpy(pattern.indices.copy())]
    for entry in ("bm", "fm"):
        xs, vs, bs = (t.clone().requires_grad_() for t in (x, v, b))
        y = sparse_matmul(xs, vs, layout, bs) if entry == "bm" else sparse_matmul_fm(xs.t(), vs, layout, bs).t()
        y.backward(gy)
        _close(y.detach(), (x64 @ w.t() + b64).detach(), torch.float32)
        _close(xs.grad, x64.grad, torch.float32)
        _close(vs.grad, want_gv, torch.float32)
        _close(bs.grad, b64.grad, torch.float32)
    inference = sparse_inference_fm(x.t(), v, layout, b, clamp=(0.0, 1.0)).t()
    _close(inference, (x64 @ w.t() + b64).detach().clamp(0, 1), torch.float32)
    assert calls  # the patched selection was consulted
