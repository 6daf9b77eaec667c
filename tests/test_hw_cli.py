"""``sparseforge hw ...`` on a fresh app: plan, clashes, export, sweep, fixed; errors exit 2 with one line."""

import json

import numpy as np
import pytest
from cli_runner import BoundaryRunner

from sparseforge.studies.fixed_point import FixedStudyConfig, load_study_data, load_trained_fixed
from sparseforge.hardware import FloatMLP, forward_float, init_fixed_mlp, load_export, predict_fixed
from sparseforge.topology.clash_free import design_clash_free
from sparseforge.train import load_checkpoint

runner = BoundaryRunner()
FPGA = ["--net", "1024,64,32", "--fan-out", "4,16", "--z", "128,32"]


@pytest.fixture(scope="module")
def app():
    from sparseforge.cli import app

    return app


def invoke(app, *args):
    return runner.invoke(app, ["hw", *args])


def test_plan_reproduces_the_rtl_block_cycle(app):
    r = invoke(app, "plan", *FPGA, "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)["summary"]
    assert s["block_clocks"] == 36 and s["junction_clocks"] == [36, 36]  # W/z = 32 cycles + 2 + PROCTIME 2
    assert s["balanced"] and s["latency_blocks"] == 4 and s["speedup_vs_sequential"] == pytest.approx(6.0)  # 3J
    assert s["throughput_inputs_per_s"] == pytest.approx(100e6 / 36)
    r = invoke(app, "plan", *FPGA)
    assert r.exit_code == 0 and "36 clocks per input" in r.stdout and "balanced" in r.stdout


def test_plan_unbalanced_advises_and_can_be_refused(app):
    r = invoke(app, "plan", "--z", "64,32")
    assert r.exit_code == 0 and "unbalanced" in r.stdout and "z=16" in r.stdout
    r = invoke(app, "plan", "--z", "64,32", "--require-balanced")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: pipeline is unbalanced")


@pytest.mark.parametrize("args, needle", [
    (["plan", "--z", "100,32"], "z=100 must divide"),
    (["clashes", "--family", "structured", "--z", "100,32"], "z=100"),
    (["plan", "--z", "128"], "--z"),
    (["fixed", "--word-bits", "2", "--int-bits", "2"], "word_bits=2"),
    (["fixed", "--epochs", "0"], "epochs"),
])
def test_errors_are_one_line_naming_the_parameter(app, tmp_path, args, needle):
    r = invoke(app, *args, *(["--run-dir", str(tmp_path)] if args[0] == "fixed" else []))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and needle in r.stderr
    assert "Traceback" not in r.output


def test_clashes_clash_free_versus_structured(app):
    r = invoke(app, "clashes", *FPGA, "--family", "clash_free", "--json")
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)["total"]
    assert t == {"clashes": 0, "stall_cycles": 0, "block_clocks": 36, "clash_free_block_clocks": 36}
    r = invoke(app, "clashes", *FPGA, "--family", "structured", "--json", "--show", "2")
    d = json.loads(r.stdout)
    assert d["total"]["clashes"] > 0 and d["total"]["stall_cycles"] > 0 and d["total"]["block_clocks"] > 36
    assert all(j["clashes"] > 0 for j in d["junctions"]) and len(d["listed"]) == 4


def test_export_reads_back_equal(app, tmp_path):
    r = invoke(app, "export", *FPGA, "--seed", "3", "--out-dir", str(tmp_path))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "hardware.json").exists() and len(list((tmp_path / "junction1").glob("weight_*.hex"))) == 128
    back = load_export(tmp_path)
    topo = design_clash_free((1024, 64, 32), fan_out=(4, 16), z=(128, 32), seed=3)
    net = init_fixed_mlp(topo, seed=3)  # the command's default formats: 10-bit words, 2 integer bits
    assert back.z == (128, 32) and back.weight_format.word_bits == 10
    for p, q, w, v, b, c in zip(back.patterns, topo.patterns, back.weights, net.weights_csr(), back.biases, net.biases):
        assert np.array_equal(p.indptr, q.indptr) and np.array_equal(p.indices, q.indices)
        assert np.array_equal(w, v) and np.array_equal(b, c)
    assert back.config["pipeline"]["block_clocks"] == 36


