"""The command line: tables, errors as one clear line, config validation, the demo end to end (tiny)."""

import json
import subprocess
import sys

import pytest
import yaml
from cli_runner import BoundaryRunner

from sparseforge.cli import app
from sparseforge.config import ConfigError, RunSpec, load_yaml, parse

runner = BoundaryRunner()


def run_cli(*args):
    """Run the real console entry point (errors -> exit 2 with one line on stderr)."""
    return subprocess.run([sys.executable, "-m", "sparseforge.cli", *args], capture_output=True, text=True, timeout=600)


def test_topology_table_reproduces_seed():
    r = runner.invoke(app, ["topology", "--net", "784,112,10", "--fan-out", "42,10", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [j["d_in"] for j in data["junctions"]] == [294, 112]
    assert round(100 * data["rho_net"], 1) == 38.3


def test_topology_error_is_one_clear_line():
    r = run_cli("topology", "--net", "100,30,10", "--fan-out", "4,10")
    assert r.returncode == 2
    assert "error:" in r.stderr and "junction 1" in r.stderr and "3 or 6" in r.stderr
    assert "Traceback" not in r.stderr


def test_topology_block_family():
    r = runner.invoke(app, ["topology", "--net", "64,32,16", "--fan-out", "16,8", "--family", "block", "--block", "8",
                            "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["family"] == "block" and [j["d_in"] for j in data["junctions"]] == [32, 16]
    r = run_cli("topology", "--net", "64,32", "--fan-out", "12", "--family", "block", "--block", "8")
    assert r.returncode == 2 and "d_out = 8 or 16" in r.stderr and "Traceback" not in r.stderr


def test_bench_linear_tiny_run_and_bad_block():
    r = run_cli("bench", "linear", "--n", "64", "--batch", "8", "--densities", "0.25", "--group-densities", "",
                "--block-densities", "0.25", "--threads", "1", "--repeats", "1", "--no-compile")
    assert r.returncode == 0, r.stderr
    assert "block" in r.stdout and "fwd_bm_ms" in r.stdout
    r = run_cli("bench", "linear", "--block", "5")
    assert r.returncode == 2 and "--block: 5 is not allowed; choose one of 4, 8, 16" in r.stderr
    assert "Traceback" not in r.stderr


def test_bench_latency_tiny_run_and_bad_sparsity(tmp_path):
    r = run_cli("bench", "latency", "--sizes", "20,10,5", "--sparsity", "0.5", "--batches", "1,3", "--repeats", "1",
                "--calls", "2", "--json", str(tmp_path / "lat.json"))
    assert r.returncode == 0, r.stderr
    assert "speedup" in r.stdout and "sparse_layers_us" in r.stdout
    data = json.loads((tmp_path / "lat.json").read_text())
    assert [row["batch"] for row in data["rows"]] == [1, 3] and all(len(row["sparse_layer_us"]) == 2 for row in data["rows"])
    for argv, needle in [(["--sparsity", "1"], "--sparsity: must be below 1"), (["--sizes", "784"], "at least two"),
                         (["--batches", "0"], "--batches"), (["--clock", "cpu", "--threads", "2"], "--threads 1")]:
        r = run_cli("bench", "latency", *argv)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_bench_ff_tiny_run_and_bad_flags(tmp_path):
    r = run_cli("bench", "ff", "--tokens", "16", "--repeats", "1", "--quiet", "--json", str(tmp_path / "ff.json"))
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "ff.json").read_text())["rows"]
    assert [(row["shape"], row["layer"]) for row in rows] == [
        (shape, layer) for shape in ("512->2048", "2048->512") for layer in ("nn.Linear", "block b=8", "unstructured")]
    for shape in ("512->2048", "2048->512"):
        dense, blk, unstr = [row for row in rows if row["shape"] == shape]
        assert dense["speedup"] == 1.0 and dense["density"] == 1.0
        assert blk["speedup"] == pytest.approx(dense["train_ms"] / blk["train_ms"])
        assert abs(blk["density"] - 0.1) < 0.05 and abs(unstr["density"] - 0.1) < 0.02  # nearest realisable
    for argv, needle in [(["--density", "0"], "--density"), (["--block", "3"], "choose one of 4, 8, 16"),
                         (["--clock", "cpu", "--threads", "2"], "--threads 1")]:
        r = run_cli("bench", "ff", *argv)
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_bad_list_flag():
    r = run_cli("topology", "--net", "784,abc")
    assert r.returncode == 2 and "--net" in r.stderr and "abc" in r.stderr


def test_train_on_digits_and_resume(tmp_path):
    args = ["train", "--net", "64,32,10", "--fan-out", "8,10", "--dataset", "digits", "--epochs", "2",
            "--run-dir", str(tmp_path), "--quiet"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    hist = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    r = runner.invoke(app, [*args[:-5], "--epochs", "3", "--run-dir", str(tmp_path), "--resume", "--quiet"])
    assert r.exit_code == 0, r.output
    assert [h["epoch"] for h in json.loads((tmp_path / "metrics.json").read_text())] == [1, 2, 3]
    # resuming with another learning rate: one line naming the field, exit 2, nothing overwritten
    r = run_cli(*args[:-5], "--epochs", "4", "--lr", "0.5", "--run-dir", str(tmp_path), "--resume", "--quiet")
    assert r.returncode == 2 and "train.lr 0.001 → 0.5" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert [h["epoch"] for h in json.loads((tmp_path / "metrics.json").read_text())] == [1, 2, 3]


def test_train_rejects_mismatched_net(tmp_path):
    r = run_cli("train", "--net", "784,10", "--dataset", "digits", "--epochs", "1", "--run-dir", str(tmp_path))
    assert r.returncode == 2 and "N_0 = 64" in r.stderr


def test_yaml_config_errors_name_field_value_and_allowed(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"optimizer": "adagrad", "epochs": 0}, "model": {"nett": [1]}}))
    with pytest.raises(ConfigError) as e:
        load_yaml(bad)
    msg = str(e.value)
    assert "train.optimizer" in msg and "'adagrad'" in msg and "'adam' or 'sgd'" in msg
    assert "train.epochs" in msg and "greater than or equal to 1" in msg
    assert "model.nett" in msg  # typo'd keys are refused, not ignored
    r = run_cli("train", "--config", str(bad))
    assert r.returncode == 2 and "train.optimizer" in r.stderr


