"""Benchmarks of the sparse kernels: backends vs dense, batch/thread behaviour, and Graph-Challenge inference.

Every function sets torch's thread count explicitly, times the minimum over ``repeats`` rounds (each
round runs every candidate once: slow phases of a shared machine hit all alike) and returns JSON-ready
dicts (they never print; the CLI and ``benchmarks/bench_challenge.py`` do). Ratios are only
meaningful within one run (shared machines): ``speedup = best dense time / sparse time``.

``clock="cpu"`` (single thread only) times with the CPU time of the calling thread instead of the wall
clock: on an oversubscribed machine it is insensitive to the time slices other processes take, so
single-thread ratios stay meaningful there. Multi-threaded timings need the wall clock (and a quiet
machine: a descheduled OpenMP thread stalls every parallel region, dense and sparse alike).

* :func:`kernel_table`: SparseLinear (feature-major) forward and forward+backward with each backend, on
  structured and grouped patterns, against ``nn.Linear``, ``torch.mm`` and oneDNN.
* :func:`batch_sweep`: forward GFLOP/s against batch size and thread count (small batches are bound by
  index and weight traffic, not by the gathered rows).
* :func:`latency`: inference latency of a pruned MLP (LeNet-300-100 at 95% sparsity by default) at small
  batches, SparseLinear layers against the dense ``nn.Linear`` network, as users call them (batch-major).
* :func:`challenge`: Sparse DNN Graph Challenge inference ``Y <- min(max(Y W + b, 0), 32)`` over many
  RadiX-Net layers, edges/s against ``scipy.sparse`` CSR on the same inputs, results checked equal.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ..errors import ConfigError
from ..kernels import SparseLayout, native, resolve_backend, sparse_inference_fm, use_backend
from ..kernels.ell import PRODUCTS
from ..nn import SparseLinear
from ..runs.timing import best_time, interleaved_times  # noqa: F401  (best_time: re-exported)
from ..topology import (Pattern, mixed_radix_pattern, nearest_out_degree, random_uniform, structured,
                        valid_out_degrees)
from ..topology.block import block as block_pattern
from ..topology.grouped import grouped


def _out_degree(n: int, density: float, group: int = 1) -> int:
    ok = [d for d in valid_out_degrees(n, n) if d % group == 0]
    return min(ok, key=lambda d: abs(d / n - density))


def torch_csr(w: torch.Tensor) -> torch.Tensor:
    """``w.to_sparse_csr()`` without torch's "Sparse CSR tensor support is in beta state" warning (it is
    the baseline we compare with, not something the user chose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return w.to_sparse_csr()


def _available_backends() -> list[str]:
    return ["stock"] + (["native"] if native.available() else [])


