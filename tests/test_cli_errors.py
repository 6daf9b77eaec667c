"""Issue 13: the command line never crashes on a user. One error boundary (exit 2 user error, 1 internal with
a "please report" line, 130 interrupted), validation at the edge, output that reads in a log, one recipe
naming scheme. CLI error paths run through the installed console script in a subprocess."""

from __future__ import annotations

import gzip
import importlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from cli_runner import BoundaryRunner
climain = importlib.import_module("sparseforge.cli.main")  # the module (sparseforge.cli.main is also the function)
from sparseforge.config import ConfigError, RunSpec, parse, read_mapping, recipe_names, resolve_recipe, RECIPE_PREFIXES

SCRIPT = shutil.which("sparseforge", path=str(Path(sys.executable).parent))
needs_script = pytest.mark.skipif(SCRIPT is None, reason="the sparseforge console script is not installed")
runner = BoundaryRunner()


def sf(*args, cwd=None, env=None):
    """The installed console script, output captured (a pipe, as in a log)."""
    return subprocess.run([SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd,
                          env={**os.environ, **(env or {})})


# ------------------------------------------------------------------------------------- 1. error boundary
@needs_script
@pytest.mark.parametrize("argv, needle", [
    (["train", "--epochs", "abc"], "--epochs"),
    (["train", "--no-such-flag"], "--no-such-flag"),
    (["search", "run"], "'config'"),
    (["hw", "plan", "--net", "1024"], "--net"),
    (["ssl", "--recipe", "bogus"], "bogus"),          # used to print a clean message and exit 0
    (["study", "nope"], "nope"),
    (["prune", "--sparsities", "150%"], "sparsit"),
    (["hw", "clashes", "--z", "7,7"], "z"),
])
def test_user_errors_are_one_line_exit_2(argv, needle):
    r = sf(*argv)
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and needle in lines[0], r.stderr
    assert len(lines) <= 2 and all(ln.startswith(("error:", "hint:")) for ln in lines), r.stderr
    assert "Traceback" not in r.stderr + r.stdout


def test_click_exceptions_are_recognised_by_class_name_whatever_typer_vendors():
    e = typer.BadParameter("nope")
    assert climain._named_in_mro(e, "ClickException") and not climain._named_in_mro(ValueError(), "ClickException")
    with pytest.raises(ModuleNotFoundError):  # typer 0.29 vendors click: the boundary must not import it
        import click  # noqa: F401


def test_internal_error_is_exit_1_with_report_line_and_traceback_only_with_debug(monkeypatch):
    import sparseforge.config as cfg

    def boom(prefix):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(cfg, "recipe_names", boom)
    monkeypatch.delenv("SPARSEFORGE_DEBUG", raising=False)
    r = runner.invoke(None, ["recipes"])
    assert r.exit_code == 1 and "internal error: RuntimeError: kaboom" in r.stderr
    assert "please report" in r.stderr and "--debug" in r.stderr and "Traceback" not in r.stderr
    r = runner.invoke(None, ["recipes", "--debug"])
    assert r.exit_code == 1 and "Traceback" in r.stderr and "kaboom" in r.stderr
    monkeypatch.setenv("SPARSEFORGE_DEBUG", "1")
    r = runner.invoke(None, ["recipes"])
    assert r.exit_code == 1 and "Traceback" in r.stderr


def test_ctrl_c_is_130_with_how_to_resume(monkeypatch):
    import sparseforge.config as cfg

    def interrupted(prefix):
        raise KeyboardInterrupt

    monkeypatch.setattr(cfg, "recipe_names", interrupted)
    r = runner.invoke(None, ["recipes"])
    assert r.exit_code == 130 and "interrupted" in r.stderr and "--resume" in r.stderr


def test_typer_exit_code_from_a_command_is_the_exit_status():
    r = runner.invoke(None, ["hw", "plan", "--z", "64,32", "--require-balanced"])
    assert r.exit_code == 2 and r.stderr.startswith("error: pipeline is unbalanced")


# ------------------------------------------------------------------------------------- 2. validation
@pytest.mark.parametrize("text, needle", [
    ("", "empty"), ("# only a comment\n\n", "empty"), ("train:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr'"),
    ("- 1\n", "mapping"), ("train: [\n", "not valid YAML"),
])
def test_yaml_files_that_are_not_configs(tmp_path, text, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        read_mapping(p)


def test_directory_and_binary_configs(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        read_mapping(tmp_path)
    p = tmp_path / "b.yaml"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match="binary"):
        read_mapping(p)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match="train.lr"):
        parse(RunSpec, {"train": {"lr": value}})


def test_load_dataset_none_and_repr():
    from sparseforge.data import load_dataset

    with pytest.raises(ConfigError, match="dataset name must be a string"):
        load_dataset(None)
    with pytest.raises(ConfigError, match="known datasets: cifar10, cifar100, digits, fashion-mnist, mnist, morse"):
        load_dataset("imagenet")
    d = load_dataset("digits", limit=50)
    text = repr(d)
    assert text.startswith("DataSplits('digits', train=50") and "tensor" not in text and len(text) < 200
    assert "tensor" not in repr(d.train) and "(50, 1, 8, 8)" in repr(d.train)


@needs_script
def test_corrupted_idx_file_is_a_user_error(tmp_path):
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    for n in names:
        (tmp_path / n).write_bytes(b"\0\0\x08\x03" + struct.pack(">3I", 10, 28, 28) + b"\0" * 100)  # truncated
    r = sf("train", "--data-root", tmp_path, "--epochs", "1", "--run-dir", tmp_path / "run")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "size mismatch" in r.stderr, r.stderr
    (tmp_path / names[0]).write_bytes(gzip.compress(b"garbage")[:10])  # a truncated gzip stream
    r = sf("train", "--data-root", tmp_path, "--epochs", "1", "--run-dir", tmp_path / "run")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


@needs_script
@pytest.mark.parametrize("argv, needle", [
    (["bench", "linear", "--densities", "0"], "(0, 1]"), (["bench", "linear", "--densities", "2"], "(0, 1]"),
    (["bench", "batch", "--batches", "0"], ">= 1"), (["bench", "challenge", "--connections", "100", "--neurons", "64"],
                                                     "connections=100"),
    (["train", "--dataset", "imagenet"], "known datasets"), (["train", "--lr", "inf", "--dataset", "digits"], "finite"),
    (["hw", "plan", "--clock-mhz", "inf"], "finite"), (["hw", "plan", "--clock-mhz", "nan"], "--clock-mhz"), (["train", "--seed", "-1"], "--seed"),
    (["conv2", "--dataset", ""], "--dataset: '' is not allowed"),  # used to train on the recipe's dataset
])
def test_issue_examples_exit_2(argv, needle, tmp_path):
    r = sf(*argv, "--run-dir", tmp_path) if argv[0] == "train" else sf(*argv)
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr


@needs_script
@pytest.mark.parametrize("argv, flag, example", [
    (["bench", "ff", "--repeats", "1", "--json"], "--json", "bench.json"),
    (["topology", "--plot"], "--plot", "adjacency.png"),
    (["topology", "--paths-plot"], "--paths-plot", "paths.png"),
    (["export", "--run-dir", ".", "--out"], "--out", "model.onnx"),
])
def test_output_file_given_as_a_directory_is_refused(argv, flag, example, tmp_path):
    """`--json out/` for a directory that does not exist yet used to write a file named `out`: the trailing slash
    is refused before anything runs, naming the flag and a file name to use; nothing is created."""
    r = sf(*argv, "new/", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith(f"error: {flag}: 'new/'") and f"new/{example}" in first, r.stderr
    assert not (tmp_path / "new").exists()


@needs_script
def test_train_takes_family_options_and_refuses_ones_the_family_lacks(tmp_path):
    """`train --family block --block 4` (and --z, --group) reach the pattern generator; an option the family does
    not take, from a flag or a YAML `options:` typo, is a one-line error, not an internal one."""
    r = sf("train", "--dataset", "digits", "--net", "64,32,10", "--family", "block", "--block", "4", "--rho-net",
           "0.4", "--epochs", "1", "--quiet", "--run-dir", tmp_path / "block")
    assert r.returncode == 0, r.stderr
    spec = json.loads((tmp_path / "block" / "spec.json").read_text())
    assert spec["model"]["family"] == "block" and spec["model"]["options"] == {"block": 4}
    r = sf("train", "--dataset", "digits", "--z", "4", "--density", "0.25", "--run-dir", tmp_path / "z")
    assert r.returncode == 2 and "family 'structured' takes no options; got 'z'" in r.stderr, r.stderr
    r = sf("train", "--dataset", "digits", "--family", "grouped", "--z", "4", "--run-dir", tmp_path / "zg")
    assert r.returncode == 2 and "--z applies to --family clash_free only (got --family grouped)" in r.stderr, r.stderr
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("model: {net: [64, 32, 16, 10], family: grouped, density: 0.5, options: {groups: 4}}\n"
                   "data: {name: digits}\n")
    r = sf("train", "--config", cfg, "--run-dir", tmp_path / "typo")
    assert r.returncode == 2 and "got 'groups'" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_train_and_demo_take_sizes_from_the_data(tmp_path):
    r = runner.invoke(None, ["train", "--dataset", "digits", "--epochs", "1", "--run-dir", tmp_path / "t"])
    assert r.exit_code == 0, r.output
    assert "N_net=(64, 112, 10)" in r.stderr
    r = runner.invoke(None, ["demo", "--dataset", "digits", "--epochs", "1", "--densities", "1,0.5",
                             "--run-dir", tmp_path / "d", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "pre-defined sparsity vs FC" in r.stdout and (tmp_path / "d" / "report.md").exists()
    assert "N_net = (64, 112, 10)" in (tmp_path / "d" / "report.md").read_text()


def test_adjusted_densities_are_announced():
    r = runner.invoke(None, ["topology", "--density", "20%"])
    assert r.exit_code == 0
    assert "notice: junction 2 (112->10): density 20% asked, 50.00% built" in r.stderr
    r = runner.invoke(None, ["topology", "--density", "50%"])
    assert r.exit_code == 0 and "notice" not in r.stderr  # nothing adjusted: nothing said


# ------------------------------------------------------------------------------------- 4. output
@needs_script
def test_pipe_output_is_whole_lines(tmp_path):
    r = sf("hw", "plan", "--help")
    assert "--require-balanced / --no-require-balanced" in r.stdout and "<bool>" not in r.stdout
    assert "…" not in r.stdout
    r = sf("hw", "sweep", "--out-dir", tmp_path, "--top", "5")
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout and "\x1b[" not in r.stdout  # no cut cells, no colour codes in a file
    rows = [ln for ln in r.stdout.splitlines() if ln.startswith("│")]
    assert rows and len({len(ln) for ln in rows}) == 1  # a table row is one line, never wrapped


@needs_script
def test_epoch_lines_in_a_log_have_no_blank_lines_between(tmp_path):
    r = sf("train", "--dataset", "digits", "--epochs", "3", "--run-dir", tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    ep = [i for i, ln in enumerate(lines) if " epoch " in f" {ln}"]
    assert len(ep) == 3 and ep == list(range(ep[0], ep[0] + 3)), r.stderr  # consecutive, no blank lines


def test_fit_reports_progress_unless_asked_to_be_quiet(capsys):
    from sparseforge.data import load_dataset
    from sparseforge.nn import SparseMLP
    from sparseforge.topology import design
    from sparseforge.train import TrainConfig, fit

    data = load_dataset("digits", limit=64)
    cfg = TrainConfig(epochs=2, batch_size=32)
    fit(SparseMLP(design([64, 16, 10], density=0.5)), data, cfg)
    err = capsys.readouterr().err
    assert err.count("epoch ") == 2 and "epoch   2/2" in err and "test loss" in err
    fit(SparseMLP(design([64, 16, 10], density=0.5)), data, cfg, progress=False)
    assert capsys.readouterr().err == ""


@needs_script
def test_bench_reports_progress_in_a_log():
    r = sf("bench", "batch", "--n", "64", "--batches", "1,2", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "bench batch: [1/2] points measured" in r.stderr and "bench batch: [2/2] points measured" in r.stderr


def test_one_recipe_naming_scheme():
    r = runner.invoke(None, ["recipes"])
    assert r.exit_code == 0
    for command, prefix in RECIPE_PREFIXES.items():
        names = recipe_names(prefix)
        assert names and all("_" not in n for n in names)
        for n in names:
            assert n in r.stdout
            p = resolve_recipe(n, prefix)
            assert resolve_recipe(p.stem, prefix) == p == resolve_recipe(n.replace("-", "_"), prefix)
    from sparseforge.nn.conv_recipes import CONV_RECIPES

    lines = r.stdout.splitlines()
    for name in CONV_RECIPES:  # code-defined recipes are listed with the command that runs them
        assert any(f"sparseforge conv2 --recipe {name}" in ln for ln in lines), name
    assert "sparseforge study transformer --setting medium" in r.stdout
    assert resolve_recipe("tiny-digits", "search_").name == "search_tiny_digits.yaml"
    assert resolve_recipe("search_tiny_digits", "search_").name == "search_tiny_digits.yaml"  # used to be refused
    with pytest.raises(ConfigError, match="recipes: lenet-filter, lenet-shape, resnet-depth, tiny"):
        resolve_recipe("nope", "ssl_")


@needs_script
def test_real_ctrl_c_during_training_exits_130_and_resumes(tmp_path):
    import signal

    # epochs: far more than can finish before the signal (500 digits epochs take ~2 s). SIGINT back to its default
    # in the child, as under a terminal: a test run started in the background by a non-interactive shell (`cmd &`)
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler, so the signal would be lost
    p = subprocess.Popen([SCRIPT, "train", "--dataset", "digits", "--epochs", "1000000", "--run-dir", str(tmp_path)],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []
    for line in p.stderr:  # wait for a finished epoch (a checkpoint exists), then interrupt
        seen.append(line)
        if line.startswith("epoch"):
            break
    p.send_signal(signal.SIGINT)
    try:  # ~4 s from the signal to exit with 3 CPU hogs on 2 cores
        _, rest = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, "".join(seen) + rest
    assert "interrupted" in rest and "--resume" in rest and "Traceback" not in rest