def test_config_topology_error_becomes_config_error():
    spec = parse(RunSpec, {"model": {"net": [100, 30, 10], "fan_out": [4, 10]}})
    with pytest.raises(ConfigError, match="model: junction 1"):
        spec.model.topology()


def test_demo_tiny_end_to_end(tmp_path):
    r = runner.invoke(app, ["demo", "--run-dir", str(tmp_path), "--epochs", "1", "--densities", "1,0.2",
                            "--limit", "600", "--quiet"])
    assert r.exit_code == 0, r.output
    for f in ("table.csv", "accuracy_vs_density.png", "report.md"):
        assert (tmp_path / f).stat().st_size > 0
    rows = (tmp_path / "table.csv").read_text().splitlines()
    assert len(rows) == 3  # header + FC + 20%
    assert "| 100.00% |" in (tmp_path / "report.md").read_text()


def test_topology_radix_analysis_and_plots(tmp_path):
    r = runner.invoke(app, ["topology", "--radices", "2,2,2", "--analyze", "--json",
                            "--plot", str(tmp_path / "a.png"), "--paths-plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[: r.output.rindex("}") + 1])
    assert data["sizes"] == [8, 8, 8, 8] and data["rho_net"] == 0.25  # the seed's (2,2,2): 75% sparse
    assert data["analysis"]["paths"]["uniform"] and data["analysis"]["paths"]["connectivity"] == 1.0
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "p.png").stat().st_size > 0


def test_topology_family_options_reach_the_generator():
    r = runner.invoke(app, ["topology", "--net", "1024,64,32", "--fan-out", "4,16", "--family", "clash_free",
                            "--z", "32", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["family"] == "clash_free"
    r = run_cli("topology", "--radices", "10,10;3")
    assert r.returncode == 2 and "must divide" in r.stderr
