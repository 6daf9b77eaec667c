"""The native block-pattern kernels (csrc/block.cpp): every product against dense float64 math, the layout's
block detection and validation, the registered ops (opcheck, torch.compile) and SparseLinear on block layouts."""

import numpy as np
import pytest
import torch

from sparseforge.kernels import SparseLayout, native, ops, use_backend
from sparseforge.kernels.ell import block_size
from sparseforge.nn import SparseLinear
from sparseforge.topology import Pattern, block_pattern, structured

pytestmark = pytest.mark.skipif(not native.available(), reason="native kernels cannot be built here")

@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run on one thread (each tile packed just before it is used) and on two (every tile packed first)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


TOL = {torch.float32: dict(rtol=1e-5, atol=1e-4), torch.float64: dict(rtol=1e-12, atol=1e-11)}


def uneven_blocks(n_in: int, n_out: int, b: int, seed: int) -> Pattern:
    """A block pattern whose block rows hold different numbers of blocks (one none at all)."""
    rng = np.random.default_rng(seed)
    blocks = rng.random((n_out // b, n_in // b)) < 0.4
    blocks[0] = False
    blocks[1, 0] = True
    return Pattern.from_dense(np.kron(blocks, np.ones((b, b), dtype=bool)))


def cases():
    for b in (4, 8, 16):
        yield b, block_pattern(64, 32, 16, block=b, seed=1) if b != 16 else block_pattern(64, 32, 32, block=16, seed=1)
        yield b, uneven_blocks(96, 48 if b != 16 else 64, b, seed=b)


CASES = list(cases())
IDS = [f"b{b}-{'fixed' if p.is_fixed_in_degree else 'uneven'}" for b, p in CASES]


def dense(p: Pattern, values: torch.Tensor) -> torch.Tensor:
    """The float64 dense weight [n_out, n_in] of (pattern, values)."""
    w = torch.zeros(p.n_out, p.n_in, dtype=torch.float64)
    w[torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())] = values.double()
    return w


@pytest.mark.parametrize("b,p", CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("batch", [1, 5, 17, 33, 70])
def test_products_equal_dense_float64(b, p, dtype, batch, threads):
    """Forward (with bias and clamp), grad-input and grad-values, batch- and feature-major, odd batches."""
    layout = SparseLayout.from_pattern(p)
    assert layout.block == b
    g = torch.Generator().manual_seed(batch)
    v = torch.randn(p.edges, generator=g, dtype=dtype)
    x = torch.randn(batch, p.n_in, generator=g, dtype=dtype)
    gy = torch.randn(batch, p.n_out, generator=g, dtype=dtype)
    bias = torch.randn(p.n_out, generator=g, dtype=dtype)
    w = dense(p, v)
    op = torch.ops.sparseforge
    tol = TOL[dtype]

    y = op.block_spmm_bm(layout.indptr, layout.indices, v, x, b, bias, -0.5, 0.75)
    torch.testing.assert_close(y.double(), (x.double() @ w.T + bias.double()).clamp(-0.5, 0.75), **tol)
    y_fm = op.block_spmm(layout.indptr, layout.indices, v, x.t().contiguous(), b, bias)
    torch.testing.assert_close(y_fm.double(), w @ x.double().T + bias.double()[:, None], **tol)

    gx = op.block_spmm_bm(layout.t_indptr, layout.t_indices, v, gy, b, perm=layout.t_perm)
    torch.testing.assert_close(gx.double(), gy.double() @ w, **tol)
    gx_fm = op.block_spmm(layout.t_indptr, layout.t_indices, v, gy.t().contiguous(), b, perm=layout.t_perm)
    torch.testing.assert_close(gx_fm.double(), w.T @ gy.double().T, **tol)

    full = gy.double().T @ x.double()  # dense gradient of W; the kernels give it on the pattern's edges
    expect = full[torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())]
    gv = op.block_sddmm_bm(layout.indptr, layout.indices, gy, x, b)
    torch.testing.assert_close(gv.double(), expect, **tol)
    gv_fm = op.block_sddmm(layout.indptr, layout.indices, gy.t().contiguous(), x.t().contiguous(), b)
    torch.testing.assert_close(gv_fm.double(), expect, **tol)


def test_wide_batch_spans_several_tiles(threads):
    """4096-wide inputs and batch 300: several sample tiles in every kernel, a partial last one."""
    p = block_pattern(4096, 64, 8 * 2, block=8, seed=0)
    layout = SparseLayout.from_pattern(p)
    g = torch.Generator().manual_seed(0)
    v, x, gy = (torch.randn(s, generator=g, dtype=torch.float64) for s in (p.edges, (300, 4096), (300, 64)))
    w = dense(p, v)
    op = torch.ops.sparseforge
    torch.testing.assert_close(op.block_spmm_bm(layout.indptr, layout.indices, v, x, 8), x @ w.T, **TOL[torch.float64])
    torch.testing.assert_close(op.block_spmm_bm(layout.t_indptr, layout.t_indices, v, gy, 8, perm=layout.t_perm),
                               gy @ w, **TOL[torch.float64])
    expect = (gy.T @ x)[torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())]
    torch.testing.assert_close(op.block_sddmm_bm(layout.indptr, layout.indices, gy, x, 8), expect, **TOL[torch.float64])


