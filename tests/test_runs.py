"""The run store: settings hash and diff, atomic keyed results, one writer (lock, stale takeover),
checksummed checkpoints (zeroed, truncated, empty refused; the previous good one used), timing, report,
progress."""

import hashlib
import io as _io
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from sparseforge.errors import ConfigError, RunError
from sparseforge.runs.progress import Progress
from sparseforge.runs.report import markdown_table, write_report
from sparseforge.runs.store import LOCK, RUN_JSON, RunStore
from sparseforge.runs.timing import best_time, interleaved_times
from sparseforge.train.checkpoint import (ABSENT, describe_diff, load_checkpoint, previous_path, save_checkpoint,
                                          settings_diff, settings_hash)

SETTINGS = {"train": {"epochs": 1, "lr": 0.001}, "seed": 0, "densities": [1.0, 0.1]}


# ---------------------------------------------------------------------------------------------- hash
def test_hash_is_sha256_of_sorted_json_and_ignores_key_order():
    reordered = {"densities": [1.0, 0.1], "seed": 0, "train": {"lr": 0.001, "epochs": 1}}
    expected = hashlib.sha256(json.dumps(SETTINGS, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert settings_hash(SETTINGS) == settings_hash(reordered) == expected
    assert settings_hash({**SETTINGS, "seed": 1}) != expected


def test_hash_takes_dataclasses_and_tuples_like_their_json():
    @dataclass(frozen=True)
    class Cfg:
        densities: tuple = (1.0, 0.1)
        seed: int = 0

    assert settings_hash(Cfg()) == settings_hash({"seed": 0, "densities": [1.0, 0.1]})


def test_diff_names_nested_fields_old_and_new():
    new = {"train": {"epochs": 3, "lr": 0.001}, "seed": 5, "densities": [1.0, 0.1], "limit": 100}
    assert settings_diff(SETTINGS, new) == [("limit", ABSENT, 100),
                                            ("seed", 0, 5), ("train.epochs", 1, 3)]


def test_diff_descends_into_lists_of_dicts_only():
    old = {"variants": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.2}], "densities": [1.0, 0.5]}
    new = {"variants": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.3}], "densities": [1.0, 0.2]}
    assert settings_diff(old, new) == [("densities", [1.0, 0.5], [1.0, 0.2]), ("variants.1.lr", 0.2, 0.3)]
    assert describe_diff(settings_diff(old, new)) == "densities [1.0,0.5] → [1.0,0.2], variants.1.lr 0.2 → 0.3"


# ---------------------------------------------------------------------------------------------- store
def test_store_writes_run_json_and_refuses_other_settings_in_one_line(tmp_path):
    with RunStore(tmp_path, SETTINGS, command="demo") as s:
        assert not s.existed
    run = json.loads((tmp_path / RUN_JSON).read_text())
    assert run["settings_hash"] == settings_hash(SETTINGS) and run["settings"] == SETTINGS
    with pytest.raises(ConfigError) as e:
        RunStore(tmp_path, {**SETTINGS, "seed": 5, "train": {"epochs": 3, "lr": 0.001}}, command="demo").open()
    msg = str(e.value)
    assert "\n" not in msg and "seed 0 → 5" in msg and "train.epochs 1 → 3" in msg
    assert "--run-dir" in msg and "--overwrite" in msg and "lr" not in msg
    assert json.loads((tmp_path / RUN_JSON).read_text()) == run  # nothing rewritten
    assert not (tmp_path / LOCK).exists()  # the refused opening released its lock
    with RunStore(tmp_path, SETTINGS, command="demo") as s:  # same settings: reopened
        assert s.existed


def test_store_refuses_another_command_and_foreign_directories(tmp_path):
    RunStore(tmp_path / "a", SETTINGS, command="demo").open().close()
    with pytest.raises(ConfigError, match="holds a run of 'demo', not 'prune'"):
        RunStore(tmp_path / "a", SETTINGS, command="prune").open()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="no run.json"):
            RunStore(tmp_path / "b", SETTINGS, command="demo", overwrite=overwrite).open()
    assert (tmp_path / "b" / "precious.txt").read_text() == "mine"


