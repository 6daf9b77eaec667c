"""The GPU path (:mod:`sparseforge.kernels.triton_ell`): kernels vs the float64 dense reference, and selection.

The kernel cases (``tests/triton_cases.py``) run in a subprocess with ``TRITON_INTERPRET=1`` (Triton's CPU
interpreter; the variable must be set before ``triton.language`` is imported). The selection is tested here;
the last test runs the real selection and kernels on a CUDA device (skipped without one).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparseforge.kernels import resolve_backend, triton_ell, use_backend
from triton_cases import PATTERNS, _dense

needs_triton = pytest.mark.skipif(not triton_ell.available(), reason="triton is not installed (pip install '.[gpu]')")
HERE = Path(__file__).parent


@needs_triton
def test_kernels_under_the_interpreter_match_dense_float64():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", str(HERE / "triton_cases.py"), "-q", "-p", "no:cacheprovider",
                          "-W", "error::pytest.PytestUnknownMarkWarning"],
                         env=env, cwd=HERE.parent, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout, run.stdout[-2000:]


@needs_triton
def test_selection_cpu_never_cuda_when_importable():
    with use_backend("auto"):
        assert resolve_backend("cpu", torch.float32) in ("native", "stock")
        assert resolve_backend("cpu", torch.float16) == "stock"
        assert resolve_backend("cuda", torch.float32) == "triton"
        assert resolve_backend("cuda", torch.bfloat16) == "triton"
        assert resolve_backend("cuda", torch.float64) == "stock"  # float64 is not a Triton dtype here
    with use_backend("stock"):
        assert resolve_backend("cuda", torch.float32) == "stock"


def test_without_triton_cuda_falls_back_to_stock(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # "import triton" now raises ImportError
    triton_ell.available.cache_clear()
    try:
        assert not triton_ell.available()
        assert resolve_backend("cuda", torch.float32) == "stock"
    finally:
        triton_ell.available.cache_clear()


@needs_triton
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", PATTERNS)
def test_cuda_layer_selects_triton_and_matches_dense(name, monkeypatch):
    from sparseforge.nn import SparseLinear

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # compiled kernels on the device, not the interpreter
    triton_ell._kernels.cache_clear()
    pattern, _ = PATTERNS[name]
    torch.manual_seed(0)
    layer = SparseLinear(pattern).cuda()
    assert resolve_backend("cuda", torch.float32) == "triton"
    x = torch.randn(37, pattern.n_in, device="cuda", requires_grad=True)
    gy = torch.randn(37, pattern.n_out, device="cuda")
    layer(x).backward(gy)
    w = _dense(pattern, layer.weight.detach().cpu().reshape(-1)).requires_grad_()
    x64, b64 = x.detach().cpu().double().requires_grad_(), layer.bias.detach().cpu().double().requires_grad_()
    y64 = x64 @ w.t() + b64
    y64.backward(gy.cpu().double())
    torch.testing.assert_close(layer(x).detach().cpu().double(), y64.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(x.grad.cpu().double(), x64.grad, rtol=1e-4, atol=1e-4)
    want_gv = w.grad[torch.from_numpy(pattern.rows), torch.from_numpy(pattern.indices.copy())]
    torch.testing.assert_close(layer.weight.grad.cpu().double().reshape(-1), want_gv, rtol=1e-4, atol=1e-4)
    triton_ell._kernels.cache_clear()