DOT_CASES = [(b, n_in, n_out, dtype) for b in (4, 8, 16) for n_in, n_out in ((512, 1024), (1024, 512))
             for dtype in (torch.float32, torch.float64)]


@pytest.mark.parametrize("b,n_in,n_out,dtype", DOT_CASES,
                         ids=[f"b{b}-{i}to{o}-{str(d)[6:]}" for b, i, o, d in DOT_CASES])
def test_grad_values_dot_kernel_over_several_tiles(b, n_in, n_out, dtype, threads):
    """Batch-major grad-values with many samples per tile (the dot kernel: 1 MB of the narrower side's tile,
    512 float / 256 double samples at 512 features): batch 1100 gives 3 (float) or 5 (double) tiles, the last
    partial; gathering x (fewer inputs) and gathering gy (fewer outputs, walked by block columns)."""
    p = block_pattern(n_in, n_out, 2 * b if b != 16 else 32, block=b, seed=b)
    layout = SparseLayout.from_pattern(p)
    g = torch.Generator().manual_seed(b)
    x, gy = (torch.randn(1100, n, generator=g, dtype=dtype) for n in (n_in, n_out))
    expect = (gy.double().T @ x.double())[torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())]
    got = torch.ops.sparseforge.block_sddmm_bm(layout.indptr, layout.indices, gy, x, b)
    torch.testing.assert_close(got.double(), expect, **TOL[dtype])


def test_grad_values_dot_kernel_streams_a_wide_side_in_pieces():
    """512 -> 8192 at batch 600: the streamed side (gy, 8192 outputs x 512 samples = 16 MB) is packed 8 MB
    (4096 outputs) at a time, two tiles of samples."""
    p = block_pattern(512, 8192, 128, block=8, seed=3)
    layout = SparseLayout.from_pattern(p)
    g = torch.Generator().manual_seed(3)
    x, gy = (torch.randn(600, n, generator=g) for n in (512, 8192))
    expect = (gy.double().T @ x.double())[torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())]
    got = torch.ops.sparseforge.block_sddmm_bm(layout.indptr, layout.indices, gy, x, 8)
    torch.testing.assert_close(got.double(), expect, **TOL[torch.float32])


@pytest.mark.parametrize("b", [4, 8, 16])
def test_grad_values_dot_kernel_on_uneven_block_rows(b):
    """The dot kernel on block rows of different lengths (one empty), both orientations, batch 300 (one tile)."""
    for n_in, n_out in ((96, 64 if b == 16 else 48), (64 if b == 16 else 48, 96)):
        p = uneven_blocks(n_in, n_out, b, seed=b)
        layout = SparseLayout.from_pattern(p)
        g = torch.Generator().manual_seed(b)
        x, gy = (torch.randn(300, n, generator=g) for n in (n_in, n_out))
        expect = (gy.double().T @ x.double())[torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())]
        got = torch.ops.sparseforge.block_sddmm_bm(layout.indptr, layout.indices, gy, x, b)
        torch.testing.assert_close(got.double(), expect, **TOL[torch.float32])


def test_detection_finds_the_largest_aligned_block():
    assert block_size(block_pattern(64, 64, 32, block=16, seed=0)) == 16
    assert block_size(block_pattern(64, 64, 16, block=8, seed=0)) == 8
    assert block_size(block_pattern(64, 64, 16, block=4, seed=0)) == 4
    assert block_size(structured(64, 64, 16, seed=0)) == 1  # unstructured
    shifted = np.roll(block_pattern(64, 64, 16, block=8, seed=0).to_dense(), 1, axis=1)  # runs off the grid
    assert block_size(Pattern.from_dense(shifted)) == 1
    grouped = np.kron(np.random.default_rng(0).random((8, 64)) < 0.3, np.ones((8, 1), dtype=bool))
    assert block_size(Pattern.from_dense(grouped)) == 1  # rows share lists, but the runs are not blocks


def test_layout_refuses_a_false_block_claim():
    from dataclasses import replace

    layout = SparseLayout.from_pattern(structured(64, 64, 16, seed=0))
    with pytest.raises(ValueError, match="SparseLayout.block: claims the pattern is made of dense 8 x 8 blocks"):
        replace(layout, block=8)
    with pytest.raises(ValueError, match="SparseLayout.block: must be 1 or one of 16, 8, 4, got 2"):
        replace(SparseLayout.from_pattern(block_pattern(64, 64, 16, block=8, seed=0)), block=2)