def test_temporary_files_of_a_killed_writer_do_not_make_a_foreign_directory(tmp_path):
    (tmp_path / ".run.lock.x1.tmp").write_text("")  # killed between writing a lock candidate and linking it
    with RunStore(tmp_path, SETTINGS, command="demo") as s:
        assert not s.existed
    (tmp_path / RUN_JSON).unlink()
    (tmp_path / "notes.txt").write_text("")  # a real file: not a run directory
    with pytest.raises(ConfigError, match="no run.json"):
        RunStore(tmp_path, SETTINGS, command="demo").open()


def test_mutable_fields_may_change_and_are_recorded(tmp_path):
    RunStore(tmp_path, SETTINGS, command="train").open().close()
    longer = {**SETTINGS, "train": {"epochs": 5, "lr": 0.001}}
    with RunStore(tmp_path, longer, command="train", mutable=("train.epochs",)) as s:
        assert s.existed
    assert json.loads((tmp_path / RUN_JSON).read_text())["settings"]["train"]["epochs"] == 5
    faster = {**longer, "train": {"epochs": 5, "lr": 0.01}}  # a whole section may be mutable, not its siblings
    RunStore(tmp_path, faster, command="train", mutable=("train",)).open().close()
    with pytest.raises(ConfigError, match="seed 0 → 1"):
        RunStore(tmp_path, {**faster, "seed": 1}, command="train", mutable=("train", "see")).open()


def test_refuse_existing_even_with_the_same_settings(tmp_path):
    RunStore(tmp_path, SETTINGS, command="train").open().close()
    before = (tmp_path / RUN_JSON).read_text()
    longer = {**SETTINGS, "train": {"epochs": 5, "lr": 0.001}}
    with pytest.raises(ConfigError, match="already holds a 'train' run; pass --resume"):
        RunStore(tmp_path, longer, command="train", mutable=("train.epochs",),
                 refuse_existing="pass --resume").open()
    assert (tmp_path / RUN_JSON).read_text() == before
    with RunStore(tmp_path, SETTINGS, command="train", overwrite=True, refuse_existing="pass --resume") as s:
        assert not s.existed


def test_overwrite_clears_the_run(tmp_path):
    with RunStore(tmp_path, SETTINGS, command="demo") as s:
        s.save_result("fc", {"acc": 0.9})
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "checkpoint.pt").write_bytes(b"x")
    other = {**SETTINGS, "seed": 7}
    with RunStore(tmp_path, other, command="demo", overwrite=True) as s:
        assert s.result("fc") is None and not (tmp_path / "sub").exists()
    assert json.loads((tmp_path / RUN_JSON).read_text())["settings"]["seed"] == 7


def test_results_are_atomic_and_keyed_by_settings(tmp_path):
    with RunStore(tmp_path, SETTINGS, command="demo") as s:
        s.save_result("rho10", {"acc": 0.5})
        s.save_result("v1", {"acc": 0.7}, settings={"lambda": 0.1})
        assert s.result("rho10") == {"acc": 0.5} and s.result("missing") is None
        assert s.result("v1", settings={"lambda": 0.1}) == {"acc": 0.7}
        assert s.result("v1", settings={"lambda": 0.2}) is None  # other sub-settings: not reused
        assert s.results() == ["rho10"]
        with pytest.raises(ValueError, match="plain file name"):
            s.save_result("../escape", {})
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    # a result copied in from a run with other settings is not taken
    other = tmp_path.parent / (tmp_path.name + "_other")
    with RunStore(other, {**SETTINGS, "seed": 1}, command="demo") as s:
        (other / "results").mkdir(exist_ok=True)
        (other / "results" / "rho10.json").write_bytes((tmp_path / "results" / "rho10.json").read_bytes())
        assert s.result("rho10") is None
    # a half-written (damaged) result is never taken
    (tmp_path / "results" / "rho10.json").write_text('{"name": "rho10", "ke')
    with RunStore(tmp_path, SETTINGS, command="demo") as s:
        assert s.result("rho10") is None


