"""``sparseforge bench peers``: SparseLinear against the other sparse libraries, all timed in one interleaved run
per shape, as ratios to the best dense path of the same run (``ratio = best dense time / contender time``).

Contenders, forward (``fwd``) and training step (``train`` = forward + backward, where the peer has one):

* best dense: oneDNN inference linear (forward), ``nn.Linear`` and ``torch.mm`` (forward and training step);
* ``torch CSR``: ``torch.sparse.mm(W_csr, x)``; the training step is the same product with autograd on the CSR
  values and ``x`` (``'–'`` where this torch build has no such backward);
* ``scipy CSR``: ``scipy.sparse.csr_array @ x`` (forward only);
* ``GraphBLAS``: python-graphblas (SuiteSparse:GraphBLAS) ``x @ W^T`` (``mxm``, plus-times semiring; the
  faster of the two orders here) (forward only; optional, pip package ``python-graphblas``);
* ``SparseProp``: ``sparseprop.modules.SparseLinear`` (forward and training step; optional, pip package
  ``sparseprop``);
* sparseforge ``layer(x)`` (the drop-in, batch-major) and ``forward_fm`` (feature-major, forward only).

Every contender computes ``y = x W^T`` for the same random pattern and weights (no bias); each peer's forward
output is checked against sparseforge's ``layer(x)`` once per shape (:class:`PeerMismatch` when it differs).
The pattern has a fixed in-degree ``d_in = round(density * n_in)`` with inputs drawn uniformly without
replacement per output (the layer sizes of the issue's shapes admit no exact structured pattern).
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..nn import SparseLinear
from ..runs.timing import interleaved_times, timer
from ..topology import Pattern
from ..topology.expander import sample_rows
from .bench import dense_fns, torch_csr

# (n_in, n_out, batch, densities) of each preset; "issue": the shapes of issue 16's table and targets.
SHAPES: dict[str, list[tuple[int, int, int, tuple[float, ...]]]] = {
    "issue": [(4096, 4096, 256, (0.10, 0.05, 0.01)), (512, 256, 128, (0.10, 0.05, 0.02)),
              (2048, 1000, 64, (0.10, 0.02))],
    "small": [(64, 64, 8, (0.25, 0.125)), (48, 20, 4, (0.5,))],
}
# optional peers: import name -> pip package
OPTIONAL = {"graphblas": "python-graphblas", "sparseprop": "sparseprop"}
CONTENDERS = ("torch CSR", "scipy CSR", "GraphBLAS", "SparseProp", "sparseforge layer(x)", "sparseforge forward_fm")
TOLERANCE = 1e-4  # max |peer - sparseforge| allowed, relative to max(1, max |y|) (float32 sums)


class PeerMismatch(RuntimeError):
    """A peer's product differs from sparseforge's on the same pattern, weights and input."""


def missing_peers() -> dict[str, str]:
    """``{import name: pip package}`` of the optional peers that are not installed."""
    return {name: pkg for name, pkg in OPTIONAL.items() if not _installed(name)}


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a finder that refuses the package (as when it is not installed)
        return False


def random_rows(n_in: int, n_out: int, density: float, seed: int = 0) -> Pattern:
    """Pattern ``[n_out, n_in]``: every output has ``d_in = max(1, round(density * n_in))`` inputs, drawn
    uniformly without replacement (so the realised density is ``d_in / n_in``)."""
    if not 0 < density <= 1:
        raise ConfigError(f"density={density!r}: must be in (0, 1]")
    d_in = min(n_in, max(1, round(density * n_in)))
    return Pattern.from_ell(sample_rows(n_out, n_in, d_in, np.random.default_rng(seed)), n_in)


def _torch_csr_train(w_dense: torch.Tensor, x_fm: torch.Tensor, g_fm: torch.Tensor) -> Callable[[], object] | None:
    """The CSR product with autograd on the CSR values and ``x``, or None where torch has no such backward."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        w = torch_csr(w_dense).requires_grad_()
    x = x_fm.clone().requires_grad_()

    def step() -> None:
        torch.sparse.mm(w, x).backward(g_fm)

    try:
        step()
    except (RuntimeError, NotImplementedError):
        return None
    return step