def test_kernel_refuses_a_pattern_that_is_not_in_blocks():
    layout = SparseLayout.from_pattern(structured(64, 64, 12, seed=0))  # 12 edges per row: not whole blocks of 8
    x = torch.randn(4, 64)
    with pytest.raises(RuntimeError, match="not a block pattern of block=8"):
        torch.ops.sparseforge.block_spmm_bm(layout.indptr, layout.indices, torch.randn(layout.edges), x, 8)
    with pytest.raises(RuntimeError, match="block must be 4, 8 or 16, got 3"):
        torch.ops.sparseforge.block_sddmm_bm(layout.indptr, layout.indices, x, x, 3)


@pytest.mark.parametrize("b", [4, 8, 16])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_linear_matches_masked_nn_linear(b, dtype):
    """SparseLinear on a block pattern, batch-major and feature-major, forward and backward, against nn.Linear
    with the dense weight of the same values (gradients masked to the pattern)."""
    p = block_pattern(64, 48, 24, block=b, seed=3) if b != 16 else block_pattern(64, 32, 16, block=16, seed=3)
    torch.manual_seed(b)
    layer = SparseLinear(p, dtype=dtype)
    assert layer._layout.block == b
    ref = torch.nn.Linear(p.n_in, p.n_out, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(layer.to_dense())
        ref.bias.copy_(layer.bias)
    mask = torch.as_tensor(p.to_dense(), dtype=torch.float64)
    rows, cols = torch.as_tensor(p.rows.copy()), torch.as_tensor(p.indices.copy())
    for batch in (1, 19):
        for feature_major in (False, True):
            layer.zero_grad()
            ref.zero_grad()
            x = torch.randn(batch, p.n_in, dtype=dtype, requires_grad=True)
            g = torch.randn(batch, p.n_out, dtype=dtype)
            with use_backend("native"):
                y = layer.forward_fm(x.t()).t() if feature_major else layer(x)
                y.backward(g)
            xd = x.detach().double().requires_grad_()
            yd = ref(xd)
            yd.backward(g.double())
            tol = TOL[dtype]
            torch.testing.assert_close(y.double(), yd, **tol)
            torch.testing.assert_close(x.grad.double(), xd.grad, **tol)
            torch.testing.assert_close(layer.weight.grad.double().reshape(-1), (ref.weight.grad * mask)[rows, cols],
                                       **tol)
            torch.testing.assert_close(layer.bias.grad.double(), ref.bias.grad, **tol)


def test_registered_ops_pass_opcheck_with_block_layouts():
    p = block_pattern(32, 16, 8, block=8, seed=0)
    layout = SparseLayout.from_pattern(p)
    x = torch.randn(32, 5, dtype=torch.float64, requires_grad=True)
    v = torch.randn(p.edges, dtype=torch.float64, requires_grad=True)
    b = torch.randn(16, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(16, 5, dtype=torch.float64)
    lay = (layout.indptr, layout.indices, layout.t_indptr, layout.t_indices, layout.t_perm, layout.group,
           layout.t_group, ops.degree(layout.ell), ops.degree(layout.t_ell), layout.block)
    with use_backend("native"):
        torch.library.opcheck(ops.linear, (x, v, b) + lay)
        torch.library.opcheck(ops.grad_input, (gy, v.detach(), layout.t_indptr, layout.t_indices, layout.t_perm,
                                               layout.t_group, 0, layout.block))
        torch.library.opcheck(ops.grad_values, (gy, x.detach(), layout.indptr, layout.indices, layout.group, 32,
                                                layout.block))
        torch.library.opcheck(ops.inference, (x.detach(), v.detach(), b.detach(), layout.indptr, layout.indices,
                                              layout.group, 0, 0.0, 1.0, layout.block))
        w = dense(p, v.detach())
        torch.testing.assert_close(ops.linear(x, v, b, *lay), w @ x.detach() + b.detach()[:, None])


def test_compiled_training_step_equals_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    layer = SparseLinear(block_pattern(64, 32, 16, block=8, seed=0), dtype=torch.float64)
    x = torch.randn(9, 64, dtype=torch.float64)

    def step(x):
        return layer(x).square().sum()

    with use_backend("native"):
        loss = step(x)
        loss.backward()
        eager = (loss.detach(), layer.weight.grad.clone())
        layer.zero_grad()
        loss = torch.compile(step, fullgraph=True)(x)
        loss.backward()
    torch.testing.assert_close(loss.detach(), eager[0])
    torch.testing.assert_close(layer.weight.grad, eager[1])
