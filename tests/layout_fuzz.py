"""Fuzz of corrupted sparse layouts, run in a child process by test_layout_fuzz.py (a crash kills only it).

Each case takes a valid SparseLayout and corrupts one field (an index out of range, a broken indptr, a false
group claim, a transpose permutation that is not one, a wrong dtype/shape, ...) through
``dataclasses.replace``. A case passes when building the layout raises ValueError, or (when the corruption
happened to leave a valid layout) every op on it equals the dense float64 reference. Raw native-op calls
with inconsistent sizes must raise RuntimeError. Prints one JSON line of counts; exit 0 when all passed.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import torch

from sparseforge.kernels import SparseLayout, native, sparse_inference_fm, sparse_matmul_fm, use_backend
from sparseforge.topology import Pattern, random_uniform, structured
from sparseforge.topology.grouped import grouped

INDEX_FIELDS = ("indptr", "indices", "t_indices", "t_offsets", "t_perm", "t_indptr")


def dense(layout: SparseLayout, values: torch.Tensor) -> torch.Tensor:
    rows = torch.repeat_interleave(torch.arange(layout.n_out), layout.indptr.diff())
    w = torch.zeros(layout.n_out, layout.n_in, dtype=torch.float64)
    w[rows, layout.indices] = values.double()
    return w


def corrupt(layout: SparseLayout, rng: np.random.Generator) -> dict:
    """Field overrides for one corruption of ``layout``."""
    kind = rng.integers(0, 12)
    name = INDEX_FIELDS[rng.integers(0, len(INDEX_FIELDS))]
    t = getattr(layout, name).clone()
    if kind == 0 and t.numel():  # one entry out of range (large, negative, or just past the end)
        t[rng.integers(0, t.numel())] = int(rng.choice([-1, -(2**40), layout.n_in, layout.n_out, 2**40, t.numel()]))
        return {name: t}
    if kind == 1 and t.numel() > 1:  # swap two entries
        i, j = rng.choice(t.numel(), 2, replace=False)
        t[[i, j]] = t[[j, i]]
        return {name: t}
    if kind == 2:  # truncated or extended
        return {name: t[:-1] if rng.random() < 0.5 or not t.numel() else torch.cat([t, t[-1:]])}
    if kind == 3:
        return {name: t.to(torch.int32)}
    if kind == 4:
        return {name: t.double()}
    if kind == 5:
        return {name: t.view(1, -1)}
    if kind == 6:  # claim a group the rows do not have
        return {"group": int(rng.choice([2, 4, 8, 3, 0, -4]))}
    if kind == 7:
        return {"t_group": int(rng.choice([2, 4, 8, 16]))}
    if kind == 8:  # sizes that do not fit the arrays
        return {str(rng.choice(["n_in", "n_out"])): int(rng.choice([0, -1, 1, layout.n_in + 1, layout.n_out - 1]))}
    if kind == 9:  # an ELL view of the wrong shape, or one claimed for a ragged pattern
        return {"ell": layout.indices[: layout.n_out].view(layout.n_out, 1) if layout.edges >= layout.n_out
                else layout.indices.view(1, -1)}
    if kind == 10 and layout.edges > 1:  # a transpose permutation with a repeated entry
        perm = layout.t_perm.clone()
        perm[0] = perm[1]
        return {"t_perm": perm}
    if kind == 11:
        return {name: "not a tensor"}
    return {"indptr": layout.indptr.flip(0)}


def check_ops(layout: SparseLayout, rng: np.random.Generator, backends: list[str]) -> None:
    """Every op on a layout that was accepted equals the dense float64 reference (raises AssertionError)."""
    values = torch.as_tensor(rng.standard_normal(layout.edges))
    x = torch.as_tensor(rng.standard_normal((layout.n_in, 5)), dtype=torch.float64).requires_grad_()
    g = torch.as_tensor(rng.standard_normal((layout.n_out, 5)))
    w = dense(layout, values)
    for backend in backends:
        with use_backend(backend):
            v = values.clone().requires_grad_()
            y = sparse_matmul_fm(x, v, layout)
            y.backward(g)
            rows = torch.repeat_interleave(torch.arange(layout.n_out), layout.indptr.diff())
            torch.testing.assert_close(y, w @ x.detach())
            torch.testing.assert_close(x.grad, w.t() @ g)
            torch.testing.assert_close(v.grad, (g @ x.detach().t())[rows, layout.indices])
            torch.testing.assert_close(sparse_inference_fm(x.detach(), values, layout, clamp=(0.0, 1.0)),
                                       (w @ x.detach()).clamp(0, 1))
            x.grad = None


def raw_native_calls(layout: SparseLayout, rng: np.random.Generator) -> int:
    """Native ops called directly with inconsistent sizes: each must raise RuntimeError. Returns the count."""
    ops = torch.ops.sparseforge
    x = torch.randn(layout.n_in, 4)
    v = torch.randn(layout.edges)
    gy = torch.randn(layout.n_out, 4)
    bad = [
        lambda: ops.spmm(layout.indptr, layout.indices, v[:-1], x, 1),
        lambda: ops.spmm(layout.indptr[:-1], layout.indices, v, x, 1),
        lambda: ops.spmm(layout.indptr.flip(0), layout.indices, v, x, 1),
        lambda: ops.spmm(layout.indptr, layout.indices, v, x, 3),
        lambda: ops.spmm(layout.indptr, layout.indices, v, x.t(), 1),
        lambda: ops.spmm(layout.indptr, layout.indices, v, x, 1, torch.randn(layout.n_out + 1)),
        lambda: ops.spmm(layout.t_indptr, layout.t_indices, v, gy, 1, None, None, None, layout.t_perm[:-1]),
        lambda: ops.spmm(layout.indptr.int(), layout.indices, v, x, 1),
        lambda: ops.sddmm(layout.indptr, layout.indices, gy[:-1], x, 1),
        lambda: ops.sddmm(layout.indptr, layout.indices, gy, x.double(), 1),
        lambda: ops.sddmm(layout.indptr[:-1], layout.indices, gy, x, 1),
    ]
    for call in bad:
        try:
            call()
        except RuntimeError:
            continue
        raise AssertionError("a raw native call with inconsistent sizes returned instead of raising")
    return len(bad)


def main(cases: int) -> int:
    rng = np.random.default_rng(0)
    bases = [structured(48, 40, 5, seed=1), random_uniform(37, 29, density=0.2, seed=2), grouped(40, 32, 8, group=4, seed=3),
             Pattern.from_dense(np.eye(6, 9, dtype=bool))]
    layouts = [SparseLayout.from_pattern(p) for p in bases]
    backends = ["stock"] + (["native"] if native.available() else [])
    counts = {"tried": 0, "refused": 0, "accepted_and_correct": 0, "raw_native_refused": 0, "failures": []}
    for i in range(cases):
        layout = layouts[i % len(layouts)]
        change = corrupt(layout, rng)
        counts["tried"] += 1
        try:
            broken = dataclasses.replace(layout, **change)
        except ValueError:
            counts["refused"] += 1
            continue
        except Exception as exc:  # anything but ValueError is a failure of the door
            counts["failures"].append(f"case {i} {sorted(change)}: {type(exc).__name__}: {exc}")
            continue
        try:
            check_ops(broken, rng, backends)
            counts["accepted_and_correct"] += 1
        except Exception as exc:
            counts["failures"].append(f"case {i} {sorted(change)} accepted but ops gave: {type(exc).__name__}: {exc}")
    if native.available():
        for layout in layouts:
            counts["raw_native_refused"] += raw_native_calls(layout, rng)
    print(json.dumps(counts))
    return 1 if counts["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 400))
