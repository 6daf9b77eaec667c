"""SparseLinear against the dense masked reference (float64), gradcheck, state, conversions, counts."""

import numpy as np
import pytest
import torch

from sparseforge.kernels import sparse_matmul_fm
from sparseforge.nn import DenseLinear, SparseLinear, SparseMLP
from sparseforge.topology import Pattern, design, random_uniform, structured


def patterns():
    empty_row = np.zeros((6, 9), bool)
    empty_row[[0, 2, 5], :] = np.random.default_rng(0).random((3, 9)) < 0.5
    empty_row[0, 0] = True
    return [
        structured(24, 16, 4, seed=1),  # fixed in- and out-degree (ELL fast path)
        random_uniform(20, 12, density=0.3, seed=2),  # variable degrees (CSR path)
        Pattern.from_dense(empty_row),  # right nodes with no inputs at all
        structured(8, 4, 4, seed=0),  # fully connected, via the sparse path
    ]


@pytest.mark.parametrize("pattern", patterns(), ids=["structured", "random", "empty-rows", "full"])
@pytest.mark.parametrize("batch", [1, 5])
def test_forward_and_gradients_equal_dense_masked_reference(pattern, batch):
    torch.manual_seed(0)
    layer = SparseLinear(pattern)
    x = torch.randn(batch, pattern.n_in, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)

    # independent reference in float64: the same weights scattered into a dense matrix by hand
    w = torch.zeros(pattern.shape, dtype=torch.float64)
    vals = layer.weight.detach().double().reshape(-1)
    for e, (r, c) in enumerate(zip(pattern.rows, pattern.indices)):
        w[r, c] = vals[e]
    w.requires_grad_()
    b = layer.bias.detach().double().requires_grad_()
    x64 = x.detach().double().requires_grad_()
    y64 = x64 @ w.t() + b
    y64.backward(g.double())

    torch.testing.assert_close(y.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-5, atol=1e-5)
    grad_on_edges = w.grad[torch.as_tensor(pattern.rows), torch.as_tensor(pattern.indices)]
    torch.testing.assert_close(layer.weight.grad.double().reshape(-1), grad_on_edges, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.bias.grad.double(), b.grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pattern", patterns()[:3], ids=["structured", "random", "empty-rows"])
def test_gradcheck_float64(pattern):
    layer = SparseLinear(pattern).double()
    x_fm = torch.randn(pattern.n_in, 3, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, v: sparse_matmul_fm(a, v, layer._layout), (x_fm, w))


def test_weight_storage_is_edges_only():
    p = structured(4096, 4096, 41, seed=0)
    layer = SparseLinear(p)
    assert layer.weight.shape == (4096, 41)
    assert layer.num_parameters() == p.edges + 4096
    assert layer.flops_per_sample() == 2 * p.edges + 4096
    v = SparseLinear(random_uniform(30, 20, density=0.2, seed=0))
    assert v.weight.dim() == 1 and v.weight.numel() == v.edges


def test_init_uses_real_fan_in():
    torch.manual_seed(0)
    p = structured(1000, 100, 5, seed=0)  # d_in = 50
    layer = SparseLinear(p)
    bound = 1 / np.sqrt(50)
    assert layer.weight.abs().max().item() <= bound + 1e-7
    assert layer.weight.abs().max().item() > 0.9 * bound  # not the dense bound 1/sqrt(1000)
    # uniform(-b, b) has variance b^2 / 3
    assert layer.weight.var().item() == pytest.approx(bound**2 / 3, rel=0.05)


def test_to_dense_from_dense_roundtrip():
    p = random_uniform(15, 11, density=0.3, seed=4)
    a = SparseLinear(p)
    w = a.to_dense()
    assert torch.count_nonzero(w) <= p.edges
    assert torch.equal(w != 0, torch.as_tensor(p.to_dense()) & (w != 0))
    full = torch.randn(11, 15)
    b = SparseLinear.from_dense(full, p, bias=torch.zeros(11))
    torch.testing.assert_close(b.to_dense(), full * torch.as_tensor(p.to_dense()))
    with pytest.raises(ValueError, match="shape"):
        SparseLinear.from_dense(torch.randn(15, 11), p)


def test_state_dict_roundtrip_and_pattern_mismatch(tmp_path):
    p = structured(24, 16, 4, seed=1)
    a = SparseLinear(p)
    torch.save(a.state_dict(), tmp_path / "s.pt")
    b = SparseLinear(p)
    b.load_state_dict(torch.load(tmp_path / "s.pt"))
    x = torch.randn(3, 24)
    torch.testing.assert_close(a(x), b(x))
    other = SparseLinear(structured(24, 16, 4, seed=2))
    with pytest.raises(RuntimeError, match="saved pattern differs"):
        other.load_state_dict(torch.load(tmp_path / "s.pt"))


def test_optimizer_touches_only_edges():
    p = structured(32, 16, 2, seed=0)
    layer = SparseLinear(p)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    before = layer.to_dense().clone()
    layer(torch.randn(8, 32)).pow(2).sum().backward()
    opt.step()
    after = layer.to_dense()
    off = ~torch.as_tensor(p.to_dense())
    assert torch.all(after[off] == 0) and torch.all(before[off] == 0)
    assert not torch.equal(before, after)


def test_sparse_mlp_matches_dense_reference_and_counts():
    torch.manual_seed(0)
    topo = design((30, 20, 10, 4), fan_out=(4, 5, 4), seed=0)
    m = SparseMLP(topo)
    assert isinstance(m.layers[-1], DenseLinear)  # 10 -> 4 with d_out 4 is fully connected
    x = torch.randn(7, 30)
    h = x.double()
    for i, layer in enumerate(m.layers):
        w = (layer.to_dense() if isinstance(layer, SparseLinear) else layer.weight).double()
        h = h @ w.t() + layer.bias.double()
        if i < 2:
            h = h.relu()
    torch.testing.assert_close(m(x).double(), h.detach(), rtol=1e-5, atol=1e-5)
    assert m.num_parameters() == topo.edges + 20 + 10 + 4
    assert m.flops_per_sample() == 2 * topo.edges + 20 + 10 + 4


def test_forward_fm_shape_error():
    layer = SparseLinear(structured(8, 4, 2, seed=0))
    with pytest.raises(ValueError, match="n_in=8"):
        layer.forward_fm(torch.randn(7, 3))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    p = random_uniform(64, 32, density=0.2, seed=0)
    cpu = SparseLinear(p)
    gpu = SparseLinear(p).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(5, 64)
    xc = x.cuda().requires_grad_()
    xr = x.clone().requires_grad_()
    cpu(xr).sum().backward()
    gpu(xc).sum().backward()
    torch.testing.assert_close(gpu(xc).cpu(), cpu(xr), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(xc.grad.cpu(), xr.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gpu.weight.grad.cpu(), cpu.weight.grad, rtol=1e-4, atol=1e-4)
