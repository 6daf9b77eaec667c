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


@needs_triton
@pytest.mark.parametrize("dtype,group", [("fp32", 1), ("fp16", 8)])
def test_kernels_compile_for_a_cuda_target_without_a_device(dtype, group, tmp_path, monkeypatch):
    """Lower both kernels to PTX and a cubin for sm_90 (Triton's compiler and its bundled ptxas run on the CPU):
    catches code the interpreter accepts but the GPU compiler rejects, on every run, with no GPU."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    if "nvidia" not in triton.backends.backends:
        pytest.skip("this triton build has no NVIDIA backend")
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("TRITON_INTERPRET=1: the kernels are interpreted functions here")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # a fresh compile, not a cached one
    triton_ell._kernels.cache_clear()
    _, spmm, sddmm = triton_ell._kernels()
    p = f"*{dtype}"
    spmm_sig = dict(x_ptr=p, sxb="i32", sxi="i32", v_ptr=p, perm_ptr="*i64", indptr_ptr="*i64", idx_ptr="*i64",
                    bias_ptr=p, y_ptr=p, syb="i32", syo="i32", n_batch="i32", lo="fp32", hi="fp32")
    sddmm_sig = dict(gy_ptr=p, sgb="i32", sgo="i32", x_ptr=p, sxb="i32", sxi="i32", indptr_ptr="*i64",
                     idx_ptr="*i64", out_ptr=p, n_batch="i32")
    tiles = dict(G=group, BLOCK_B=triton_ell.BLOCK_B, BLOCK_K=triton_ell.BLOCK_K)
    flags = dict(HAS_PERM=True, HAS_BIAS=True, HAS_CLAMP=True)
    target = GPUTarget("cuda", 90, 32)
    for fn, sig, constants in ((spmm, spmm_sig, {**tiles, **flags}), (sddmm, sddmm_sig, tiles)):
        compiled = triton.compile(ASTSource(fn, {**sig, **dict.fromkeys(constants, "constexpr")}, constants),
                                  target=target)
        assert ".entry" in compiled.asm["ptx"] and len(compiled.asm["cubin"]) > 1000
