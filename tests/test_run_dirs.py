"""Every long command over one run directory, through the installed console script: a changed setting is
refused (exit 2, one line naming the field), an unchanged rerun reuses what is there (files untouched), a
run killed with SIGKILL after its first checkpoint continues and finishes when run again, and a second
writer is refused naming the holder."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sparseforge.cli import app
from sparseforge.data import DatasetUnavailable, load_dataset
from sparseforge.runs.store import LOCK, RUN_JSON
from sparseforge.train import load_checkpoint
from sparseforge.train.checkpoint import previous_path

SF = str(Path(sys.executable).parent / "sparseforge")


def sf(*args, timeout=600):
    return subprocess.run([SF, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def _mnist():
    try:
        load_dataset("mnist", limit=1)
    except DatasetUnavailable:
        pytest.skip("MNIST not installed")


def _ssl_config(tmp_path):
    path = tmp_path / "ssl.yaml"
    path.write_text(yaml.safe_dump({
        "name": "t", "model": "lenet5", "data": {"name": "mnist", "limit": 96},
        "train": {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        "ssl": {"epochs": 1, "lr": 0.05, "finetune_epochs": 1},
        "variants": [{"name": "prox", "mode": "proximal", "filter": 3.0, "channel": 3.0}],
        "bench": {"batch": 4, "repeats": 1, "number": 1}, "export_onnx": False}))
    return path


# name: (arguments (without --run-dir), a changed setting, the field the refusal must name,
#        the report that a finished run writes, needs MNIST)
COMMANDS = {
    "train": (["train", "--net", "64,32,10", "--fan-out", "8,10", "--dataset", "digits", "--epochs", "2"],
              ["--lr", "0.01"], "train.lr 0.001 → 0.01", "result.json", False),
    "demo": (["demo", "--densities", "1,0.2", "--limit", "300", "--epochs", "1"],
             ["--seed", "5"], "seed 0 → 5", "report.md", True),
    "prune": (["prune", "--config", "prune_tiny", "--limit", "300", "--parts", "sweep"],
              ["--finetune-epochs", "1"], "finetune_epochs 2 → 1", "report.md", False),
    "ssl": (["ssl", "--config", "{ssl}"], ["--epochs", "2"], "train.epochs 1 → 2", "report.md", True),
    "hw fixed": (["hw", "fixed", "--limit", "300", "--test-limit", "100", "--epochs", "1", "--word-bits", "10",
                  "--int-bits", "3"], ["--lr-shift", "4"], "lr_shift 3 → 4", "report.md", True),
    "study": (["study", "junction_densities", "--setting", "tiny", "--seeds", "1"], ["--setting", "medium"],
              "setting \"tiny\" → \"medium\"", "report.md", False),
}


def _args(name, tmp_path, run_dir):
    base, change, field, report, mnist = COMMANDS[name]
    if mnist:
        _mnist()
    if "{ssl}" in base:
        base = [str(_ssl_config(tmp_path)) if a == "{ssl}" else a for a in base]
    return [*base, "--run-dir", run_dir], change, field, report


def _stamps(run_dir):
    """mtimes of everything a rerun must not touch: results and checkpoints."""
    files = [p for p in run_dir.rglob("*") if p.is_file()
             and (p.suffix == ".pt" or p.name == "result.json" or p.parent.name == "results")]
    assert files, f"no results or checkpoints in {run_dir}"
    return {p: p.stat().st_mtime_ns for p in files}


# train's kill test runs in the default suite (its other cases: test_train_run_dir_...); every command's
# full set takes 1-3 minutes each on a shared 2-core machine: `make test-all`
PER_COMMAND = [pytest.param(n, marks=pytest.mark.slow) for n in COMMANDS]
KILL = [n if n == "train" else pytest.param(n, marks=pytest.mark.slow) for n in COMMANDS]


@pytest.mark.parametrize("name", PER_COMMAND)
def test_changed_setting_is_refused_and_unchanged_rerun_reuses(tmp_path, name):
    run_dir = tmp_path / "run"
    args, change, field, report = _args(name, tmp_path, run_dir)
    r = sf(*args, "--quiet")
    assert r.returncode == 0, r.stderr
    assert (run_dir / report).exists() and (run_dir / RUN_JSON).exists() and not (run_dir / LOCK).exists()
    run_json, stamps = (run_dir / RUN_JSON).read_text(), _stamps(run_dir)

    r = sf(*args, *change, "--quiet", *(["--resume"] if name == "train" else []))
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert r.returncode == 2, r.stderr
    assert len(errors) == 1 and field in errors[0] and "--overwrite" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert (run_dir / RUN_JSON).read_text() == run_json and _stamps(run_dir) == stamps  # nothing touched

    r = sf(*args, "--quiet", *(["--resume"] if name == "train" else []))
    assert r.returncode == 0, r.stderr
    assert _stamps(run_dir) == stamps  # reused: no result rewritten, no checkpoint retrained



def test_train_run_dir_from_start_to_damaged_checkpoints(tmp_path):
    """The train command's cases of issue 12, in one run directory. Runs that must succeed go in-process
    (fast); every refusal goes through the console script: exit 2, one error line, nothing rewritten."""
    run = tmp_path / "run"
    args, _, _, _ = _args("train", tmp_path, run)
    args = [str(a) for a in args]

    def ok(*extra):
        r = CliRunner().invoke(app, [*args, *extra])
        assert r.exit_code == 0, r.output
        return r.output

    def refused(*extra, needle):
        r = sf(*args, *extra, "--quiet")
        errors = [line for line in r.stderr.splitlines() if line.startswith("error")]
        assert r.returncode == 2 and len(errors) == 1 and needle in errors[0], r.stderr
        assert "Traceback" not in r.stderr

    ok("--quiet")
    spec, run_json, stamps = (run / "spec.json").read_text(), (run / RUN_JSON).read_text(), _stamps(run)
    refused(needle="pass --resume to continue it")  # no silent retraining over a run
    refused("--resume", "--net", "64,16,10", needle="model.net [64,32,10] → [64,16,10]")
    refused("--resume", "--limit", "200", needle="data.limit null → 200")  # no mixed data
    assert (run / "spec.json").read_text() == spec and (run / RUN_JSON).read_text() == run_json
    assert _stamps(run) == stamps
    ok("--resume", "--quiet")  # unchanged: reused, nothing retrained or rewritten
    assert _stamps(run) == stamps

    ckpt = run / "checkpoint.pt"
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 2000] = bytes(2000)  # 2000 bytes zeroed
    ckpt.write_bytes(bytes(raw))
    out = ok("--resume", "--epochs", "3")  # the previous checkpoint (epoch 1) is used, and said so
    assert "sha256" in out and "resumed from the previous checkpoint" in out and "resumed after epoch 1 of 3" in out
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())] == [1, 2, 3]
    for p in (ckpt, previous_path(ckpt)):
        p.write_bytes(p.read_bytes()[:100])  # both truncated: refused
    refused("--resume", "--epochs", "4", needle="truncated")
    ok("--overwrite", "--lr", "0.01", "--quiet")  # starts again under the new settings
    assert json.loads((run / RUN_JSON).read_text())["settings"]["train"]["lr"] == 0.01


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    tmp_path = tmp_path / "run"
    args, _, _, _ = _args("train", tmp_path, tmp_path)
    long = [a if a != "2" else "300" for a in args]
    first = subprocess.Popen([SF, *map(str, long), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(first, lambda: (tmp_path / LOCK).exists())
        r = sf(*long, "--resume", "--quiet")
        assert r.returncode == 2 and f"in use by pid {first.pid}" in r.stderr and "train" in r.stderr, r.stderr
    finally:
        first.kill()
        first.wait()


def _wait_for(proc, cond, timeout=300):
    t0 = time.monotonic()
    while not cond():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before the awaited file appeared")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("timed out waiting for the run")
        time.sleep(0.01)


# name: (longer arguments, so that a kill after the first checkpoint lands mid-run)
LONGER = {
    "train": ["--epochs", "5", "--batch-size", "32"],
    "demo": ["--densities", "1,0.5,0.2", "--epochs", "3"],
    "prune": [],
    "ssl": ["--epochs", "2"],
    "hw fixed": ["--epochs", "3"],
    "study": [],
}


@pytest.mark.parametrize("name", KILL)
def test_killed_run_continues_and_finishes(tmp_path, name):
    run_dir = tmp_path / "run"
    args, _, _, report = _args(name, tmp_path, run_dir)
    args = [*args, *LONGER[name]]
    proc = subprocess.Popen([SF, *map(str, args), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(proc, lambda: any(run_dir.rglob("checkpoint.pt")))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / report).exists(), "killed too late: the run had finished"
    assert (run_dir / LOCK).exists()  # it died holding the lock: a stale lock the rerun takes over
    r = sf(*args, *(["--resume"] if name == "train" else []))
    assert r.returncode == 0, r.stderr
    assert (run_dir / report).exists() and not (run_dir / LOCK).exists()
    if name != "hw fixed":  # the first fit() of each has several epochs: killed inside it, it resumes there
        assert "resumed after epoch" in r.stderr, r.stderr
    for ckpt in run_dir.rglob("checkpoint.pt"):  # every checkpoint is whole and checks out
        assert load_checkpoint(ckpt, check_settings=False).skipped == []