def test_save_result_needs_the_lock(tmp_path):
    with pytest.raises(RuntimeError, match="open"):
        RunStore(tmp_path, SETTINGS, command="demo").save_result("x", 1)


def test_second_writer_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = {"pid": holder.pid, "host": socket.gethostname(), "command": "demo", "argv": "sparseforge demo",
                "started": "now"}
        (tmp_path / LOCK).write_text(json.dumps(lock))
        with pytest.raises(RunError) as e:
            RunStore(tmp_path, SETTINGS, command="demo").open()
        assert f"in use by pid {holder.pid} on {socket.gethostname()}" in str(e.value) and "demo" in str(e.value)
        assert json.loads((tmp_path / LOCK).read_text()) == lock  # the holder's lock is left alone
    finally:
        holder.kill()
        holder.wait()
    # its process is dead now: the stale lock is taken over
    with RunStore(tmp_path, SETTINGS, command="demo"):
        assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / LOCK).exists()


def test_lock_of_a_live_process_in_this_process_is_refused_too(tmp_path):
    with RunStore(tmp_path, SETTINGS, command="demo"):
        with pytest.raises(RunError, match=f"pid {os.getpid()}"):
            RunStore(tmp_path, SETTINGS, command="demo").open()


def test_lock_released_on_exception(tmp_path):
    with pytest.raises(KeyError):
        with RunStore(tmp_path, SETTINGS, command="demo"):
            assert (tmp_path / LOCK).exists()
            raise KeyError("boom")
    assert not (tmp_path / LOCK).exists()


def test_lock_on_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "command": "prune"}))
    with pytest.raises(RunError, match="elsewhere.example"):
        RunStore(tmp_path, SETTINGS, command="prune").open()


# ---------------------------------------------------------------------------------------------- checkpoints
PAYLOAD = {"w": torch.arange(4000, dtype=torch.float32), "epoch": 3}


def _saved(tmp_path, n=1):
    path = tmp_path / "checkpoint.pt"
    for k in range(n):
        save_checkpoint(path, {**PAYLOAD, "epoch": k + 1}, settings=SETTINGS)
    return path


