"""SparseLinear vs the dense paths at N x N (the core benchmark): prints the table and the JSON.

    .venv/bin/python benchmarks/bench_linear.py                       # N=4096, batch 256, 2 threads
    .venv/bin/python benchmarks/bench_linear.py --threads 1 --clock cpu   # robust on a busy machine

Same as ``sparseforge bench linear``; ratios are against the best dense path of the same run.
"""

from __future__ import annotations

import argparse
import json

from sparseforge.studies.bench import kernel_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--densities", default="1,0.5,0.2,0.1,0.05,0.01")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    a = ap.parse_args()
    res = kernel_table(n=a.n, batch=a.batch, densities=[float(d) for d in a.densities.split(",")],
                       threads=a.threads, repeats=a.repeats, clock=a.clock)
    print("dense (ms):", json.dumps(res["dense"]))
    print(f"{'pattern':>10} {'density':>8} {'backend':>7} {'fwd ms':>8} {'train ms':>9} {'x fwd':>6} {'x train':>7}")
    for r in res["rows"]:
        print(f"{r['pattern']:>10} {100 * r['density']:7.2f}% {r['backend']:>7} {r['fwd_ms']:8.2f} "
              f"{r['train_ms']:9.2f} {r['speedup_fwd']:6.2f} {r['speedup_train']:7.2f}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
