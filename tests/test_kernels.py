"""Every kernel backend against dense float64 math: forward, grad input, grad values; backend selection."""

import numpy as np
import pytest
import torch

from sparseforge.kernels import (
    BACKENDS,
    SparseLayout,
    get_backend,
    native,
    resolve_backend,
    set_backend,
    shared_index_group,
    sparse_inference_fm,
    sparse_matmul,
    sparse_matmul_fm,
    triton_ell,
    use_backend,
)
from sparseforge.nn import SparseLinear
from sparseforge.topology import Pattern, random_uniform, structured
from sparseforge.topology.grouped import grouped


needs_native = pytest.mark.skipif(not native.available(), reason="native kernels cannot be built here")
BACKEND_PARAMS = ["stock", pytest.param("native", marks=needs_native)]


def patterns() -> dict[str, Pattern]:
    rng = np.random.default_rng(0)
    sparse_rows = np.zeros((6, 9), bool)
    sparse_rows[[0, 2, 5], :] = rng.random((3, 9)) < 0.5
    sparse_rows[0, 0] = True  # rows 1, 3, 4 read nothing; some columns feed nothing
    shared = np.sort(rng.choice(40, (3, 11), replace=True), 1)
    shared = np.stack([np.unique(r)[:5] for r in shared])
    return {
        "structured": structured(48, 40, 5, seed=1),  # fixed in- and out-degree (ELL)
        "random": random_uniform(37, 29, density=0.2, seed=2),  # variable degrees (CSR)
        "empty-rows": Pattern.from_dense(sparse_rows),
        "grouped4": grouped(40, 32, 8, group=4, seed=3),
        "grouped8": Pattern.from_ell(np.repeat(shared, 8, axis=0), 40),  # group 8; transpose groups too
        "grouped2": grouped(30, 18, 6, group=2, seed=4),
        "full": Pattern.full(7, 5),
    }


PATTERNS = patterns()


def dense_reference(pattern: Pattern, values: torch.Tensor, x_fm: torch.Tensor, g_fm: torch.Tensor):
    """(y, grad_x, grad_values) from a dense float64 weight built edge by edge."""
    w = torch.zeros(pattern.shape, dtype=torch.float64)
    v = values.detach().double()
    for e, (r, c) in enumerate(zip(pattern.rows, pattern.indices)):
        w[r, c] = v[e]
    x = x_fm.detach().double()
    g = g_fm.double()
    y = w @ x
    grad_x = w.t() @ g
    grad_w = g @ x.t()
    grad_v = grad_w[torch.as_tensor(pattern.rows.copy()), torch.as_tensor(pattern.indices.copy())]
    return y, grad_x, grad_v


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("batch", [1, 7, 37, 300])  # 300: several column blocks (native)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_products_equal_dense_float64(backend, name, batch, dtype):
    pattern = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(batch)
    values = torch.randn(pattern.edges, generator=gen, dtype=dtype, requires_grad=True)
    x_fm = torch.randn(pattern.n_in, batch, generator=gen, dtype=dtype, requires_grad=True)
    g_fm = torch.randn(pattern.n_out, batch, generator=gen, dtype=dtype)
    with use_backend(backend):
        y = sparse_matmul_fm(x_fm, values, layout)
        y.backward(g_fm)
    ref_y, ref_gx, ref_gv = dense_reference(pattern, values, x_fm, g_fm)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and y.shape == (pattern.n_out, batch)
    torch.testing.assert_close(y.double(), ref_y, **tol)
    torch.testing.assert_close(x_fm.grad.double(), ref_gx, **tol)
    torch.testing.assert_close(values.grad.double(), ref_gv, **tol)



