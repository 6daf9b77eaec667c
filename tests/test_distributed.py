"""Data-parallel training (DDP over gloo on CPU): same accuracy as one process, identical replicas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sparseforge.train import load_checkpoint
from sparseforge.train.distributed import run_local, run_mlp, shard_indices

ROOT = Path(__file__).resolve().parents[1]
KW = dict(dataset="digits", net=[64, 32, 10], density=0.5, epochs=8, batch_size=64, lr=5e-3, seed=0)


def test_shards_cover_the_data_once_per_epoch():
    n, world = 103, 3
    for epoch in range(3):
        parts = [shard_indices(n, r, world, seed=0, epoch=epoch) for r in range(world)]
        allidx = torch.cat(parts)
        assert all(len(p) == n // world for p in parts)
        assert len(set(allidx.tolist())) == len(allidx)  # disjoint
    assert not torch.equal(shard_indices(n, 0, world, 0, 0), shard_indices(n, 0, world, 0, 1))  # re-dealt


def test_two_process_gloo_matches_one_process(tmp_path):
    single = run_mlp(**KW)
    ranks = run_local(2, **KW, run_dir=str(tmp_path))
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world"] == 2 for r in ranks)
    assert all(r["ranks_agree"] for r in ranks)
    assert ranks[0]["checksum"] == ranks[1]["checksum"]  # the replicas hold identical parameters
    assert ranks[0]["test_acc"] == ranks[1]["test_acc"]
    assert ranks[0]["params"] == single["params"]
    # same accuracy within noise (359 test digits: one standard error is about 1.2 points)
    assert abs(ranks[0]["test_acc"] - single["test_acc"]) <= 0.03, (ranks[0]["test_acc"], single["test_acc"])
    assert single["test_acc"] > 0.85
    # only rank 0 wrote the run directory, with a checkpoint loadable without DDP
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "result.json").exists()
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", check_settings=False).payload
    assert not any(k.startswith("module.") for k in ckpt["model"])


@pytest.mark.slow
def test_torchrun_entry_point(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    if not Path(torchrun).exists():
        pytest.skip("torchrun not found")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    r = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "sparseforge.train.distributed",
                        "--dataset", "digits", "--net", "64,32,10", "--density", "0.5", "--epochs", "5",
                        "--run-dir", str(tmp_path), "--print"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "distributed.json").read_text())
    assert res["world"] == 2 and res["ranks_agree"] and res["test_acc"] > 0.8