def test_checkpoint_round_trip_and_keeps_the_last_two(tmp_path):
    path = _saved(tmp_path, n=3)
    got = load_checkpoint(path, settings=SETTINGS)
    assert got.path == path and got.skipped == [] and got.payload["epoch"] == 3
    assert torch.equal(got.payload["w"], PAYLOAD["w"])
    assert load_checkpoint(previous_path(path), settings=SETTINGS).payload["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]
    assert load_checkpoint(tmp_path / "none.pt") is None


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "truncated_header", "empty", "flipped"])
def test_damaged_checkpoint_is_refused_with_a_message(tmp_path, damage):
    path = _saved(tmp_path)
    raw = bytearray(path.read_bytes())
    if damage == "zeroed":
        raw[len(raw) // 2 : len(raw) // 2 + 2000] = bytes(2000)
    elif damage == "truncated":
        raw = raw[: len(raw) - 100]
    elif damage == "truncated_header":
        raw = raw[:40]
    elif damage == "empty":
        raw = bytearray()
    else:
        raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(RunError) as e:
        load_checkpoint(path, settings=SETTINGS)
    expected = {"zeroed": "sha256", "truncated": "truncated", "truncated_header": "truncated", "empty": "empty",
                "flipped": "sha256"}[damage]
    assert expected in str(e.value) and str(path) in str(e.value) and "--overwrite" in str(e.value)


def test_damaged_latest_falls_back_to_the_previous_and_says_so(tmp_path):
    path = _saved(tmp_path, n=2)
    path.write_bytes(path.read_bytes()[:-50])
    got = load_checkpoint(path, settings=SETTINGS)
    assert got.payload["epoch"] == 1 and got.path == previous_path(path)
    assert len(got.skipped) == 1 and "truncated" in got.skipped[0]


def test_checkpoint_under_other_settings_names_the_fields(tmp_path):
    path = _saved(tmp_path)
    with pytest.raises(ConfigError, match="seed 0 → 1"):
        load_checkpoint(path, settings={**SETTINGS, "seed": 1})


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pt"
    buf = _io.BytesIO()
    torch.save(PAYLOAD, buf)
    path.write_bytes(buf.getvalue())  # a bare torch.save file: no header, no checksum
    with pytest.raises(RunError, match="no header"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------- helpers
def test_timing_takes_the_minimum_per_call_and_interleaves():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    t = interleaved_times(fns, repeats=3, warmup=1, number=2)
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 3 and set(t) == {"a", "b"}
    assert all(0 <= v < 0.1 for v in t.values())
    ticks = iter(range(100))
    clock_calls = []

    import sparseforge.runs.timing as timing

    def fake_clock(name="wall"):
        return lambda: clock_calls.append(1) or next(ticks) ** 2  # strictly growing gaps: first round is min

    orig = timing.timer
    timing.timer = fake_clock
    try:
        assert best_time(lambda: None, repeats=3, warmup=0, number=1) == 1  # 1-0, 9-4, 25-16: min is 1
    finally:
        timing.timer = orig
    with pytest.raises(ValueError, match="clock"):
        best_time(lambda: None, clock="sundial")


def test_report_writes_tables_figures_then_markdown(tmp_path):
    order = []

    def figure(path):
        path.write_bytes(b"\x89PNG")
        order.append(path.name)

    rows = [{"rho": 0.1, "acc": 0.9, "label": "a"}, {"rho": 1.0, "acc": None, "label": "fc"}]
    paths = write_report(tmp_path, "# r\n\n" + markdown_table(rows, fmt={"rho": lambda v: f"{100 * v:g}%"}),
                         tables={"table.csv": rows}, figures={"fig.png": figure}, data={"rows.json": rows})
    assert [p.name for p in paths] == ["table.csv", "rows.json", "fig.png", "report.md"]
    md = (tmp_path / "report.md").read_text()
    assert "| rho | acc | label |\n|---:|---:|---|\n| 10% | 0.9 | a |\n| 100% |  | fc |" in md
    assert (tmp_path / "table.csv").read_text().splitlines()[0] == "rho,acc,label"
    assert json.loads((tmp_path / "rows.json").read_text()) == rows and order == ["fig.png"]


def test_progress_prints_plain_lines_off_a_tty_and_nothing_when_quiet():
    class State:
        notes = ["checkpoint x is damaged"]
        resumed_from = 2
        config = type("C", (), {"epochs": 3})
        metrics = dict(epoch=3, train_loss=0.5, train_acc=0.9, val_loss=0.6, val_acc=0.8, epoch_time_s=1.0)

    buf = _io.StringIO()
    p = Progress("fc", stream=buf)
    p.on_train_begin(State)
    p.on_epoch_begin(State)  # no bar off a TTY
    p.on_epoch_end(State)
    p.step(2, 5, "rho10")
    assert buf.getvalue().splitlines() == ["fc checkpoint x is damaged", "fc resumed after epoch 2 of 3",
                                           "fc epoch   3/3: train loss 0.5000 acc 90.00% | val loss 0.6000 "
                                           "acc 80.00% | 1.00 s", "fc [2/5] rho10"]
    quiet = _io.StringIO()
    q = Progress(stream=quiet, enabled=False)
    q.on_train_begin(State)
    q.on_epoch_end(State)
    q.step(1, 1)
    assert quiet.getvalue() == "checkpoint x is damaged\n"  # warnings are shown even when quiet


def test_atomic_files_get_the_mode_open_would_give_them(tmp_path):
    """mkstemp's 0600 must not leak into results: a finished file is readable as the umask allows."""
    from sparseforge import io as sfio

    old = os.umask(0o022)
    try:
        open(tmp_path / "plain.txt", "w").close()
        expected = os.stat(tmp_path / "plain.txt").st_mode & 0o777
    finally:
        os.umask(old)
    path = sfio.write_json(tmp_path / "r" / "a.json", {"x": 1})
    assert os.stat(path).st_mode & 0o777 == sfio.FILE_MODE
    assert sfio.FILE_MODE == 0o666 & ~old and (old != 0o022 or expected == 0o644 == sfio.FILE_MODE)
