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


SCRIPT = shutil.which("sparseforge", path=str(Path(sys.executable).parent))
CONFIG = "data:\n  name: digits\nmodel:\n  density: 0.5\ntrain:\n  epochs: 2\n  batch_size: 64\n  lr: 0.005\n"


def _train(argv, tmp_path, launcher=()):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *argv], env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def _epochs(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.skipif(SCRIPT is None, reason="the sparseforge console script is not installed")
def test_train_nproc_two_processes_from_a_config(tmp_path):
    """`sparseforge train --nproc 2` (torchrun --standalone underneath, gloo on CPU): config file, the data's
    input size, one run directory written by rank 0, every epoch's train metrics averaged over both ranks."""
    (tmp_path / "run.yaml").write_text(CONFIG)
    r = _train([SCRIPT, "train", "--config", "run.yaml", "--nproc", "2", "--run-dir", "d", "--threads", "1"],
               tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes (data parallel)" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout.count("test accuracy") == 1  # rank 0 only
    hist = _epochs(tmp_path / "d")
    assert [h["epoch"] for h in hist] == [1, 2] and all(h["world_size"] == 2 for h in hist)
    assert hist[-1]["val_acc"] > 0.5


@pytest.mark.slow
@pytest.mark.skipif(SCRIPT is None, reason="the sparseforge console script is not installed")
def test_train_under_torchrun_resumes(tmp_path):
    """The same command under torchrun itself (as on many nodes, with its rendezvous) resumes a run."""
    (tmp_path / "run.yaml").write_text(CONFIG)
    r = _train([SCRIPT, "train", "--config", "run.yaml", "--nproc", "2", "--run-dir", "d"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    first = _epochs(tmp_path / "d")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    r = _train(["-m", "sparseforge", "train", "--config", "run.yaml", "--epochs", "3", "--resume", "--run-dir", "d"],
               tmp_path, launcher=torchrun)
    assert r.returncode == 0, r.stderr[-3000:]
    hist = _epochs(tmp_path / "d")
    assert [h["epoch"] for h in hist] == [1, 2, 3] and hist[:2] == first
