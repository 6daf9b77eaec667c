"""Block patterns: dense b x b blocks with fixed block degrees, clear errors, kernel detection, products."""

import numpy as np
import pytest
import torch

from sparseforge.kernels import SparseLayout, native, use_backend
from sparseforge.nn import SparseLinear
from sparseforge.topology import FAMILIES, TopologyError, block_pattern, design


def blocks_of(p, b: int) -> np.ndarray:
    """``[n_out/b, n_in/b, b, b]`` view of the dense mask."""
    m = p.to_dense()
    return m.reshape(p.n_out // b, b, p.n_in // b, b).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("n_in,n_out,d_out,b", [(64, 32, 16, 8), (48, 32, 8, 4), (64, 64, 32, 16), (32, 64, 64, 16)])
def test_dense_blocks_with_fixed_block_degrees(n_in, n_out, d_out, b):
    p = block_pattern(n_in, n_out, d_out, block=b, seed=0)
    assert p.shape == (n_out, n_in)
    assert p.is_fixed_out_degree and p.d_out == d_out
    assert p.is_fixed_in_degree and p.d_in == n_in * d_out // n_out
    blk = blocks_of(p, b)
    full, empty = blk.all(axis=(2, 3)), ~blk.any(axis=(2, 3))
    assert (full | empty).all()  # every b x b block is all ones or all zeros (brute force over the mask)
    assert (full.sum(0) == d_out // b).all()  # block out-degree of every left block
    assert (full.sum(1) == n_in * d_out // n_out // b).all()  # block in-degree of every right block


def test_deterministic_and_seeded():
    a = block_pattern(128, 64, 32, block=8, seed=3)
    assert a == block_pattern(128, 64, 32, block=8, seed=3)
    assert a != block_pattern(128, 64, 32, block=8, seed=4)


def test_errors_name_values_and_what_works():
    with pytest.raises(TopologyError, match="block must be one of 4, 8, 16, got 5"):
        block_pattern(64, 32, 16, block=5)
    with pytest.raises(TopologyError, match="n_out=36 must be a multiple of block=8"):
        block_pattern(72, 36, 16, block=8)
    with pytest.raises(TopologyError, match=r"d_out must be 8 x a block out-degree .* e\.g\. d_out = 8 or 16"):
        block_pattern(64, 32, 12, block=8)
    with pytest.raises(TopologyError, match="not an integer"):
        block_pattern(64, 48, 5, block=8)


def test_registered_family_and_design():
    assert FAMILIES["block"] is block_pattern
    net = design([64, 32, 16], fan_out=(16, 8), family="block", block=8, seed=1)
    for p in net.patterns:
        blk = blocks_of(p, 8)
        assert (blk.all(axis=(2, 3)) | ~blk.any(axis=(2, 3))).all()


@pytest.mark.parametrize("b,group", [(4, 4), (8, 8), (16, 8)])
def test_layout_knows_its_groups_and_blocks(b, group):
    """Groups for the grouped kernels (the Triton path), the block size for the native block kernels."""
    layout = SparseLayout.from_pattern(block_pattern(64, 64, 32, block=b, seed=0))
    assert (layout.group, layout.block) == (group, b)


@pytest.mark.parametrize("backend", ["stock", pytest.param("native", marks=pytest.mark.skipif(
    not native.available(), reason="native kernels cannot be built here"))])
@pytest.mark.parametrize("b", [4, 8, 16])
@pytest.mark.parametrize("batch", [1, 7, 40])
def test_layer_products_equal_dense_float64(backend, b, batch):
    """layer(x) (batch-major) forward and all gradients against a dense float64 layer with the same weights."""
    p = block_pattern(64, 48, 24, block=b, seed=2) if b != 16 else block_pattern(64, 32, 16, block=16, seed=2)
    torch.manual_seed(batch)
    layer = SparseLinear(p)
    x = torch.randn(batch, p.n_in, requires_grad=True)
    g = torch.randn(batch, p.n_out)
    with use_backend(backend):
        y = layer(x)
        y.backward(g)
    w = layer.to_dense().double().requires_grad_()
    xd = x.detach().double().requires_grad_()
    yd = xd @ w.t() + layer.bias.detach().double()
    yd.backward(g.double())
    mask = torch.as_tensor(p.to_dense())
    torch.testing.assert_close(y.double(), yd, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), xd.grad, rtol=1e-5, atol=1e-5)
    grad_w = torch.zeros_like(w)
    grad_w[torch.as_tensor(p.rows.copy()), layer.indices] = layer.weight.grad.double().reshape(-1)
    torch.testing.assert_close(grad_w, w.grad * mask, rtol=1e-5, atol=1e-5)


def test_family_accuracy_trains_equal_density_models():
    """The accuracy study behind the README's block-vs-unstructured comparison, tiny (digits, 2 epochs)."""
    from sparseforge.studies.bench import family_accuracy

    rows = family_accuracy(sizes=(64, 32, 10), fan_out=(16, 10), dataset="digits", epochs=2, seeds=(0,),
                           families=(("structured", {}), ("block", {"block": 8})), batch_size=32, lr=1e-2, threads=1)
    assert [(r["family"], r["seed"]) for r in rows] == [("structured", 0), ("block", 0)]
    assert len({r["rho_net"] for r in rows}) == 1  # equal density by construction
    assert all(r["test_acc"] > 0.3 for r in rows)  # 10 classes: chance is 0.1
