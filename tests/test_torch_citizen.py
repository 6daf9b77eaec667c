"""SparseLinear / SparseMLP as PyTorch modules: torch.compile(fullgraph), torch.export, and inputs taken as
nn.Linear takes them, each against eager or the dense float64 reference, on every backend."""

import pytest
import torch
import torch.nn.functional as F

from sparseforge import SparseLinear, SparseMLP, design
from sparseforge.kernels import native, use_backend
from sparseforge.topology import random_uniform, structured

needs_native = pytest.mark.skipif(not native.available(), reason="native kernels cannot be built here")
BACKENDS = ["stock", pytest.param("native", marks=needs_native)]


def mlp(seed: int = 0, density: float = 0.25) -> SparseMLP:
    """Sparse junctions (SparseLinear) or, with density 1, dense ones (nn.Linear)."""
    torch.manual_seed(seed)
    return SparseMLP(design((48, 24, 10), density=density, seed=seed))


# (backend, density): SparseLinear on each backend, and the nn.Linear baseline (density 1)
CASES = [("stock", 0.25), pytest.param("native", 0.25, marks=needs_native), ("stock", 1.0)]


def dense_linear(layer: SparseLinear, x: torch.Tensor) -> torch.Tensor:
    """The float64 reference ``x W^T + b`` from the layer's dense weight."""
    return x.double() @ layer.to_dense().double().t() + layer.bias.detach().double()


