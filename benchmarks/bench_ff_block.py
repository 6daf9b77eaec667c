"""Transformer feed-forward shapes with block patterns: one SparseLinear training step (forward, backward to
the input and the weights) vs nn.Linear, batch-major as a Transformer calls it, all timed in one interleaved
run (issue 16 target: >= 3x for 512 -> 2048 and 2048 -> 512 at 10%, 4096 tokens).

    .venv/bin/python benchmarks/bench_ff_block.py --threads 1 --clock cpu      # robust on a busy machine

Rows: nn.Linear, and SparseLinear on a block pattern (b = --block) and on the unstructured pattern of the same
family at the nearest density; ratio = nn.Linear time / time, GFLOP/s counts 3 products of 2 * edges * tokens.
"""

from __future__ import annotations

import argparse
import json

import torch

from sparseforge.nn import SparseLinear
from sparseforge.runs.timing import interleaved_times
from sparseforge.topology import block_pattern, structured, valid_out_degrees


def nearest_out_degree(n_in: int, n_out: int, density: float) -> int:
    """Out-degree of a left node whose density d_out / n_out is closest to ``density`` (valid for the shape)."""
    return min(valid_out_degrees(n_in, n_out), key=lambda d: abs(d / n_out - density))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--block", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fns, layers = {}, {}
    for n_in, n_out in ((512, 2048), (2048, 512)):
        b = a.block
        layers[(n_in, n_out, "nn.Linear")] = torch.nn.Linear(n_in, n_out)
        d_blk = b * nearest_out_degree(n_in // b, n_out // b, a.density)
        layers[(n_in, n_out, f"block b={b}")] = SparseLinear(block_pattern(n_in, n_out, d_blk, block=b, seed=0))
        layers[(n_in, n_out, "unstructured")] = SparseLinear(
            structured(n_in, n_out, nearest_out_degree(n_in, n_out, a.density), seed=0))
        x = torch.randn(a.tokens, n_in, requires_grad=True)
        g = torch.randn(a.tokens, n_out)
        for key, layer in layers.items():
            if key[:2] == (n_in, n_out):
                fns[key] = lambda layer=layer, x=x, g=g: layer(x).backward(g)
    t = interleaved_times(fns, a.repeats, warmup=1, clock=a.clock)
    rows = []
    for (n_in, n_out, name), layer in layers.items():
        dense = t[(n_in, n_out, "nn.Linear")]
        edges = n_in * n_out if isinstance(layer, torch.nn.Linear) else layer.pattern.edges
        s = t[(n_in, n_out, name)]
        rows.append(dict(shape=f"{n_in}->{n_out}", layer=name, density=edges / (n_in * n_out), train_ms=1e3 * s,
                         speedup=dense / s, gflops=3 * 2 * edges * a.tokens / s / 1e9))
    print(f"{a.tokens} tokens, {a.threads} thread(s), clock {a.clock}, best of {a.repeats}")
    print(f"{'shape':>10} {'layer':>13} {'density':>8} {'train ms':>9} {'x nn.Linear':>11} {'GFLOP/s':>8}")
    for r in rows:
        print(f"{r['shape']:>10} {r['layer']:>13} {100 * r['density']:7.2f}% {r['train_ms']:9.2f} {r['speedup']:11.2f} "
              f"{r['gflops']:8.1f}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