def dense_fns(n: int, batch: int, seed: int = 0, n_out: int | None = None,
              ) -> dict[tuple[str, str], Callable[[], object]]:
    """Forward (``fwd``) and forward+backward (``train``) of the dense paths at ``n -> n_out`` (default ``n``):
    ``nn.Linear`` (batch-major), ``torch.mm`` (feature-major ``W @ x``), oneDNN (``torch.utils.mkldnn``
    inference linear: forward only) where this torch build has it."""
    n_out = n if n_out is None else n_out
    torch.manual_seed(seed)
    lin = nn.Linear(n, n_out)
    x = torch.randn(batch, n, requires_grad=True)
    g = torch.randn(batch, n_out)
    w = lin.weight.detach().clone().requires_grad_()
    x_fm = x.detach().t().contiguous().requires_grad_()
    g_fm = g.t().contiguous()

    def no_grad(f: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return f()

        return run

    fns = {
        ("nn.Linear", "fwd"): no_grad(lambda: lin(x)),
        ("nn.Linear", "train"): lambda: lin(x).backward(g),
        ("torch.mm", "fwd"): no_grad(lambda: torch.mm(w, x_fm)),
        ("torch.mm", "train"): lambda: torch.mm(w, x_fm).backward(g_fm),
    }
    if torch.backends.mkldnn.is_available():
        try:
            from torch.utils import mkldnn as mkldnn_utils

            mlin = mkldnn_utils.to_mkldnn(nn.Linear(n, n_out))
            xm = x.detach().to_mkldnn()
            no_grad(lambda: mlin(xm))()
            fns[("oneDNN", "fwd")] = no_grad(lambda: mlin(xm))
        except (RuntimeError, AttributeError):  # a build without oneDNN linear
            pass
    return fns


def sparse_fns(pattern: Pattern, backend: str, batch: int, seed: int = 0) -> dict[str, Callable[[], object]]:
    """SparseLinear with one backend: feature-major ``fwd``, ``train`` (forward+backward) and the two
    backward products alone, ``grad_input`` and ``grad_values``; ``fwd_bm`` and ``train_bm``: the drop-in
    ``layer(x)`` on batch-major ``x[batch, n_in]`` (as ``nn.Linear`` is called)."""
    torch.manual_seed(seed)
    layer = SparseLinear(pattern)
    layout: SparseLayout = layer._layout
    x = torch.randn(pattern.n_in, batch, requires_grad=True)
    g = torch.randn(pattern.n_out, batch)
    x_bm = x.detach().t().contiguous().requires_grad_()
    g_bm = g.t().contiguous()
    v = layer.weight.detach().reshape(-1)
    with use_backend(backend):
        spmm, sampled = PRODUCTS[resolve_backend("cpu", x.dtype)]

    def with_backend(f: Callable[[], object], grad: bool = False) -> Callable[[], object]:
        def run() -> object:
            with use_backend(backend), torch.set_grad_enabled(grad):
                return f()

        return run

    return {
        "fwd": with_backend(lambda: layer.forward_fm(x)),
        "train": with_backend(lambda: layer.forward_fm(x).backward(g), grad=True),
        "grad_input": with_backend(lambda: spmm(layout, v, g, transposed=True)),
        "grad_values": with_backend(lambda: sampled(layout, g, x)),
        "fwd_bm": with_backend(lambda: layer(x_bm)),
        "train_bm": with_backend(lambda: layer(x_bm).backward(g_bm), grad=True),
    }


def kernel_table(
    n: int = 4096,
    batch: int = 256,
    densities: Sequence[float] = (0.1, 0.01),
    group: int = 4,
    group_densities: Sequence[float] = (0.1,),
    threads: int = 2,
    repeats: int = 5,
    clock: str = "wall",
    seed: int = 0,
    on_round: Callable[[int, int], None] | None = None,
    block: int = 8,
    block_densities: Sequence[float] = (0.1,),
) -> dict:
    """SparseLinear with every backend vs the dense paths, at ``n x n``, all timed in one interleaved run.

    Returns ``{"setup", "dense": {path: {"fwd", "train"} ms}, "best_dense_fwd_ms", "best_dense_train_ms",
    "dense_gflops_fwd", "rows": [...]}``; each row (pattern, backend) has times in ms, GFLOP/s and
    ``speedup_fwd`` / ``speedup_train`` against the best dense path (feature-major ``forward_fm``), and
    ``fwd_bm_ms`` / ``train_bm_ms`` / ``speedup_fwd_bm`` / ``speedup_train_bm`` for the drop-in ``layer(x)``.
    """
    torch.set_num_threads(threads)
    cases = [structured(n, n, _out_degree(n, rho), seed=seed) for rho in densities]
    cases += [grouped(n, n, _out_degree(n, rho, group), group=group, seed=seed) for rho in group_densities]
    cases += [block_pattern(n, n, block * _out_degree(n // block, rho), block=block, seed=seed) for rho in block_densities]
    kinds = (["structured"] * len(densities) + ["grouped"] * len(group_densities) + ["block"] * len(block_densities))
    sizes = {"structured": 1, "grouped": group, "block": block}
    fns: dict = dict(dense_fns(n, batch, seed))
    x_fm = torch.randn(n, batch)
    for i, pattern in enumerate(cases):
        for backend in _available_backends():
            fns.update({(i, backend, op): f for op, f in sparse_fns(pattern, backend, batch, seed).items()})
        w_csr = torch_csr(SparseLinear(pattern).to_dense())  # torch's own CSR product, forward only
        fns[(i, "torch CSR", "fwd")] = lambda w=w_csr: torch.sparse.mm(w, x_fm)
    t = interleaved_times(fns, repeats, warmup=1, clock=clock, on_round=on_round)
    dense: dict[str, dict[str, float]] = {}
    for key in fns:
        if isinstance(key[0], str):
            dense.setdefault(key[0], {})[key[1]] = t[key]
    best_fwd = min(v["fwd"] for v in dense.values())
    best_train = min(v["train"] for v in dense.values() if "train" in v)
    rows = []
    for i, pattern in enumerate(cases):
        flops = 2 * pattern.edges * batch
        for backend in _available_backends():
            ms = {op: 1e3 * t[(i, backend, op)] for op in ("fwd", "train", "grad_input", "grad_values", "fwd_bm",
                                                           "train_bm")}
            rows.append(dict(
                pattern=kinds[i], group=sizes[kinds[i]],
                density=pattern.density, backend=backend, fwd_ms=ms["fwd"], train_ms=ms["train"],
                torch_csr_fwd_ms=1e3 * t[(i, "torch CSR", "fwd")],
                grad_input_ms=ms["grad_input"], grad_values_ms=ms["grad_values"],
                fwd_gflops=flops / ms["fwd"] / 1e6, train_gflops=3 * flops / ms["train"] / 1e6,
                speedup_fwd=1e3 * best_fwd / ms["fwd"], speedup_train=1e3 * best_train / ms["train"],
                fwd_bm_ms=ms["fwd_bm"], train_bm_ms=ms["train_bm"], speedup_fwd_bm=1e3 * best_fwd / ms["fwd_bm"],
                speedup_train_bm=1e3 * best_train / ms["train_bm"],
            ))
    return dict(
        setup=dict(n_in=n, n_out=n, batch=batch, threads=threads, clock=clock, repeats=repeats,
                   torch=torch.__version__),
        dense={k: {op: 1e3 * v for op, v in ops.items()} for k, ops in dense.items()},
        best_dense_fwd_ms=1e3 * best_fwd, best_dense_train_ms=1e3 * best_train,
        dense_gflops_fwd=2 * n * n * batch / best_fwd / 1e9, rows=rows,
    )


def compile_step(n: int = 4096, batch: int = 256, density: float = 0.1, threads: int = 2, repeats: int = 5,
                 clock: str = "wall", seed: int = 0) -> list[dict]:
    """A SparseMLP ``(n, n, 10)`` training step (forward, cross-entropy, backward, SGD step) eager and with the
    forward+loss under ``torch.compile(fullgraph=True)``, per backend, timed in one interleaved run.

    Returns one row per backend: ``eager_ms``, ``compiled_ms`` and ``compiled_vs_eager`` (compiled / eager
    time; above 1 means compiling made the step slower). The compile itself happens in the warm-up.
    """
    import torch.nn.functional as F

    from ..nn import SparseMLP
    from ..topology import NetworkTopology

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    topo = NetworkTopology((n, n, 10), (structured(n, n, _out_degree(n, density), seed=seed), Pattern.full(n, 10)))
    x, y = torch.randn(batch, n), torch.randint(0, 10, (batch,))
    fns = {}
    for backend in _available_backends():
        for mode in ("eager", "compiled"):
            model = SparseMLP(topo)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3)

            def loss_fn(m=model):
                return F.cross_entropy(m(x), y)

            fwd = torch.compile(loss_fn, fullgraph=True) if mode == "compiled" else loss_fn

            def step(fwd=fwd, opt=opt, backend=backend) -> None:
                with use_backend(backend):
                    opt.zero_grad(set_to_none=True)
                    fwd().backward()
                    opt.step()

            fns[(backend, mode)] = step
    t = interleaved_times(fns, repeats, warmup=2, clock=clock)
    return [dict(backend=b, density=density, eager_ms=1e3 * t[(b, "eager")], compiled_ms=1e3 * t[(b, "compiled")],
                 compiled_vs_eager=t[(b, "compiled")] / t[(b, "eager")]) for b in _available_backends()]


def batch_sweep(
    n: int = 4096,
    density: float = 0.1,
    batches: Sequence[int] = (1, 16, 64, 256, 1024),
    threads: Sequence[int] = (1, 2),
    repeats: int = 5,
    clock: str = "wall",
    seed: int = 0,
    on_round: Callable[[int, int], None] | None = None,
) -> list[dict]:
    """Forward GFLOP/s of each backend (feature-major ``forward_fm``, and ``<backend>_bm``: the drop-in
    ``layer(x)`` on batch-major ``x``) and of ``torch.mm`` against batch size and thread count (``clock``
    applies to the single-thread points; multi-threaded points use the wall clock). ``on_round(done, total)``
    reports the (threads, batch) points measured so far."""
    pattern = structured(n, n, _out_degree(n, density), seed=seed)
    layer = SparseLinear(pattern)
    w = torch.randn(n, n)
    rows = []
    points = len(threads) * len(batches)
    for nt in threads:
        torch.set_num_threads(nt)
        tclock = clock if nt == 1 else "wall"
        for b in batches:
            if on_round:
                on_round(len(rows), points)
            x = torch.randn(n, b)
            x_bm = x.t().contiguous()
            fns: dict = {"mm": lambda: torch.mm(w, x)}
            for backend in _available_backends():
                fns[backend] = lambda backend=backend: _forward(layer, x, backend)
                fns[f"{backend}_bm"] = lambda backend=backend: _forward(layer, x_bm, backend, batch_major=True)
            t = interleaved_times(fns, repeats, warmup=1, clock=tclock)
            row: dict = dict(threads=nt, batch=b, density=pattern.density, clock=tclock)
            for key, s in t.items():
                row[f"{key}_gflops"] = 2 * (pattern.edges if key != "mm" else n * n) * b / s / 1e9
            best = min(v for k, v in t.items() if k != "mm")
            row["speedup_vs_mm"] = t["mm"] / best
            rows.append(row)
    if on_round:
        on_round(len(rows), points)
    return rows


def pruned_mlp(sizes: Sequence[int], sparsity: float, seed: int = 0) -> tuple[nn.Sequential, nn.Sequential]:
    """(dense, sparse): an MLP ``sizes[0] -> ... -> sizes[-1]`` (ReLU between layers) of ``nn.Linear`` layers, and
    the same network pruned to ``sparsity``: ``SparseLinear`` layers on random patterns (variable in-degree, so
    the CSR path) keeping ``1 - sparsity`` of each weight matrix, holding the dense weights on those edges."""
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise ConfigError(f"sizes must be >= 2 layer widths, each >= 1, got {list(sizes)}")
    if not 0 <= sparsity < 1:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    torch.manual_seed(seed)
    dense_layers: list[nn.Module] = []
    sparse_layers: list[nn.Module] = []
    for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(n_in, n_out)
        pattern = random_uniform(n_in, n_out, edges=max(1, round((1 - sparsity) * n_in * n_out)),
                                 seed=seed + k)
        sparse = SparseLinear.from_dense(linear.weight.detach(), pattern, linear.bias.detach())
        dense_layers.append(linear)
        sparse_layers.append(sparse)
        if k < len(sizes) - 2:
            dense_layers.append(nn.ReLU())
            sparse_layers.append(nn.ReLU())
    return nn.Sequential(*dense_layers).eval(), nn.Sequential(*sparse_layers).eval()


def latency(
    sizes: Sequence[int] = (784, 300, 100, 10),
    sparsity: float = 0.95,
    batches: Sequence[int] = (1, 4, 16),
    threads: int = 1,
    repeats: int = 5,
    number: int = 200,
    clock: str = "wall",
    seed: int = 0,
    on_round: Callable[[int, int], None] | None = None,
) -> dict:
    """Inference latency of a pruned MLP (default: LeNet-300-100 at 95% sparsity) at small batches: the dense
    ``nn.Linear`` network vs the ``SparseLinear`` one (:func:`pruned_mlp`), both called on batch-major
    ``x[batch, sizes[0]]`` under ``torch.no_grad`` as users call them, timed in one interleaved run (``number``
    calls per round). ``speedup = dense / sparse`` of the same run. The sparse network's output is checked
    against the dense network with the pruned weights (float64) first.

    Returns ``{"setup", "rows": [{"batch", "dense_us", "sparse_us", "speedup", "sparse_layer_us": [...]}]}``;
    ``sparse_layer_us``: each SparseLinear alone on its input, to show where the time goes.
    """
    torch.set_num_threads(threads)
    dense, sparse = pruned_mlp(sizes, sparsity, seed)
    reference = nn.Sequential(*[nn.Linear(m.in_features, m.out_features).double() if isinstance(m, SparseLinear)
                                else m for m in sparse])
    with torch.no_grad():
        for ref, m in zip(reference, sparse):
            if isinstance(m, SparseLinear):
                ref.weight.copy_(m.to_dense().double())
                ref.bias.copy_(m.bias.double())
    rows = []
    for i, b in enumerate(batches):
        if on_round:
            on_round(i, len(batches))
        x = torch.randn(b, sizes[0])
        with torch.no_grad():
            got, want = sparse(x).double(), reference(x.double())
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-4):
                raise RuntimeError(f"sparse network differs from its dense reference by "
                                   f"{(got - want).abs().max().item():.3g} at batch {b}")
            inputs, h = [], x  # each sparse layer's own input, for the per-layer times
            for m in sparse:
                if isinstance(m, SparseLinear):
                    inputs.append((m, h))
                h = m(h)
        fns: dict = {"dense": lambda: dense(x), "sparse": lambda: sparse(x)}
        fns.update({("layer", k): (lambda m=m, h=h: m(h)) for k, (m, h) in enumerate(inputs)})
        with torch.no_grad():
            t = interleaved_times(fns, repeats, warmup=3, number=number, clock=clock)
        rows.append(dict(batch=b, dense_us=1e6 * t["dense"], sparse_us=1e6 * t["sparse"],
                         speedup=t["dense"] / t["sparse"],
                         sparse_layer_us=[1e6 * t[("layer", k)] for k in range(len(inputs))]))
    if on_round:
        on_round(len(batches), len(batches))
    return dict(setup=dict(sizes=list(sizes), sparsity=sparsity, threads=threads, clock=clock, repeats=repeats,
                           number=number, torch=torch.__version__,
                           backend=resolve_backend("cpu", torch.float32)), rows=rows)


def feed_forward(
    shapes: Sequence[tuple[int, int]] = ((512, 2048), (2048, 512)),
    tokens: int = 4096,
    density: float = 0.1,
    block: int = 8,
    threads: int = 1,
    repeats: int = 5,
    clock: str = "wall",
    seed: int = 0,
    on_round: Callable[[int, int], None] | None = None,
) -> dict:
    """Transformer feed-forward shapes: one training step (forward, backward to the input and the weights) of
    ``nn.Linear`` vs ``SparseLinear`` on a ``block x block`` block pattern and on the unstructured
    (structured-family) pattern nearest ``density``, batch-major ``x[tokens, n_in]`` as a Transformer calls
    them, every shape's contenders timed in one interleaved run.

    Returns ``{"setup", "rows": [{"shape", "layer", "density", "train_ms", "speedup", "gflops"}]}``:
    ``speedup = nn.Linear time / time`` of the same run; ``gflops`` counts the 3 products of
    ``2 * edges * tokens`` each (dense: ``edges = n_in * n_out``).
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rows = []
    for i, (n_in, n_out) in enumerate(shapes):
        if on_round:
            on_round(i, len(shapes))
        d_blk = block * nearest_out_degree(n_in // block, n_out // block, density)
        layers = {"nn.Linear": nn.Linear(n_in, n_out),
                  f"block b={block}": SparseLinear(block_pattern(n_in, n_out, d_blk, block=block, seed=seed)),
                  "unstructured": SparseLinear(structured(n_in, n_out, nearest_out_degree(n_in, n_out, density),
                                                          seed=seed))}
        x = torch.randn(tokens, n_in, requires_grad=True)
        g = torch.randn(tokens, n_out)
        t = interleaved_times({k: (lambda m=m: m(x).backward(g)) for k, m in layers.items()}, repeats, warmup=1,
                              clock=clock)
        for name, m in layers.items():
            edges = n_in * n_out if isinstance(m, nn.Linear) else m.pattern.edges
            rows.append(dict(shape=f"{n_in}->{n_out}", layer=name, density=edges / (n_in * n_out),
                             train_ms=1e3 * t[name], speedup=t["nn.Linear"] / t[name],
                             gflops=3 * 2 * edges * tokens / t[name] / 1e9))
    if on_round:
        on_round(len(shapes), len(shapes))
    return dict(setup=dict(tokens=tokens, density=density, block=block, threads=threads, clock=clock,
                           repeats=repeats, torch=torch.__version__), rows=rows)


def _forward(layer: SparseLinear, x: torch.Tensor, backend: str, batch_major: bool = False) -> torch.Tensor:
    with use_backend(backend), torch.no_grad():
        return layer(x) if batch_major else layer.forward_fm(x)


# ---------------------------------------------------------------------------------------- challenge
CHALLENGE_BIAS = {1024: -0.30, 4096: -0.35, 16384: -0.40, 65536: -0.45}  # the Graph Challenge's biases


def challenge_patterns(neurons: int, connections: int) -> list[Pattern]:
    """RadiX-Net layers on ``neurons`` nodes with radix ``connections``: place values ``1, r, r^2, ...`` (each
    with distinct shifts mod ``neurons``); layer ``l`` of the network uses pattern ``l mod len(result)``."""
    out, place = [], 1
    while place < neurons and neurons // math.gcd(neurons, place) >= connections:
        out.append(mixed_radix_pattern(neurons, connections, place))
        place *= connections
    return out


def check_challenge(neurons: int, connections: int) -> None:
    """ConfigError unless ``neurons`` is a square >= 4 (inputs are square images) and ``1 <= connections <=
    neurons`` (a RadiX-Net layer cannot have more connections per neuron than there are neurons)."""
    side = math.isqrt(max(neurons, 0))
    if neurons < 4 or side * side != neurons:
        raise ConfigError(f"neurons={neurons}: must be a square >= 4 (inputs are side x side images), "
                          f"e.g. {max(side, 2) ** 2} or {(max(side, 2) + 1) ** 2}")
    if not 1 <= connections <= neurons:
        raise ConfigError(f"connections={connections}: must be in [1, neurons={neurons}]")


def challenge_inputs(inputs: int, neurons: int, seed: int = 0) -> np.ndarray:
    """Binary "images" (``inputs x neurons``, float32): 2-5 random rectangles on a square grid, MNIST-like
    sparsity (~20% ones); after 120 challenge layers roughly a quarter of the inputs stay active."""
    side = math.isqrt(neurons)
    if side * side != neurons:
        raise ConfigError(f"neurons={neurons} must be a square (inputs are side x side images)")
    rng = np.random.default_rng(seed)
    y = np.zeros((inputs, side, side), np.float32)
    span = max(2, side // 2)
    for i in range(inputs):
        for _ in range(rng.integers(2, 6)):
            r0, c0 = rng.integers(0, max(1, side - 4), 2)
            h, w = rng.integers(2, span, 2)
            y[i, r0 : r0 + h, c0 : c0 + w] = 1.0
    return y.reshape(inputs, neurons)


def challenge_scipy(y0: np.ndarray, patterns: list[Pattern], layers: int, weight: float, bias: float,
                    cap: float = 32.0) -> sp.csr_matrix:
    """Reference: CSR ``Y <- Y W``, bias on the stored entries, clip to ``[0, cap]``, drop zeros."""
    ws = [sp.csr_matrix((np.full(p.edges, weight, np.float32), p.indices, p.indptr), shape=p.shape).T.tocsr()
          for p in patterns]
    y = sp.csr_matrix(y0)
    for layer in range(layers):
        y = y @ ws[layer % len(ws)]
        y.data += np.float32(bias)
        np.clip(y.data, 0.0, cap, out=y.data)
        y.eliminate_zeros()
    return y


def challenge_sparseforge(y0: np.ndarray, patterns: list[Pattern], layers: int, weight: float, bias: float,
                          batch: int, cap: float = 32.0) -> torch.Tensor:
    """The same inference with sparseforge's kernels, feature-major, ``batch`` inputs at a time.

    An input whose activations are all zero stays zero (the bias is negative), so its column is dropped
    from the batch, as the CSR reference skips empty rows. Returns ``[inputs, neurons]`` float32.
    """
    if bias > 0:
        raise ValueError(f"bias={bias} must be <= 0 (dead inputs are dropped: they must stay dead)")
    layouts = [SparseLayout.from_pattern(p) for p in patterns]
    values = [torch.full((p.edges,), weight) for p in patterns]
    biases = [torch.full((p.n_out,), bias) for p in patterns]  # bias and clamp fused into the product
    x = torch.from_numpy(y0)
    out = torch.zeros_like(x)
    with torch.no_grad():
        for start in range(0, x.shape[0], batch):
            h = x[start : start + batch].t().contiguous()
            cols = torch.arange(start, start + h.shape[1])
            for layer in range(layers):
                k = layer % len(layouts)
                h = sparse_inference_fm(h, values[k], layouts[k], biases[k], (0.0, cap))
                alive = h.any(dim=0)
                if not bool(alive.all()):
                    h, cols = h[:, alive].contiguous(), cols[alive]
                if h.shape[1] == 0:
                    break
            out[cols] = h.t()
    return out


def challenge(
    neurons: int = 1024,
    layers: int = 120,
    connections: int = 32,
    inputs: int = 1024,
    batch: int = 256,
    threads: int = 2,
    repeats: int = 2,
    clock: str = "wall",
    backend: str = "auto",
    seed: int = 0,
    check: bool = True,
    on_round: Callable[[int, int], None] | None = None,
) -> dict:
    """Graph-Challenge-shaped inference: sparseforge vs scipy.sparse CSR on the same generated inputs.

    Weights ``2 / connections`` (the challenge's ``1/16`` at 32 connections), bias from
    :data:`CHALLENGE_BIAS` (``-0.3`` at 1024 neurons), activations clipped to ``[0, 32]``.
    ``edges/s = inputs * layers * neurons * connections / seconds`` (scipy runs on one thread).

    Returns ``{"setup", "rows": [{"implementation", "seconds", "edges_per_s", "speedup"}], "check"}``; the
    check compares the final activations (max abs difference) and the categories (inputs with any
    nonzero output).
    """
    torch.set_num_threads(threads)
    bias = CHALLENGE_BIAS.get(neurons, -0.3)
    weight = 2.0 / connections
    check_challenge(neurons, connections)
    patterns = challenge_patterns(neurons, connections)
    y0 = challenge_inputs(inputs, neurons, seed)
    work = inputs * layers * neurons * connections

    results: dict[str, object] = {}

    def run_scipy() -> None:
        results["scipy"] = challenge_scipy(y0, patterns, layers, weight, bias)

    def run_ours() -> None:
        with use_backend(backend):
            results["ours"] = challenge_sparseforge(y0, patterns, layers, weight, bias, batch)

    used = resolve_backend("cpu", torch.float32) if backend != "stock" else "stock"
    t = interleaved_times({"scipy": run_scipy, "ours": run_ours}, repeats, warmup=0, clock=clock, on_round=on_round)
    t_scipy, t_ours, ref, ours = t["scipy"], t["ours"], results["scipy"], results["ours"]
    rows = [
        dict(implementation="scipy.sparse CSR (1 thread)", seconds=t_scipy, edges_per_s=work / t_scipy, speedup=1.0),
        dict(implementation=f"sparseforge {used} ({threads} threads, batch {batch})", seconds=t_ours,
             edges_per_s=work / t_ours, speedup=t_scipy / t_ours),
    ]
    result: dict = dict(
        setup=dict(neurons=neurons, layers=layers, connections=connections, inputs=inputs, batch=batch,
                   threads=threads, clock=clock, bias=bias, weight=weight, edges=layers * neurons * connections),
        rows=rows,
    )
    if check:
        dense_ref = ref.toarray()
        got = ours.numpy()
        cats_ref = np.flatnonzero(dense_ref.any(axis=1))
        cats_got = np.flatnonzero(got.any(axis=1))
        result["check"] = dict(
            max_abs_diff=float(np.abs(dense_ref - got).max()) if got.size else 0.0,
            categories=int(cats_ref.size), categories_equal=bool(np.array_equal(cats_ref, cats_got)),
            active_fraction=float((dense_ref != 0).mean()),
        )
    return result


# ------------------------------------------------------------------------------- family vs unstructured
def family_accuracy(
    sizes: Sequence[int] = (784, 392, 392, 10),
    fan_out: Sequence[int] = (32, 32, 10),
    families: Sequence[tuple[str, dict]] = (("structured", {}), ("block", {"block": 8})),
    dataset: str = "mnist",
    epochs: int = 10,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 256,
    lr: float = 1e-3,
    threads: int = 2,
    limit: int | None = None,
) -> list[dict]:
    """Does a structured family cost accuracy? Train the same SparseMLP with each ``(family, options)``
    (equal sizes, out-degrees and therefore density; the last junction is dense when its out-degree is
    ``N_L``) for each seed and return one row per run: ``family``, ``options``, ``seed``, ``rho_net``,
    ``test_acc``, ``val_acc``, ``epoch_time_s``. The default sizes suit blocks of 4 and 8 (392 = 49 x 8)."""
    from ..data import load_dataset
    from ..nn import SparseMLP
    from ..topology import design
    from ..train.loop import TrainConfig, fit

    torch.set_num_threads(threads)
    data = load_dataset(dataset, seed=0, limit=limit)
    rows = []
    for family, options in families:
        for seed in seeds:
            topology = design(sizes, fan_out=fan_out, family=family, seed=seed, **options)
            torch.manual_seed(seed)
            model = SparseMLP(topology)
            state = fit(model, data, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed))
            rows.append(dict(family=family, options=dict(options), group=options.get("group", 1), seed=seed,
                             rho_net=topology.rho_net, test_acc=state.metrics["test_acc"],
                             val_acc=state.metrics["val_acc"],
                             epoch_time_s=float(np.mean([h["epoch_time_s"] for h in state.history]))))
    return rows