# ---------------------------------------------------------------------------------------------- compile
@pytest.mark.parametrize("backend, density", CASES)
def test_compile_fullgraph_forward_and_training_step_equal_eager(backend, density):
    torch._dynamo.reset()
    model = mlp(density=density)
    assert all(isinstance(m, SparseLinear) != (density == 1) for m in model.layers)
    x, y = torch.randn(16, 48), torch.randint(0, 10, (16,))

    def loss_fn(x, y):
        return F.cross_entropy(model(x), y)

    with use_backend(backend):
        compiled = torch.compile(loss_fn, fullgraph=True)  # fullgraph: any graph break is an error
        loss_c = compiled(x, y)
        loss_c.backward()
        grads_c = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        loss_e = loss_fn(x, y)
        loss_e.backward()
        grads_e = [p.grad.clone() for p in model.parameters()]
        torch.testing.assert_close(loss_c, loss_e, atol=1e-5, rtol=1e-5)
        for gc, ge in zip(grads_c, grads_e):
            torch.testing.assert_close(gc, ge, atol=1e-5, rtol=1e-5)
        # a full step with the optimizer: the compiled model trains as eager does
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        opt.step()
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------------------------- export
@pytest.mark.parametrize("backend, density", CASES)
def test_torch_export_program_runs_and_matches_eager(backend, density):
    model = mlp(1, density).eval()
    x = torch.randn(7, 48)
    with use_backend(backend):
        program = torch.export.export(model, (x,))
        ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
        assert ("sparseforge_ell.linear.default" in ops) == (density < 1)
        assert not program.graph_signature.lifted_tensor_constants  # the pattern arrives as buffers
        torch.testing.assert_close(program.module()(x), model(x), atol=1e-6, rtol=1e-6)
        other = torch.randn(7, 48)
        torch.testing.assert_close(program.module()(other), model(other), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_registered_ops_pass_opcheck(backend):
    """torch.library.opcheck: schema, fake (meta) kernels and the registered autograd are consistent with the
    real kernels; and each op equals the dense float64 reference."""
    from sparseforge.kernels import SparseLayout
    from sparseforge.kernels import ops

    layout = SparseLayout.from_pattern(random_uniform(30, 20, density=0.3, seed=1))
    x = torch.randn(30, 6, dtype=torch.float64, requires_grad=True)
    v = torch.randn(layout.edges, dtype=torch.float64, requires_grad=True)
    b = torch.randn(20, dtype=torch.float64, requires_grad=True)
    gy = torch.randn(20, 6, dtype=torch.float64)
    lay = (layout.indptr, layout.indices, layout.t_indptr, layout.t_indices, layout.t_perm, layout.group,
           layout.t_group, ops.degree(layout.ell), ops.degree(layout.t_ell))
    rows = torch.repeat_interleave(torch.arange(20), layout.indptr.diff())
    w = torch.zeros(20, 30, dtype=torch.float64)
    w[rows, layout.indices] = v.detach()
    with use_backend(backend):
        torch.library.opcheck(ops.linear, (x, v, b) + lay)
        torch.library.opcheck(ops.grad_input, (gy, v.detach(), layout.t_indptr, layout.t_indices, layout.t_perm,
                                               layout.t_group, 0))
        torch.library.opcheck(ops.grad_values, (gy, x.detach(), layout.indptr, layout.indices, layout.group, 30))
        torch.library.opcheck(ops.inference, (x.detach(), v.detach(), b.detach(), layout.indptr, layout.indices,
                                              layout.group, 0, 0.0, 1.0))
        torch.testing.assert_close(ops.linear(x, v, b, *lay), w @ x.detach() + b.detach()[:, None])
        torch.testing.assert_close(ops.grad_input(gy, v, layout.t_indptr, layout.t_indices, layout.t_perm, 1, 0),
                                   w.t() @ gy)
        torch.testing.assert_close(ops.grad_values(gy, x, layout.indptr, layout.indices, 1, 30),
                                   (gy @ x.detach().t())[rows, layout.indices])
        torch.testing.assert_close(ops.inference(x, v, b, layout.indptr, layout.indices, 1, 0, 0.0, 1.0),
                                   (w @ x.detach() + b.detach()[:, None]).clamp(0, 1))


# ----------------------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(5, 3, 30), (0, 30), (2, 2, 2, 30), (30,)])
def test_any_leading_shape_and_empty_batch_match_dense(backend, shape):
    torch.manual_seed(0)
    layer = SparseLinear(random_uniform(30, 20, density=0.3, seed=0))
    x = torch.randn(shape, requires_grad=True)
    with use_backend(backend):
        y = layer(x)
        assert y.shape == shape[:-1] + (20,)
        torch.testing.assert_close(y.double(), dense_linear(layer, x.detach()), atol=1e-5, rtol=1e-5)
        y.sum().backward()
    w = layer.to_dense()
    torch.testing.assert_close(x.grad, torch.ones(shape[:-1] + (20,)) @ w, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_and_float64_inputs_match_dense(backend):
    torch.manual_seed(0)
    layer = SparseLinear(structured(32, 16, 4, seed=0), dtype=torch.float64)
    base = torch.randn(32, 9, dtype=torch.float64)
    x = base.t()[::2]  # [5, 32], non-contiguous (strided rows and columns)
    assert not x.is_contiguous()
    with use_backend(backend):
        torch.testing.assert_close(layer(x), dense_linear(layer, x), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_forward_and_backward_compute_in_float32(backend, dtype):
    torch.manual_seed(0)
    ref = SparseLinear(structured(32, 16, 4, seed=0))
    layer = SparseLinear(ref.pattern, dtype=dtype)
    layer.load_state_dict(ref.state_dict())
    x = torch.randn(6, 32).to(dtype).requires_grad_()
    with use_backend(backend):
        y = layer(x)
        assert y.dtype == dtype
        y.float().sum().backward()
    assert layer.weight.grad.dtype == dtype and x.grad.dtype == dtype
    expect = dense_linear(layer, x.detach().float())
    tol = 1e-2 if dtype == torch.float16 else 5e-2
    torch.testing.assert_close(y.double(), expect, atol=tol, rtol=tol)
    torch.testing.assert_close(x.grad.double(), torch.ones(6, 16, dtype=torch.float64) @ layer.to_dense().double(),
                               atol=tol, rtol=tol)


@pytest.mark.parametrize("call, message", [
    (lambda: SparseLinear(None), "needs a sparseforge.Pattern"),
    (lambda: SparseMLP((64, 10)), "needs a sparseforge.NetworkTopology"),
    (lambda: SparseLinear(structured(8, 4, 2, seed=0), dtype=torch.int32), "allowed dtypes are float32, float64"),
    (lambda: SparseLinear(structured(8, 4, 2, seed=0))(torch.randn(5, 7)), "last dimension must be in_features=8"),
    (lambda: SparseLinear(structured(8, 4, 2, seed=0))(torch.randn(5, 8, dtype=torch.float64)),
     "x_fm is torch.float64 but the values are torch.float32"),
    (lambda: SparseLinear(structured(8, 4, 2, seed=0))(torch.ones(5, 8, dtype=torch.int64)),
     "sparse products take float32, float64, float16, bfloat16"),
    (lambda: mlp()(torch.randn(5, 47)), r"expected \[\*, 48\]"),
    (lambda: mlp()(torch.randn(5, 48, dtype=torch.float64)), "input is torch.float64 but the model is torch.float32"),
])
def test_bad_arguments_are_one_clear_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_mlp_takes_sequences_images_and_empty_batches():
    model = mlp()
    x = torch.randn(3, 4, 48)
    torch.testing.assert_close(model(x), model(x.reshape(12, 48)).reshape(3, 4, 10))
    img = torch.randn(5, 3, 4, 4)  # 48 values per sample
    torch.testing.assert_close(model(img), model(img.reshape(5, 48)))
    assert model(torch.randn(0, 48)).shape == (0, 10)


def test_unknown_backend_in_the_environment_warns_instead_of_failing_the_import():
    import os
    import subprocess
    import sys

    env = dict(os.environ, SPARSEFORGE_BACKEND="bogus")
    code = "import sparseforge.kernels as k; print(k.get_backend())"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "auto", proc.stderr
    assert "Traceback" not in proc.stderr
    assert "SPARSEFORGE_BACKEND='bogus' is not a kernel backend; allowed: 'auto', 'stock', 'native'" in proc.stderr
