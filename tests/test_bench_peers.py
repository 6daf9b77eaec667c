"""`sparseforge bench peers`: through the installed console script, with the optional peers (python-graphblas,
sparseprop) refused at import as when they are not installed, and with whatever this environment has."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseforge.studies.peers import CONTENDERS, PeerMismatch, check_outputs, missing_peers, random_rows

SCRIPT = shutil.which("sparseforge", path=os.path.dirname(sys.executable)) or shutil.which("sparseforge")
BLOCK_PEERS = textwrap.dedent("""
    import importlib.abc
    import sys

    class _Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("graphblas", "sparseprop"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Refuse())
""")
SMALL = ("bench", "peers", "--shapes", "small", "--threads", "1", "--repeats", "1", "--quiet")


def _run(*args: str, block: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if block is not None:
        (block / "sitecustomize.py").write_text(BLOCK_PEERS)
        env["PYTHONPATH"] = os.pathsep.join([str(block), env.get("PYTHONPATH", "")])
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=env, timeout=600)


def _check_table(r: subprocess.CompletedProcess, data: dict) -> None:
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert [(s["n_in"], s["n_out"], s["batch"]) for s in data["shapes"]] == [(64, 64, 8), (48, 20, 4)]
    for name in CONTENDERS:  # a row per contender in each shape's table
        assert r.stdout.count(name) >= 2, name
    assert r.stdout.count("check at density") == 3
    for sh in data["shapes"]:
        for row in sh["rows"]:
            if row["fwd_ms"] is not None:  # ratio = best dense / contender, from the same run's times
                assert row["ratio_fwd"] == pytest.approx(sh["best_dense_fwd_ms"] / row["fwd_ms"])
        for diffs in sh["check"].values():
            assert "torch CSR" in diffs and "scipy CSR" in diffs and max(diffs.values()) < 1e-4


def test_peers_missing_are_named_and_shown_as_dashes(tmp_path):
    r = _run(*SMALL, "--json", str(tmp_path / "p.json"), block=tmp_path)
    data = json.loads((tmp_path / "p.json").read_text())
    _check_table(r, data)
    assert "notice: graphblas is not installed (pip install python-graphblas)" in r.stderr
    assert "notice: sparseprop is not installed (pip install sparseprop)" in r.stderr
    assert data["missing"] == {"graphblas": "python-graphblas", "sparseprop": "sparseprop"}
    rows = [row for sh in data["shapes"] for row in sh["rows"] if row["contender"] in ("GraphBLAS", "SparseProp")]
    assert rows and all(row["fwd_ms"] is None and row["train_ms"] is None for row in rows)
    lines = [ln for ln in r.stdout.splitlines() if "GraphBLAS" in ln or "SparseProp" in ln]
    assert len(lines) == 4 and all("–" in ln and not any(c.isdigit() for c in ln) for ln in lines)


def test_peers_with_what_is_installed(tmp_path):
    r = _run(*SMALL, "--json", str(tmp_path / "p.json"))
    data = json.loads((tmp_path / "p.json").read_text())
    _check_table(r, data)
    missing = missing_peers()
    assert data["missing"] == missing
    for name, contender in (("graphblas", "GraphBLAS"), ("sparseprop", "SparseProp")):
        if name in missing:
            assert f"notice: {name} is not installed" in r.stderr
        else:  # installed: timed, and its output checked against sparseforge's
            assert all(contender in d for sh in data["shapes"] for d in sh["check"].values())
    if "sparseprop" not in missing:
        assert all(row["train_ms"] is not None for sh in data["shapes"] for row in sh["rows"]
                   if row["contender"] == "SparseProp")


@pytest.mark.parametrize("args, message", [
    (("--shapes", "huge"), "--shapes: 'huge' is not allowed; choose one of issue, small"),
    (("--clock", "cpu", "--threads", "2"), "--clock cpu times this thread only"),
    (("--threads", "0"), "--threads"),
])
def test_peers_bad_values_exit_2(args, message):
    r = _run("bench", "peers", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_random_rows_and_mismatch_detection():
    p = random_rows(200, 30, 0.1, seed=3)
    assert (p.in_degrees == 20).all() and p.density == pytest.approx(0.1)
    y = torch.randn(4, 30)
    ok = {"sparseforge layer(x)": lambda: y, "torch CSR": lambda: y.t().clone()}
    assert check_outputs(ok, 4) == {"sparseforge layer(x)": 0.0, "torch CSR": 0.0}
    wrong = y.t().clone()
    wrong[2, 1] += 0.01  # one product entry off
    with pytest.raises(PeerMismatch, match="torch CSR: output differs"):
        check_outputs({**ok, "torch CSR": lambda: wrong}, 4)
    dense = np.asarray(p.to_dense(), dtype=bool)
    assert dense.sum(axis=1).tolist() == [20] * 30