def test_sweep_writes_table_and_png(app, tmp_path):
    r = invoke(app, "sweep", "--net", "1024,64,32", "--fan-out", "4,16", "--out-dir", str(tmp_path), "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["rows"]
    fpga = next(x for x in rows if x["z"] == "128,32")
    assert fpga["clocks_per_input"] == 36 and fpga["multipliers"] == 480 and fpga["balanced"]
    assert [x["clocks_per_input"] for x in rows] == sorted(x["clocks_per_input"] for x in rows)
    png = tmp_path / "z_sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "z_sweep.csv").read_text().count("\n") == len(rows) + 1


def test_fixed_with_wide_words_tracks_float(app, tmp_path):
    """24-bit words with 4 integer bits (19 fraction bits, LSB 2**-19 = 1.9e-6) against float64.

    Margin, from the math rather than a guess: with no saturation (asserted), every fixed-point value is
    the float value plus rounding errors of at most LSB/2 per operation, so after a few hundred online
    steps the two networks' outputs differ by some small eps (measured here: ~2e-5, about 10 LSBs). A test
    decision (argmax) can only differ where the float net's top two outputs are closer than 2 eps (plus one
    output LSB, since fixed point compares rounded codes). So |acc_fixed - acc_float| <= (number of such
    near-ties) / n, and we also require that number to be at most 1% of the test set (typical output margins
    are ~1e-3 or more, far above 2 eps), i.e. fixed point is within one point of float.
    """
    args = ["fixed", "--limit", "600", "--test-limit", "300", "--epochs", "1", "--word-bits", "24",
            "--int-bits", "4", "--lr-shift", "3", "--run-dir", str(tmp_path), "--quiet"]
    r = invoke(app, *args)
    assert r.exit_code == 0, r.output
    summary = {s["label"]: s for s in _csv(tmp_path / "summary.csv")}
    fx_acc, fl_acc = float(summary["w24_i4"]["test_acc"]), float(summary["float"]["test_acc"])
    assert int(summary["w24_i4"]["saturated_last_epoch"]) == 0
    assert fl_acc > 0.3  # it learned something (chance is 0.1)

    net, cfg, z = load_trained_fixed(tmp_path / "w24_i4")
    assert z == (128, 32) and cfg.limit == 600
    fl = load_checkpoint(tmp_path / "float" / "checkpoint.pt", check_settings=False).payload["arrays"]
    flt = FloatMLP(net.plans, (fl["w0"], fl["w1"]), (fl["b0"], fl["b1"]), "sigmoid")
    data = load_study_data(cfg)
    o_fx = predict_fixed(net, data.x_test)[:, :10]
    o_fl = forward_float(flt, data.x_test)[0][-1][:, :10]
    eps = np.abs(o_fx - o_fl).max()
    top2 = np.sort(o_fl, axis=1)[:, -2:]
    near = int(np.count_nonzero(top2[:, 1] - top2[:, 0] <= 2 * eps + net.formats.act.lsb))
    n = len(data.y_test)
    assert eps < 1e-3
    assert near <= 0.01 * n
    assert abs(fx_acc - fl_acc) <= near / n + 1e-12
    assert fl_acc == pytest.approx(float(np.mean(o_fl.argmax(1) == data.y_test)))

    for name in ("report.md", "epochs.csv", "fixed_vs_float.png", "float/result.json", "w24_i4/result.json"):
        assert (tmp_path / name).exists(), name
    # the trained words go to the hardware's memory files unchanged
    r = invoke(app, "export", "--from-run", str(tmp_path / "w24_i4"), "--out-dir", str(tmp_path / "export"))
    assert r.exit_code == 0, r.output
    back = load_export(tmp_path / "export")
    assert back.weight_format.word_bits == 24 and back.weight_format.int_bits == 4
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights_csr()))
    assert all(np.array_equal(a, b) for a, b in zip(back.biases, net.biases))
    # resumable: a rerun finds every sub-run finished and trains nothing
    stamp = (tmp_path / "w24_i4" / "checkpoint.pt").stat().st_mtime_ns
    r = invoke(app, *args)
    assert r.exit_code == 0 and (tmp_path / "w24_i4" / "checkpoint.pt").stat().st_mtime_ns == stamp
    # and a run directory refuses other settings
    other = list(args)
    other[other.index("--lr-shift") + 1] = "4"
    r = invoke(app, *other)
    assert r.exit_code == 2 and "lr_shift" in r.stderr


def _csv(path):
    import csv

    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_fixed_study_config_defaults_are_the_fpga_network():
    cfg = FixedStudyConfig()
    assert (cfg.net, cfg.fan_out, cfg.z, cfg.batch_size) == ((1024, 64, 32), (4, 16), (128, 32), 1)
    assert cfg.words()[:2] == [(8, 2), (10, 2)] and cfg.label((10, 2)) == "w10_i2"
