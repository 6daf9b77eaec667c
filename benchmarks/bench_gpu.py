"""GPU bench: SparseLinear on the Triton kernels vs cuBLAS dense, torch CSR (cuSPARSE) and 2:4 semi-structured.

    .venv/bin/python benchmarks/bench_gpu.py                    # N=4096, batch 256, float16 and float32
    .venv/bin/python benchmarks/bench_gpu.py --n 2048 --batch 64 --dtypes float32

Times are CUDA-event medians (ms) over ``--repeats`` runs after a warm-up; every sparse output is checked
against the dense product of the same weights first. ``x`` columns are ratios against the best dense path of
the same run and dtype (nn.Linear on cuBLAS), forward and training step (forward + backward). torch CSR and
2:4 are forward only; 2:4 has its own density (50%) and runs only in half precision where torch supports it.
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F

from sparseforge.kernels import resolve_backend
from sparseforge.nn import SparseLinear
from sparseforge.studies.bench import _out_degree
from sparseforge.topology import structured
from sparseforge.topology.block import block


def cuda_ms(fn, repeats: int) -> float:
    """Median milliseconds of ``fn()`` on the current stream (CUDA events, one warm-up)."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def step(layer, x, gy):
    """One training step's products: forward and backward (grad input, grad weights, grad bias)."""
    def run():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).backward(gy)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--densities", default="0.1,0.05,0.01")
    ap.add_argument("--dtypes", default="float16,float32")
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA device here")
    n, batch, dev = a.n, a.batch, "cuda"
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, {n}->{n}, batch {batch}")
    for dtype in (getattr(torch, d) for d in a.dtypes.split(",")):
        torch.manual_seed(0)
        x = torch.randn(batch, n, device=dev, dtype=dtype, requires_grad=True)
        gy = torch.randn(batch, n, device=dev, dtype=dtype)
        dense = torch.nn.Linear(n, n, device=dev, dtype=dtype)
        with torch.no_grad():
            d_fwd = cuda_ms(lambda: dense(x), a.repeats)
        d_train = cuda_ms(step(dense, x, gy), a.repeats)
        rows = [("dense nn.Linear (cuBLAS)", 1.0, d_fwd, d_train)]
        try:  # 2:4 semi-structured: the dense weight pruned to 2 of every 4, forward only
            from torch.sparse import to_sparse_semi_structured
            mask = torch.tensor([1, 1, 0, 0], device=dev, dtype=torch.bool).tile(n, n // 4)
            w24 = to_sparse_semi_structured(dense.weight.detach() * mask)
            with torch.no_grad():
                torch.testing.assert_close(F.linear(x, w24), F.linear(x, dense.weight * mask), rtol=2e-2, atol=2e-1)
                rows.append(("2:4 semi-structured", 0.5, cuda_ms(lambda: F.linear(x, w24), a.repeats), None))
        except Exception as exc:  # older torch, fp32, GPU without sparse tensor cores: say why, keep going
            print(f"  2:4 semi-structured ({dtype}): n/a ({type(exc).__name__}: {str(exc)[:100]})")
        for rho in (float(r) for r in a.densities.split(",")):
            for name, pattern in (("structured", structured(n, n, _out_degree(n, rho), seed=0)),
                                  ("block16", block(n, n, 16 * _out_degree(n // 16, rho), block=16, seed=0))):
                layer = SparseLinear(pattern).to(device=dev, dtype=dtype)
                density = pattern.edges / (n * n)
                w = layer.to_dense()
                with torch.no_grad():
                    torch.testing.assert_close(layer(x), F.linear(x, w, layer.bias), rtol=2e-2, atol=2e-2)
                    s_fwd = cuda_ms(lambda: layer(x), a.repeats)
                rows.append((f"SparseLinear {name} [{resolve_backend(x.device, dtype)}]", density, s_fwd,
                             cuda_ms(step(layer, x, gy), a.repeats)))
                try:  # cuSPARSE CSR (no half-precision CSR mm on every build)
                    w_csr = w.to_sparse_csr()
                    xt = x.detach().t().contiguous()
                    torch.sparse.mm(w_csr, xt)
                    rows.append((f"torch CSR {name}", density, cuda_ms(lambda: torch.sparse.mm(w_csr, xt), a.repeats),
                                 None))
                except Exception as exc:
                    print(f"  torch CSR ({dtype}): n/a ({type(exc).__name__}: {str(exc)[:100]})")
        print(f"\n{dtype}: ratio = best dense of this run / contender (higher is faster)")
        print(f"{'contender':<38} {'density':>7} {'fwd ms':>8} {'x fwd':>6} {'train ms':>9} {'x train':>7}")
        for label, density, fwd, train in rows:
            t = f"{train:9.3f} {d_train / train:7.2f}" if train is not None else f"{'-':>9} {'-':>7}"
            print(f"{label:<38} {density:7.3f} {fwd:8.3f} {d_fwd / fwd:6.2f} {t}")


if __name__ == "__main__":
    main()
