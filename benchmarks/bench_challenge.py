"""Sparse DNN Graph Challenge inference and kernel table: prints tables and the JSON of the results.

    .venv/bin/python benchmarks/bench_challenge.py                      # challenge, N=1024, 120 layers
    .venv/bin/python benchmarks/bench_challenge.py --kernels --sweep    # + kernel table and batch sweep
"""

from __future__ import annotations

import argparse
import json

from sparseforge.studies.bench import batch_sweep, challenge, kernel_table


def table(rows: list[dict], title: str) -> str:
    cols = list(rows[0])
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [[fmt(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = [title, "  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurons", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=120)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--inputs", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--backend", default="auto", choices=["auto", "stock", "native"])
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"], help="cpu: this thread's CPU time (threads=1)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kernels", action="store_true", help="also the N=4096 kernel table")
    ap.add_argument("--sweep", action="store_true", help="also the batch/thread sweep")
    ap.add_argument("--json", help="write all results to this file")
    a = ap.parse_args()
    results = {}
    res = challenge(neurons=a.neurons, layers=a.layers, connections=a.connections, inputs=a.inputs, batch=a.batch,
                    threads=a.threads, backend=a.backend, clock=a.clock)
    results["challenge"] = res
    print(table(res["rows"], f"Graph Challenge inference, {res['setup']}"))
    print("check:", res["check"])
    if a.kernels:
        kt = kernel_table(threads=a.threads, repeats=a.repeats, clock=a.clock)
        results["kernels"] = kt
        print(f"\ndense (ms): {kt['dense']}")
        print(table(kt["rows"], f"kernels, {kt['setup']} (speedup vs best dense)"))
    if a.sweep:
        sw = batch_sweep(repeats=a.repeats, clock=a.clock)
        results["sweep"] = sw
        print(table(sw, "\nforward GFLOP/s vs batch and threads"))
    print(json.dumps(results, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