@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", ["structured", "random", "empty-rows", "grouped4"])
@pytest.mark.parametrize("batch", [1, 37])
def test_fused_bias_equals_dense_float64(backend, name, batch):
    """y = W x + b with the bias inside the product; rows that read nothing are the bias alone."""
    pattern = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(7)
    values = torch.randn(pattern.edges, generator=gen, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(pattern.n_out, generator=gen, dtype=torch.float64, requires_grad=True)
    x_fm = torch.randn(pattern.n_in, batch, generator=gen, dtype=torch.float64, requires_grad=True)
    g_fm = torch.randn(pattern.n_out, batch, generator=gen, dtype=torch.float64)
    with use_backend(backend):
        y = sparse_matmul_fm(x_fm, values, layout, bias)
        y.backward(g_fm)
    ref_y, ref_gx, ref_gv = dense_reference(pattern, values, x_fm, g_fm)
    tol = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(y, ref_y + bias.detach()[:, None], **tol)
    torch.testing.assert_close(bias.grad, g_fm.sum(1), **tol)
    torch.testing.assert_close(x_fm.grad, ref_gx, **tol)
    torch.testing.assert_close(values.grad, ref_gv, **tol)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", ["structured", "random", "empty-rows", "grouped8"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_inference_with_fused_bias_and_clamp_equals_dense(backend, name, dtype):
    pattern = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(3)
    values = torch.randn(pattern.edges, generator=gen, dtype=dtype)
    bias = torch.randn(pattern.n_out, generator=gen, dtype=dtype)
    x_fm = 3 * torch.randn(pattern.n_in, 37, generator=gen, dtype=dtype)
    with use_backend(backend):
        y = sparse_inference_fm(x_fm, values, layout, bias, (-0.5, 1.25))
        plain = sparse_inference_fm(x_fm, values, layout)
    ref_y = dense_reference(pattern, values, x_fm, torch.zeros(pattern.n_out, 37))[0]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(plain.double(), ref_y, **tol)
    expected = (ref_y + bias.double()[:, None]).clamp(-0.5, 1.25)
    torch.testing.assert_close(y.double(), expected, **tol)
    assert ((y == -0.5) | (y == 1.25)).any() and ((y > -0.5) & (y < 1.25)).any()  # both regimes exercised


def test_inference_clamp_must_be_ordered():
    layout = SparseLayout.from_pattern(PATTERNS["structured"])
    with pytest.raises(ValueError, match="clamp must be"):
        sparse_inference_fm(torch.randn(48, 2), torch.randn(layout.edges), layout, clamp=(1.0, 0.0))


def dense_weight(pattern: Pattern, values: torch.Tensor) -> torch.Tensor:
    w = torch.zeros(pattern.shape, dtype=torch.float64)
    w[torch.as_tensor(pattern.rows.copy()), torch.as_tensor(pattern.indices.copy())] = values.double()
    return w


@needs_native
@pytest.mark.parametrize("tile", [0, 1])  # stream whole batch rows / batch tiles of 128 bytes
@pytest.mark.parametrize("name", ["structured", "random", "empty-rows", "full", "wide"])
@pytest.mark.parametrize("batch", [1, 7, 37, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_spmm_paths_equal_dense(tile, name, batch, dtype):
    """Both native spmm paths, forward (bias, clamp) and transposed (values read through the permutation)."""
    pattern = PATTERNS[name] if name != "wide" else Pattern.full(3, 200)  # out-degree 200: tiled by default
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(batch)
    values = torch.randn(pattern.edges, generator=gen, dtype=dtype)
    bias = torch.randn(pattern.n_out, generator=gen, dtype=dtype)
    x = torch.randn(pattern.n_in, batch, generator=gen, dtype=dtype)
    g = torch.randn(pattern.n_out, batch, generator=gen, dtype=dtype)
    w = dense_weight(pattern, values)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    ops = torch.ops.sparseforge
    y = ops.spmm(layout.indptr, layout.indices, values, x, 1, bias, -0.5, 1.0, None, tile)
    torch.testing.assert_close(y.double(), (w @ x.double() + bias.double()[:, None]).clamp(-0.5, 1.0), **tol)
    yt = ops.spmm(layout.t_indptr, layout.t_indices, values, g, 1, None, None, None, layout.t_perm, tile)
    torch.testing.assert_close(yt.double(), w.t() @ g.double(), **tol)
    auto = ops.spmm(layout.indptr, layout.indices, values, x, 1)
    torch.testing.assert_close(auto.double(), w @ x.double(), **tol)


@needs_native
@pytest.mark.parametrize("tile", [0, 1, -1])  # stream whole rows / batch tiles reused from L2 / the kernel's choice
@pytest.mark.parametrize("name", ["structured", "random", "empty-rows", "grouped8", "full", "wide", "tall"])
@pytest.mark.parametrize("batch", [1, 3, 17, 257])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_sddmm_paths_equal_dense(tile, name, batch, dtype):
    """Both sddmm paths, feature- and batch-major, on strided operands, against float64 dense (G X^T)[edges].

    Tiles: batch 3 one vector, 17 two (float), 257 four with a last partial tile; "tall" (5000 inputs) has
    a tile of x too big for four vectors (float: two); "wide" (out-degree 200) is tiled by default."""
    pattern = {"wide": Pattern.full(3, 200), "tall": random_uniform(5000, 7, density=0.01, seed=5)}.get(name)
    pattern = pattern or PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(pattern.n_in, batch + 5, generator=gen, dtype=dtype)[:, 2:-3]  # rows batch + 5 apart
    g = torch.randn(pattern.n_out, batch + 1, generator=gen, dtype=dtype)[:, 1:]
    rows, cols = torch.as_tensor(pattern.rows.copy()), torch.as_tensor(pattern.indices.copy())
    ref = (g.double() @ x.double().t())[rows, cols]
    xb = torch.randn(batch, pattern.n_in + 4, generator=gen, dtype=dtype)[:, 1:-3]  # batch-major, strided
    gb = torch.randn(batch, pattern.n_out + 2, generator=gen, dtype=dtype)[:, 2:]
    ref_bm = (gb.double().t() @ xb.double())[rows, cols]
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    ops = torch.ops.sparseforge
    out = ops.sddmm(layout.indptr, layout.indices, g, x, layout.group, tile)
    assert out.dtype == dtype and out.shape == (pattern.edges,)
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(ops.sddmm_bm(layout.indptr, layout.indices, gb, xb, layout.group, tile).double(),
                               ref_bm, **tol)


@needs_native
def test_native_sddmm_rejects_bad_tile():
    layout = SparseLayout.from_pattern(PATTERNS["structured"])
    with pytest.raises(RuntimeError, match=r"tile must be -1 \(choose\), 0 \(stream rows\) or 1 \(tiled\), got 2"):
        torch.ops.sparseforge.sddmm(layout.indptr, layout.indices, torch.randn(40, 3), torch.randn(48, 3), 1, 2)
    with pytest.raises(RuntimeError, match="tile must be"):
        torch.ops.sparseforge.sddmm_bm(layout.indptr, layout.indices, torch.randn(3, 40), torch.randn(3, 48), 1, -2)


@needs_native
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("group", [1, 2, 4, 8])
@pytest.mark.parametrize("batch", [37, 130, 301])
@pytest.mark.parametrize("tile", [-1, 1])  # the kernel's choice (groups of 8 stream) / tiled for every group
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_native_batch_major_backward_over_several_tiles(threads, group, batch, tile, dtype):
    """The batch-major backward products over several batch tiles on one thread (sddmm_bm packs each tile of x
    when it is used and gy 256 rows at a time: 600 rows end in a partial chunk; grad input packs one tile at a
    time) and on two threads (every tile packed first), the last tile partial, against float64 dense."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        pattern = grouped(80, 600, 120, group=group, seed=group)
        layout = SparseLayout.from_pattern(pattern)
        gen = torch.Generator().manual_seed(batch)
        values = torch.randn(pattern.edges, generator=gen, dtype=dtype)
        x = torch.randn(batch, pattern.n_in + 3, generator=gen, dtype=dtype)[:, 1:-2]  # rows n_in + 3 apart
        g = torch.randn(batch, pattern.n_out, generator=gen, dtype=dtype)
        w = dense_weight(pattern, values)
        rows, cols = torch.as_tensor(pattern.rows.copy()), torch.as_tensor(pattern.indices.copy())
        tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
        ops = torch.ops.sparseforge
        gv = ops.sddmm_bm(layout.indptr, layout.indices, g, x, layout.group, tile)
        torch.testing.assert_close(gv.double(), (g.double().t() @ x.double())[rows, cols], **tol)
        gx = ops.spmm_bm(layout.t_indptr, layout.t_indices, values, g, layout.t_group, None, None, None,
                         layout.t_perm)
        torch.testing.assert_close(gx.double(), g.double() @ w, **tol)
    finally:
        torch.set_num_threads(before)


@needs_native
def test_native_outputs_of_32_mb_and_more_equal_dense():
    """Outputs of 32 MB and more are advised onto 2 MB pages (only whole pages inside the block; the values are
    the kernel's): forward [4100, 2048] and grad input [4100, 2048] float32, against float64 dense."""
    gen = torch.Generator().manual_seed(0)
    for pattern in (structured(256, 2048, 64, seed=1), structured(2048, 256, 1, seed=2)):
        layout = SparseLayout.from_pattern(pattern)
        values = torch.randn(pattern.edges, generator=gen)
        w = dense_weight(pattern, values)
        ops = torch.ops.sparseforge
        if pattern.n_out == 2048:
            x = torch.randn(4100, pattern.n_in, generator=gen)
            y = ops.spmm_bm(layout.indptr, layout.indices, values, x, layout.group, None, None, None, None)
            assert y.nbytes >= 32 << 20
            torch.testing.assert_close(y.double(), x.double() @ w.t(), rtol=1e-5, atol=1e-5)
        else:
            g = torch.randn(4100, pattern.n_out, generator=gen)
            gx = ops.spmm_bm(layout.t_indptr, layout.t_indices, values, g, layout.t_group, None, None, None,
                             layout.t_perm)
            assert gx.nbytes >= 32 << 20
            torch.testing.assert_close(gx.double(), g.double() @ w, rtol=1e-5, atol=1e-5)


# batch-major products, every kernel path: batch 1 (gathered dot products); 5 (one tile of one vector: 16 float or
# 8 double lanes); 16, 20 (float: one 128-byte tile; double: 16 one 128-byte tile, 20 one tile of 4 vectors); 37
# (float: one tile of 4 vectors; double: two 128-byte tiles); 300 (several tiles, the last partial). Every
# pattern has a partial block of rows and of features.
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", list(PATTERNS))
@pytest.mark.parametrize("batch", [1, 5, 16, 20, 37, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batch_major_products_equal_dense_float64(backend, name, batch, dtype):
    pattern = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(batch)
    values = torch.randn(pattern.edges, generator=gen, dtype=dtype, requires_grad=True)
    bias = torch.randn(pattern.n_out, generator=gen, dtype=dtype, requires_grad=True)
    # x is a column slice of a wider tensor: rows n_in + 3 apart, read in place by the native kernels
    x = torch.randn(batch, pattern.n_in + 3, generator=gen, dtype=dtype)[:, 2:-1].requires_grad_()
    g = torch.randn(batch, pattern.n_out, generator=gen, dtype=dtype)
    with use_backend(backend):
        y = sparse_matmul(x, values, layout, bias)
        y.backward(g)
    ref_y, ref_gx, ref_gv = dense_reference(pattern, values, x.t(), g.t())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert y.dtype == dtype and y.shape == (batch, pattern.n_out)
    torch.testing.assert_close(y.double(), ref_y.t() + bias.detach().double(), **tol)
    torch.testing.assert_close(x.grad.double(), ref_gx.t(), **tol)
    torch.testing.assert_close(values.grad.double(), ref_gv, **tol)
    torch.testing.assert_close(bias.grad.double(), g.double().sum(0), **tol)


@needs_native
@pytest.mark.parametrize("name", ["structured", "empty-rows", "grouped8", "wide"])
@pytest.mark.parametrize("batch", [1, 9, 300])
def test_native_batch_major_op_fuses_bias_and_clamp(name, batch):
    """spmm_bm with bias + clamp, and over the transposed pattern (values read through the permutation)."""
    pattern = PATTERNS[name] if name != "wide" else Pattern.full(3, 200)
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(batch)
    values = torch.randn(pattern.edges, generator=gen)
    bias = torch.randn(pattern.n_out, generator=gen)
    x = torch.randn(batch, pattern.n_in, generator=gen)
    g = torch.randn(batch, pattern.n_out, generator=gen)
    w = dense_weight(pattern, values)
    ops = torch.ops.sparseforge
    y = ops.spmm_bm(layout.indptr, layout.indices, values, x, layout.group, bias, -0.5, 1.0, None)
    torch.testing.assert_close(y.double(), (x.double() @ w.t() + bias.double()).clamp(-0.5, 1.0), rtol=1e-5, atol=1e-5)
    gx = ops.spmm_bm(layout.t_indptr, layout.t_indices, values, g, layout.t_group, None, None, None, layout.t_perm)
    torch.testing.assert_close(gx.double(), g.double() @ w, rtol=1e-5, atol=1e-5)


@needs_native
def test_native_batch_major_ops_reject_bad_arguments():
    layout = SparseLayout.from_pattern(PATTERNS["structured"])
    v, ops = torch.randn(layout.edges), torch.ops.sparseforge
    with pytest.raises(RuntimeError, match=r"x must be 2-D \[batch, n\] with unit stride along features"):
        ops.spmm_bm(layout.indptr, layout.indices, v, torch.randn(40, 6).t(), 1)
    with pytest.raises(RuntimeError, match=r"gy must be \[batch=6, rows=40\]"):
        ops.sddmm_bm(layout.indptr, layout.indices, torch.randn(5, 40), torch.randn(6, 48), 1)


def test_layer_call_matches_feature_major_forward_and_refuses_bad_shapes():
    layer = SparseLinear(PATTERNS["grouped4"])
    x = torch.randn(3, 4, 40)
    y = layer(x)
    assert y.shape == (3, 4, 32)
    torch.testing.assert_close(y.reshape(12, 32), layer.forward_fm(x.reshape(12, 40).t()).t())
    with pytest.raises(ValueError, match=r"x must be \[batch, n_in=40\], got \(2, 39\)"):
        sparse_matmul(torch.randn(2, 39), layer.weight, layer._layout, layer.bias)


@needs_native
def test_native_spmm_rejects_bad_arguments():
    layout = SparseLayout.from_pattern(PATTERNS["grouped4"])
    x, v = torch.randn(40, 5), torch.randn(layout.edges)
    with pytest.raises(RuntimeError, match="tiled kernel is for ungrouped"):
        torch.ops.sparseforge.spmm(layout.indptr, layout.indices, v, x, 4, None, None, None, None, 1)
    with pytest.raises(RuntimeError, match="tile must be"):
        torch.ops.sparseforge.spmm(layout.indptr, layout.indices, v, x, 4, None, None, None, None, 2)
    with pytest.raises(RuntimeError, match="clamp needs both"):
        torch.ops.sparseforge.spmm(layout.indptr, layout.indices, v, x, 4, None, 0.0)
    with pytest.raises(RuntimeError, match="perm must be"):
        torch.ops.sparseforge.spmm(layout.indptr, layout.indices, v, x, 4, None, None, None, layout.t_perm[:-1])


def test_bias_of_wrong_shape_is_refused():
    layout = SparseLayout.from_pattern(PATTERNS["structured"])
    x = torch.randn(48, 3)
    with pytest.raises(ValueError, match=r"bias must be \[n_out=40\]"):
        sparse_matmul_fm(x, torch.randn(layout.edges), layout, torch.randn(39))

@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_non_contiguous_inputs(backend):
    pattern = PATTERNS["random"]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(pattern.edges, generator=gen, dtype=torch.float64)
    batch_major = torch.randn(9, pattern.n_in, generator=gen, dtype=torch.float64)
    wide = torch.randn(pattern.n_in, 20, generator=gen, dtype=torch.float64)
    g_fm = torch.randn(pattern.n_out, 20, generator=gen, dtype=torch.float64)
    inputs = {
        "transposed": batch_major.t(),  # what SparseLinear.forward passes: stride (1, n_in)
        "row-stride": wide[:, 3:12],  # unit stride along the batch, rows 20 apart
        "strided-batch": wide[:, ::2],  # stride 2 along the batch
    }
    for label, x in inputs.items():
        x = x.detach().requires_grad_()
        gy = g_fm[:, : x.shape[1]].t().contiguous().t()  # non-contiguous grad_y as well
        with use_backend(backend):
            y = sparse_matmul_fm(x, values.detach().requires_grad_(), layout)
            (gx,) = torch.autograd.grad(y, x, gy)
        ref_y, ref_gx, _ = dense_reference(pattern, values, x, gy)
        torch.testing.assert_close(y, ref_y, msg=label)
        torch.testing.assert_close(gx, ref_gx, msg=label)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", ["random", "grouped4", "empty-rows"])
def test_gradcheck_float64(backend, name):
    pattern = PATTERNS[name]
    layout = SparseLayout.from_pattern(pattern)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(pattern.n_in, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    v = torch.randn(pattern.edges, generator=gen, dtype=torch.float64, requires_grad=True)
    with use_backend(backend):
        assert torch.autograd.gradcheck(lambda a, b: sparse_matmul_fm(a, b, layout), (x, v))


def test_backends_agree_on_large_grouped_float32():
    """Vector bodies and tails of every unroll depth at a realistic width (batch not a multiple of 16)."""
    if not native.available():
        pytest.skip("native kernels cannot be built here")
    pattern = grouped(256, 128, 32, group=4, seed=0)
    layout = SparseLayout.from_pattern(pattern)
    assert layout.group == 4
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 77, generator=gen, requires_grad=True)
    v = torch.randn(pattern.edges, generator=gen, requires_grad=True)
    g = torch.randn(128, 77, generator=gen)
    results = {}
    for backend in ("stock", "native"):
        with use_backend(backend):
            y = sparse_matmul_fm(x, v, layout)
            results[backend] = (y, *torch.autograd.grad(y, (x, v), g))
    for a, b in zip(results["stock"], results["native"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_shared_index_group_detection():
    assert shared_index_group(PATTERNS["grouped4"]) == 4
    assert shared_index_group(PATTERNS["grouped8"]) == 8
    assert shared_index_group(PATTERNS["grouped2"]) == 2
    assert shared_index_group(PATTERNS["structured"]) == 1
    assert shared_index_group(PATTERNS["random"]) == 1  # variable in-degree: never grouped
    layout = SparseLayout.from_pattern(PATTERNS["full"])
    assert layout.group == 1 and layout.t_group == 1  # 5 rows: no G divides 5
    assert SparseLayout.from_pattern(Pattern.full(8, 4)).group == 4


# ---------------------------------------------------------------------------------------- selection
def test_backend_switch_and_context_manager():
    before = get_backend()
    assert before in BACKENDS
    with use_backend("stock"):
        assert get_backend() == "stock"
        assert resolve_backend("cpu", torch.float32) == "stock"
    assert get_backend() == before
    with pytest.raises(ValueError, match="'auto', 'stock', 'native'"):
        set_backend("fast")
    with pytest.raises(ValueError, match="allowed"):
        with use_backend("cuda"):
            pass
    assert get_backend() == before


def test_auto_resolution_by_device_dtype_and_availability(monkeypatch):
    with use_backend("auto"):
        assert resolve_backend("cpu", torch.float16) == "stock"  # native is fp32/fp64 only
        # native is CPU only; CUDA takes the Triton kernels when triton imports (tests/test_triton.py)
        assert resolve_backend("cuda", torch.float32) == ("triton" if triton_ell.available() else "stock")
        expected = "native" if native.available() else "stock"
        assert resolve_backend("cpu", torch.float32) == expected
        # a machine where the build failed: auto falls back, explicit native refuses with the reason
        monkeypatch.setattr(native, "_state", {"ok": False, "error": "no compiler"})
        assert resolve_backend("cpu", torch.float64) == "stock"
        with pytest.raises(RuntimeError, match="no compiler"):
            set_backend("native")
        assert get_backend() == "auto"
        # and the products still work (stock path)
        layout = SparseLayout.from_pattern(PATTERNS["structured"])
        y = sparse_matmul_fm(torch.ones(48, 2), torch.ones(layout.edges), layout)
        torch.testing.assert_close(y, torch.full((40, 2), 6.0))


@needs_native
def test_native_op_rejects_bad_arguments():
    layout = SparseLayout.from_pattern(PATTERNS["structured"])
    x = torch.randn(48, 4)
    v = torch.randn(layout.edges)
    with pytest.raises(RuntimeError, match="group"):
        torch.ops.sparseforge.spmm(layout.indptr, layout.indices, v, x, 3)
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.sparseforge.spmm(layout.indptr, layout.indices, v, x.double(), 1)
    with pytest.raises(ValueError, match="one entry per edge"):
        sparse_matmul_fm(x, v[:-1], layout)


@needs_native
def test_native_cache_is_keyed_by_source_and_reused():
    info = native.info()
    assert info["ok"] and native.cache_key() in info["directory"]
    assert native.cache_key() == native.cache_key()  # deterministic: a second process finds the same build
    assert native.load() is True  # loading again is a no-op


# ---------------------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_layer_matches_cpu():
    from sparseforge.nn import SparseLinear

    pattern = PATTERNS["random"]
    torch.manual_seed(0)
    cpu = SparseLinear(pattern).double()
    gpu = SparseLinear(pattern).double()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.to("cuda")
    x = torch.randn(5, pattern.n_in, dtype=torch.float64)
    xc, xg = x.clone().requires_grad_(), x.cuda().requires_grad_()
    yc, yg = cpu(xc), gpu(xg)
    g = torch.randn_like(yc)
    yc.backward(g)
    yg.backward(g.cuda())
    assert resolve_backend(yg.device, yg.dtype) == "stock"
    torch.testing.assert_close(yg.cpu(), yc)
    torch.testing.assert_close(xg.grad.cpu(), xc.grad)
    torch.testing.assert_close(gpu.weight.grad.cpu(), cpu.weight.grad)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
@pytest.mark.parametrize("name", ["random", "grouped4", "empty-rows"])
@pytest.mark.parametrize("batch", [1, 3, 17, 257])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_inference_path_equals_dense(backend, name, batch, dtype):
    """layer(x) without autograd (the sparse_inference path: no autograd.Function) on a strided x, against
    float64 dense math; also 3-D input, and sparse_inference with a clamp."""
    from sparseforge.kernels.batch_major import sparse_inference

    pattern = PATTERNS[name]
    layer = SparseLinear(pattern, dtype=dtype)
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, pattern.n_in + 2, generator=gen, dtype=dtype)[:, 1:-1]
    w, b = layer.to_dense().detach().double(), layer.bias.detach().double()
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    with use_backend(backend):
        with torch.no_grad():
            y = layer(x)
            y3 = layer(x.reshape(1, batch, pattern.n_in))
        yc = sparse_inference(x, layer.weight, layer._layout, layer.bias, clamp=(-0.25, 0.5))  # grad mode on
    assert y.dtype == dtype and y.shape == (batch, pattern.n_out) and not y.requires_grad and not yc.requires_grad
    ref = x.double() @ w.t() + b
    torch.testing.assert_close(y.double(), ref, **tol)
    torch.testing.assert_close(y3.reshape(batch, -1).double(), ref, **tol)
    torch.testing.assert_close(yc.double(), ref.clamp(-0.25, 0.5), **tol)


def test_sparse_inference_refuses_bad_operands():
    from sparseforge.kernels.batch_major import sparse_inference

    layer = SparseLinear(PATTERNS["random"])
    with pytest.raises(ValueError, match=r"x must be \[batch, n_in=37\], got \(2, 36\)"):
        sparse_inference(torch.randn(2, 36), layer.weight, layer._layout)
    with pytest.raises(ValueError, match="x_fm is torch.float64 but the values are torch.float32"):
        sparse_inference(torch.randn(2, 37, dtype=torch.float64), layer.weight, layer._layout)
    with pytest.raises(ValueError, match=r"values must hold one entry per edge"):
        sparse_inference(torch.randn(2, 37), layer.weight[:-1], layer._layout)
    with pytest.raises(ValueError, match=r"clamp must be \(lo, hi\) with lo <= hi"):
        sparse_inference(torch.randn(2, 37), layer.weight, layer._layout, clamp=(1.0, 0.0))
    with torch.no_grad(), pytest.raises(ValueError, match="x_fm is torch.float64 but the values are torch.float32"):
        layer(torch.randn(2, 37, dtype=torch.float64))


def test_pruned_mlp_keeps_the_dense_weights_on_its_patterns_and_latency_rows():
    from sparseforge.studies.bench import latency, pruned_mlp

    dense, sparse = pruned_mlp((30, 12, 5), sparsity=0.75, seed=3)
    linears = [m for m in dense if isinstance(m, torch.nn.Linear)]
    layers = [m for m in sparse if isinstance(m, SparseLinear)]
    assert [m.pattern.edges for m in layers] == [round(0.25 * 30 * 12), round(0.25 * 12 * 5)]
    for lin, sl in zip(linears, layers):
        w = sl.to_dense().detach()
        keep = w != 0
        torch.testing.assert_close(w[keep], lin.weight.detach()[keep])
        torch.testing.assert_close(sl.bias.detach(), lin.bias.detach())
    x = torch.randn(4, 30, dtype=torch.float64)
    with torch.no_grad():  # the sparse net is the dense net with the pruned weights zeroed
        h = x
        for lin, sl in zip(linears, layers):
            h = h @ sl.to_dense().double().t() + lin.bias.double()
            h = h.relu() if sl is not layers[-1] else h
        torch.testing.assert_close(sparse.double()(x), h)
    res = latency(sizes=(30, 12, 5), sparsity=0.75, batches=(1, 2), repeats=1, number=2)
    assert [r["batch"] for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert r["dense_us"] > 0 and r["sparse_us"] > 0 and len(r["sparse_layer_us"]) == 2
        assert r["speedup"] == pytest.approx(r["dense_us"] / r["sparse_us"])
    with pytest.raises(Exception, match="sparsity must be in"):
        pruned_mlp((30, 12), sparsity=1.0)


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_single_sample_transposed_view(backend):
    """x = column.t(): [1, n] with strides (1, 1) (what x.t().contiguous() of an [n, 1] tensor keeps), with and
    without autograd, batch- and feature-major, against float64 dense."""
    layer = SparseLinear(PATTERNS["random"])
    x = torch.randn(37, 1).t()
    assert x.stride() == (1, 1)
    ref = x.double() @ layer.to_dense().detach().double().t() + layer.bias.detach().double()
    with use_backend(backend):
        with torch.no_grad():
            y0 = layer(x)
        y1 = layer(x)
        gy = torch.randn(29, 1).t()  # grad_y a strided single row too
        y1.backward(gy)
    torch.testing.assert_close(y0.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y1.double(), ref, rtol=1e-5, atol=1e-5)
    _, _, ref_gv = dense_reference(layer.pattern, layer.weight, x.t(), gy.t())
    torch.testing.assert_close(layer.weight.grad.reshape(-1).double(), ref_gv, rtol=1e-5, atol=1e-5)