def _contenders(layer: SparseLinear, x_bm: torch.Tensor, g_bm: torch.Tensor, threads: int,
                have: set[str]) -> tuple[dict, dict]:
    """(timed callables keyed (contender, op), forward outputs as float64 numpy ``[batch, n_out]``)."""
    w = layer.to_dense().detach()  # [n_out, n_in]
    x_fm, g_fm = x_bm.t().contiguous(), g_bm.t().contiguous()
    xr_bm = x_bm.clone().requires_grad_()
    outputs: dict[str, Callable[[], object]] = {}
    fns: dict = {}

    def no_grad(f: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with torch.no_grad():
                return f()
        return run

    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        w_csr = torch_csr(w)
    fns[("torch CSR", "fwd")] = outputs["torch CSR"] = no_grad(lambda: torch.sparse.mm(w_csr, x_fm))
    csr_train = _torch_csr_train(w, x_fm, g_fm)
    if csr_train is not None:
        fns[("torch CSR", "train")] = csr_train

    import scipy.sparse as sp

    w_sp = sp.csr_array(w.numpy())
    x_np = x_fm.numpy()
    fns[("scipy CSR", "fwd")] = outputs["scipy CSR"] = lambda: w_sp @ x_np

    if "graphblas" in have:
        import graphblas as gb

        gb.ss.config["nthreads"] = threads
        # x[batch, n_in] (full, row-major) times W^T (CSR): 1.7x faster here than W @ x[n_in, batch]
        wt_gb = gb.io.from_scipy_sparse(sp.csr_array(w.t().contiguous().numpy()))
        x_gb = gb.Matrix.from_dense(x_bm.numpy())
        fns[("GraphBLAS", "fwd")] = lambda: x_gb.mxm(wt_gb, gb.semiring.plus_times).new()
        outputs["GraphBLAS"] = lambda: fns[("GraphBLAS", "fwd")]().to_dense(fill_value=0.0)

    if "sparseprop" in have:
        import sparseprop
        from sparseprop.modules import SparseLinear as SPLinear

        sparseprop.set_num_threads(threads)  # sets OMP_NUM_THREADS: effective before its OpenMP starts

        sp_layer = SPLinear(w.clone(), bias=None)
        fns[("SparseProp", "fwd")] = outputs["SparseProp"] = no_grad(lambda: sp_layer(x_bm))
        fns[("SparseProp", "train")] = lambda: sp_layer(xr_bm).backward(g_bm)

    fns[("sparseforge layer(x)", "fwd")] = outputs["sparseforge layer(x)"] = no_grad(lambda: layer(x_bm))
    fns[("sparseforge layer(x)", "train")] = lambda: layer(xr_bm).backward(g_bm)
    fns[("sparseforge forward_fm", "fwd")] = outputs["sparseforge forward_fm"] = no_grad(lambda: layer.forward_fm(x_fm))
    return fns, outputs


def _as_bm(name: str, y: object, batch: int) -> np.ndarray:
    """A contender's forward output as float64 ``[batch, n_out]`` (feature-major peers are transposed)."""
    a = np.asarray(y.detach().numpy() if isinstance(y, torch.Tensor) else y, dtype=np.float64)
    bm = name in ("GraphBLAS", "SparseProp", "sparseforge layer(x)")
    return a if bm else a.T


def check_outputs(outputs: dict[str, Callable[[], object]], batch: int) -> dict[str, float]:
    """Max abs difference of each contender's forward output from sparseforge ``layer(x)``;
    :class:`PeerMismatch` when one exceeds ``TOLERANCE * max(1, max |y|)``."""
    ref = _as_bm("sparseforge layer(x)", outputs["sparseforge layer(x)"](), batch)
    tol = TOLERANCE * max(1.0, float(np.abs(ref).max()))
    diffs = {}
    for name, f in outputs.items():
        y = _as_bm(name, f(), batch)
        if y.shape != ref.shape:
            raise PeerMismatch(f"{name}: output shape {y.shape} differs from sparseforge's {ref.shape}")
        diffs[name] = float(np.abs(y - ref).max())
        if not diffs[name] <= tol:
            raise PeerMismatch(f"{name}: output differs from sparseforge's by {diffs[name]:.3g} (allowed {tol:.3g})")
    return diffs


def peers(shapes: Sequence[tuple[int, int, int, Sequence[float]]] = SHAPES["issue"], threads: int = 1,
          repeats: int = 5, clock: str = "wall", seed: int = 0,
          on_round: Callable[[int, int], None] | None = None) -> dict:
    """Time every contender at every ``(n_in, n_out, batch, densities)``, one interleaved run per shape.

    Returns ``{"setup", "missing": {import name: pip package}, "shapes": [...]}``; each shape has
    ``dense`` ({path: {op: ms}}), ``best_dense_fwd_ms`` / ``best_dense_train_ms``, ``check`` ({density:
    {contender: max abs diff}}) and ``rows``: one per contender and density with ``fwd_ms`` / ``train_ms``
    (None where the contender has no such step) and ``ratio_fwd`` / ``ratio_train`` = best dense / contender.
    ``on_round(done, total)`` reports timing rounds over all shapes.
    """
    if repeats < 1:
        raise ConfigError(f"repeats={repeats}: must be >= 1")
    if threads < 1:
        raise ConfigError(f"threads={threads}: must be >= 1")
    torch.set_num_threads(threads)
    timer(clock)  # checks the clock (cpu needs one thread)
    missing = missing_peers()
    have = set(OPTIONAL) - set(missing)
    out_shapes = []
    for s, (n_in, n_out, batch, densities) in enumerate(shapes):
        gen = torch.Generator().manual_seed(seed)
        x_bm = torch.randn(batch, n_in, generator=gen)
        g_bm = torch.randn(batch, n_out, generator=gen)
        fns: dict = {(k[0], k[1]): f for k, f in dense_fns(n_in, batch, seed, n_out=n_out).items()}
        dense_keys = list(fns)
        checks, realised = {}, {}
        for i, rho in enumerate(densities):
            torch.manual_seed(seed + i)
            layer = SparseLinear(random_rows(n_in, n_out, rho, seed=seed + i), bias=False)
            realised[i] = layer.pattern.density
            c_fns, outputs = _contenders(layer, x_bm, g_bm, threads, have)
            checks[f"{realised[i]:.4g}"] = check_outputs(outputs, batch)
            fns.update({(i, *k): f for k, f in c_fns.items()})

        def step(done: int, total: int, s: int = s) -> None:
            if on_round:
                on_round(s * (repeats + 1) + done, len(shapes) * (repeats + 1))

        t = interleaved_times(fns, repeats, warmup=1, clock=clock, on_round=step)
        dense: dict[str, dict[str, float]] = {}
        for k in dense_keys:
            dense.setdefault(k[0], {})[k[1]] = 1e3 * t[k]
        best_fwd = min(v["fwd"] for v in dense.values())
        best_train = min(v["train"] for v in dense.values() if "train" in v)
        rows = []
        for i in range(len(densities)):
            for name in CONTENDERS:
                ms = {op: 1e3 * t[(i, name, op)] if (i, name, op) in t else None for op in ("fwd", "train")}
                missing_peer = (name == "GraphBLAS" and "graphblas" in missing) or (
                    name == "SparseProp" and "sparseprop" in missing)
                rows.append(dict(contender=name, density=realised[i], fwd_ms=ms["fwd"], train_ms=ms["train"],
                                 ratio_fwd=best_fwd / ms["fwd"] if ms["fwd"] else None,
                                 ratio_train=best_train / ms["train"] if ms["train"] else None,
                                 installed=not missing_peer))
        out_shapes.append(dict(n_in=n_in, n_out=n_out, batch=batch, dense=dense, best_dense_fwd_ms=best_fwd,
                               best_dense_train_ms=best_train, check=checks, rows=rows))
    versions = {"torch": torch.__version__}
    for name in ("scipy", "graphblas", "sparseprop"):
        if name == "scipy" or name in have:
            try:
                from importlib.metadata import version

                versions[name] = version({"graphblas": "python-graphblas"}.get(name, name))
            except Exception:  # noqa: BLE001 - a version is informative only
                versions[name] = "?"
    return dict(setup=dict(threads=threads, clock=clock, repeats=repeats, seed=seed, versions=versions),
                missing=missing, shapes=out_shapes)
