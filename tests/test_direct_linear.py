"""SparseLinear's eager inference entry without the dispatcher (``native.linear_bm``, csrc/python.cpp) against the
dense float64 reference, and the cases where it must step aside for the general path."""

import numpy as np
import pytest
import torch

from sparseforge.kernels import native, use_backend
from sparseforge.kernels.backend import direct_linear
from sparseforge.nn import SparseLinear
from sparseforge.topology import Pattern, random_uniform, structured
from sparseforge.topology.block import block
from sparseforge.topology.grouped import grouped

pytestmark = pytest.mark.skipif(not native.available(), reason="the native kernels cannot be built here")


def dense64(layer: SparseLinear) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The layer's weight scattered by hand into a dense float64 ``[n_out, n_in]``, and its bias in float64."""
    p = layer.pattern
    w = torch.zeros(p.shape, dtype=torch.float64)
    vals = layer.weight.detach().double().reshape(-1)
    for e, (r, c) in enumerate(zip(p.rows, p.indices)):
        w[r, c] = vals[e]
    return w, None if layer.bias is None else layer.bias.detach().double()


def reference(layer: SparseLinear, x: torch.Tensor) -> torch.Tensor:
    w, b = dense64(layer)
    y = x.detach().double() @ w.t()
    return y if b is None else y + b


def empty_rows() -> Pattern:
    m = np.zeros((6, 9), bool)
    m[[0, 2, 5], :] = np.random.default_rng(0).random((3, 9)) < 0.5
    m[0, 0] = True
    return Pattern.from_dense(m)


PATTERNS = {
    "structured": lambda: structured(40, 24, 6, seed=1),
    "random": lambda: random_uniform(37, 29, density=0.2, seed=2),  # variable degrees, odd sizes
    "empty-rows": empty_rows,
    "grouped-2": lambda: grouped(48, 32, 8, group=2, seed=3),
    "grouped-4": lambda: grouped(48, 32, 8, group=4, seed=3),
    "grouped-8": lambda: grouped(64, 64, 8, group=8, seed=3),
    "wide": lambda: structured(512, 256, 26, seed=4),  # several batch tiles of the bm kernel at batch 130
}


def direct_args(layer: SparseLinear, x: torch.Tensor):
    params = layer._parameters
    return (x, params["weight"], params.get("bias"), *layer._direct)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [1, 3, 17, 130])
@pytest.mark.parametrize("name", list(PATTERNS))
def test_direct_entry_equals_dense_float64(name, batch, bias, dtype):
    torch.manual_seed(batch)
    layer = SparseLinear(PATTERNS[name](), bias=bias, dtype=dtype)
    if name.startswith("grouped"):
        assert layer._layout.group == int(name[-1])  # the grouped kernels are what runs
    x = torch.randn(batch, layer.in_features, dtype=dtype)
    y_direct = native.linear_bm(*direct_args(layer, x))  # grad mode on and the weight requires grad
    assert y_direct is None  # autograd must record this product: the entry steps aside
    with torch.no_grad():
        y_direct = native.linear_bm(*direct_args(layer, x))
        y = layer(x)
    assert y_direct is not None and y_direct.dtype == dtype and y_direct.shape == (batch, layer.out_features)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(y_direct.double(), reference(layer, x), rtol=tol, atol=tol)
    torch.testing.assert_close(y, y_direct, rtol=0, atol=0)
    assert not y.requires_grad


