"""`bench linear --device cuda`: the GPU table's code path (run here on the CPU with wall-clock timing:
checks, rows, ratios) and its refusal on a machine without CUDA, through the console script."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparseforge.errors import ConfigError
from sparseforge.studies.gpu_bench import gpu_table

EXE = str(Path(sys.executable).with_name("sparseforge"))


def test_table_rows_ratios_and_missing_contenders_on_cpu():
    res = gpu_table(n=64, batch=8, densities=(0.25,), dtypes=("float32", "bfloat16"), block=16, repeats=2,
                    device="cpu")
    for dtype in ("float32", "bfloat16"):
        rows = [r for r in res["rows"] if r["dtype"] == dtype]
        dense = rows[0]
        assert dense["contender"].startswith("dense") and dense["x_fwd"] == 1.0 and dense["x_train"] == 1.0
        sparse = {r["contender"].split(" [")[0]: r for r in rows if r["contender"].startswith("SparseLinear")}
        assert set(sparse) == {"SparseLinear structured", "SparseLinear block16"}
        for r in sparse.values():
            assert r["density"] == pytest.approx(0.25)  # 64 -> 64 realises 25% exactly (16 of 64)
            assert r["x_fwd"] == pytest.approx(dense["fwd_ms"] / r["fwd_ms"])
            assert r["x_train"] == pytest.approx(dense["train_ms"] / r["train_ms"])
    # 2:4 needs CUDA: its absence is a note, not a failure; torch CSR ran for float32 (forward only)
    assert any(n.startswith("2:4 semi-structured (float32): n/a") for n in res["notes"])
    csr = [r for r in res["rows"] if r["contender"].startswith("torch CSR") and r["dtype"] == "float32"]
    assert len(csr) == 2 and all(r["train_ms"] is None and r["x_train"] is None for r in csr)


def test_bad_dtype_and_missing_cuda_are_named():
    with pytest.raises(ConfigError, match=r"\['float8'\] not allowed"):
        gpu_table(n=64, batch=8, dtypes=("float8",), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cli_device_cuda_without_gpu_is_one_line(tmp_path):
    r = subprocess.run([EXE, "bench", "linear", "--device", "cuda", "--json", str(tmp_path / "g.json")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no CUDA device here" in r.stderr and not (tmp_path / "g.json").exists()
    r = subprocess.run([EXE, "bench", "linear", "--device", "gpu0"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "choose cpu, cuda or cuda:N" in r.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cli_gpu_table_on_cuda(tmp_path):
    out = tmp_path / "g.json"
    r = subprocess.run([EXE, "bench", "linear", "--device", "cuda", "--n", "1024", "--batch", "64",
                        "--densities", "0.1", "--repeats", "3", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(out.read_text())["rows"]
    assert any("[triton]" in row["contender"] for row in rows)