@pytest.mark.parametrize("batch", [1, 3, 17])
@pytest.mark.parametrize("bias", [True, False])
def test_with_grad_takes_autograd_and_without_takes_direct(batch, bias, monkeypatch):
    torch.manual_seed(0)
    layer = SparseLinear(structured(40, 24, 6, seed=1), bias=bias)
    calls = []
    real = native.linear_bm

    def spy(*args):
        y = real(*args)
        calls.append(y is not None)
        return y

    monkeypatch.setattr(native, "linear_bm", spy)
    x = torch.randn(batch, 40, requires_grad=True)
    y = layer(x)  # grad mode on, x and the parameters require grad: the entry declines, autograd records the
    # product, and its forward (grad mode off in there) computes it through the entry
    assert calls == [False, True] and y.grad_fn is not None
    g = torch.randn_like(y)
    y.backward(g)
    w, b = dense64(layer)
    w.requires_grad_()
    x64 = x.detach().double().requires_grad_()
    y64 = x64 @ w.t() + (0 if b is None else b)
    y64.backward(g.double())
    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    p = layer.pattern
    torch.testing.assert_close(layer.weight.grad.double().reshape(-1),
                               w.grad[torch.as_tensor(np.array(p.rows)), torch.as_tensor(np.array(p.indices))], rtol=1e-5, atol=1e-5)

    layer.requires_grad_(False)  # frozen layer, plain input, grad mode on: nothing to record, the direct entry
    y2 = layer(x.detach())
    assert calls[-1] is True and y2.grad_fn is None
    torch.testing.assert_close(y2.double(), reference(layer, x), rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        y3 = layer(x.detach())
    assert calls[-1] is True and y3.is_inference()
    torch.testing.assert_close(y3, y2, rtol=0, atol=0)


class Subclass(torch.Tensor):
    pass


def test_steps_aside_for_what_it_does_not_handle():
    torch.manual_seed(0)
    layer = SparseLinear(random_uniform(20, 12, density=0.3, seed=2))
    params = layer._parameters
    w, b, direct = params["weight"], params["bias"], layer._direct
    x = torch.randn(5, 20)
    with torch.no_grad():
        assert native.linear_bm(x, w, b, *direct) is not None
        wide = torch.randn(5, 40)
        for case in (wide[:, ::2],  # rows of x not unit-stride
                     torch.randn(2, 5, 20),  # 3-D (the layer reshapes, then calls again)
                     torch.randn(5, 21),  # wrong width
                     x.half(), x.double(),  # another dtype than the weight's
                     x.as_subclass(Subclass),  # a tensor subclass (it may override torch functions)
                     ):
            assert native.linear_bm(case, w, b, *direct) is None
        assert native.linear_bm(x, w, b[:-1], *direct) is None  # bias of the wrong size
        assert native.linear_bm(x, w.double(), b, *direct) is None
        assert native.linear_bm(x, w[:-1], b, *direct) is None  # not one value per edge
        with pytest.raises(TypeError, match="7 arguments"):
            native.linear_bm(x, w, b)
        # and through the layer, each of those gives the general path's answer (or its error)
        y = layer(wide[:, ::2])
        torch.testing.assert_close(y.double(), reference(layer, wide[:, ::2]), rtol=1e-5, atol=1e-5)
        x3 = torch.randn(2, 5, 20)
        torch.testing.assert_close(layer(x3).double(), reference(layer, x3), rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="in_features=20"):
            layer(torch.randn(5, 21))


def test_stock_backend_block_patterns_and_modes_skip_it(monkeypatch):
    torch.manual_seed(0)
    layer = SparseLinear(structured(40, 24, 6, seed=1))
    x = torch.randn(3, 40)

    def fail(*args):
        raise AssertionError("the direct entry ran")

    with torch.no_grad():
        with use_backend("stock"):
            assert direct_linear() is None
            monkeypatch.setattr(native, "linear_bm", fail)
            torch.testing.assert_close(layer(x).double(), reference(layer, x), rtol=1e-5, atol=1e-5)
        monkeypatch.undo()
        blocky = SparseLinear(block(32, 32, 8, block=8, seed=0))
        assert blocky._layout.block == 8 and blocky._direct is None  # the block kernels run instead
        xb = torch.randn(3, 32)
        torch.testing.assert_close(blocky(xb).double(), reference(blocky, xb), rtol=1e-5, atol=1e-5)

        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False):  # a dispatch mode sees the general path's ops
            assert native.linear_bm(x, layer.weight, layer.bias, *layer._direct) is None
            torch.testing.assert_close(layer(x).double(), reference(layer, x), rtol=1e-5, atol=1e-5)


def test_moved_and_converted_layers_keep_it_right():
    torch.manual_seed(0)
    layer = SparseLinear(structured(40, 24, 6, seed=1))
    x = torch.randn(7, 40, dtype=torch.float64)
    layer.double()  # parameters converted in place: the direct arguments still describe the layer
    with torch.no_grad():
        assert native.linear_bm(x, layer.weight, layer.bias, *layer._direct) is not None
        torch.testing.assert_close(layer(x), reference(layer, x), rtol=1e-12, atol=1e-12)
        layer.weight = torch.nn.Parameter(torch.randn_like(layer.weight))  # a replaced parameter is read per call
        torch.testing.assert_close(layer(x), reference(layer, x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_several_batch_tiles_on_one_and_two_threads(threads, dtype):
    """Batches over several tiles of the batch-major kernel (one thread packs and uses one tile at a time, several
    threads pack all tiles first), the last tile partial; forward (direct) and the training step (autograd). 2200
    inputs each read by 150 outputs: on one thread, tiles of 4 vectors although a tile of x outgrows half of L2."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(threads)
        for pattern, batch in ((structured(512, 256, 26, seed=4), 130), (grouped(64, 64, 8, group=4, seed=3), 37),
                               (random_uniform(37, 29, density=0.2, seed=2), 50),
                               (structured(2200, 200, 150, seed=5), 100)):
            layer = SparseLinear(pattern, dtype=dtype)
            x = torch.randn(batch, pattern.n_in, dtype=dtype, requires_grad=True)
            tol = 1e-12 if dtype == torch.float64 else 1e-5
            with torch.no_grad():
                torch.testing.assert_close(layer(x).double(), reference(layer, x), rtol=tol, atol=tol)
            y = layer(x)
            g = torch.randn_like(y)
            y.backward(g)
            w, b = dense64(layer)
            w.requires_grad_()
            x64 = x.detach().double().requires_grad_()
            (x64 @ w.t() + b).backward(g.double())
            torch.testing.assert_close(y.double(), reference(layer, x), rtol=tol, atol=tol)
            torch.testing.assert_close(x.grad.double(), x64.grad, rtol=tol, atol=tol)
            rows, cols = torch.as_tensor(np.array(pattern.rows)), torch.as_tensor(np.array(pattern.indices))
            torch.testing.assert_close(layer.weight.grad.double().reshape(-1), w.grad[rows, cols], rtol=tol, atol=tol)
    finally:
        torch.set_num_threads(before)


def test_a_library_without_the_module_leaves_the_entry_unset(monkeypatch):
    """Built without Python's headers, python.cpp compiles to nothing: importing the library as a module fails and
    the entry stays None (the ops and the general path still work)."""
    from pathlib import Path

    libs = sorted((Path(torch.__file__).parent / "lib").glob("libc10.so*"))
    assert libs, "torch ships libc10"
    sentinel = object()
    monkeypatch.setattr(native, "linear_bm", sentinel)
    native._import_direct("sparseforge_no_such_module", libs[0])
    assert native.linear_bm is sentinel
