"""Seed 001's conv2 nets: recipes, savings computed from the model (checked by independent counting), runner, CLI."""

import subprocess
import sys
from pathlib import Path

from dataclasses import replace

import pytest
import torch

from sparseforge.data import load_dataset
from sparseforge.errors import ConfigError
from sparseforge.nn.convnet import ConvNet
from sparseforge.nn.conv_recipes import CONV_RECIPES, classifier_savings, conv_recipe
from sparseforge.ssl.flops import layer_flops
from sparseforge.studies.conv2 import Conv2Config, run_conv2


def test_valid_padding_shapes_and_conv_flops_match_a_hook_count():
    net = ConvNet((1, 28, 28), 10, [4, 6], kernels=[5, 3], padding=["valid", "same"], downsample=["pool", "none"],
                  fan_out=[2, 10], hidden=[12])
    assert net.feature_shape == (6, 12, 12)  # 28 -5+1 = 24, pool 12, same 3x3 keeps 12
    rows = layer_flops(net.features, torch.zeros(2, 1, 28, 28))  # independent: hooks on the real tensors
    assert net.conv_flops == sum(r["flops"] for r in rows)
    assert net(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    with pytest.raises(ValueError, match=r"padding\[1\]='full': choose one of \('same', 'valid'\)"):
        ConvNet((1, 8, 8), 10, [4, 4], padding=["same", "full"])
    with pytest.raises(ValueError, match=r"layer 1: a 5x5 'valid' convolution does not fit the 2x2 feature map"):
        ConvNet((1, 6, 6), 10, [4, 4], kernels=[5, 5], padding="valid", downsample="none")


def test_mnist_conv2_savings_by_independent_counting_and_beside_the_seed():
    sparse, dense = conv_recipe("mnist-conv2"), conv_recipe("mnist-conv2", dense=True)
    s = classifier_savings(sparse)
    conv = sum(p.numel() for p in dense.features.parameters())
    fc = sum(p.numel() for p in dense.classifier.parameters())  # real nn.Linear weights and biases
    sp = sum(p.numel() for p in sparse.classifier.parameters())  # SparseLinear stores edges + biases
    assert (s["conv_params"], s["fc_cl_params"], s["sparse_cl_params"]) == (conv, fc, sp)
    ops = layer_flops(dense, torch.zeros(1, 1, 28, 28))
    conv_ops = sum(r["flops"] for r in ops if r["type"] == "Conv2d")
    assert s["conv_ops"] == conv_ops
    # the classifier runs feature-major (no hooks fire): 2 per weight of the real dense layers + the bias adds
    fc_ops = sum(2 * lay.weight.numel() + lay.out_features for lay in dense.classifier.layers)
    assert s["fc_cl_ops"] == fc_ops
    assert s["param_reduction_pct"] == pytest.approx(100 * (fc - sp) / (conv + fc))
    assert (s["cl_layers"], s["total_layers"]) == (2, 6)
    # the seed's row: 95.63% fewer parameters, 18.29% fewer operations, 2.35% overall CL density
    seed = CONV_RECIPES["mnist-conv2"].seed
    assert abs(s["param_reduction_pct"] - seed.param_reduction_pct) < 0.05
    assert abs(s["op_reduction_pct"] - seed.op_reduction_pct) < 0.2
    assert abs(100 * s["overall_cl_density"] - seed.overall_cl_density_pct) < 0.1


@pytest.mark.parametrize("name", sorted(CONV_RECIPES))
def test_every_recipe_builds_with_fixed_degrees_and_runs(name):
    r = CONV_RECIPES[name]
    net = conv_recipe(name)
    assert [p.d_out for p in net.topology.patterns] == list(r.fan_out)
    assert all(p.is_fixed_in_degree for p in net.topology.patterns)
    assert net(torch.rand(2, *r.in_shape)).shape == (2, r.n_classes)


def test_mnist_rows_overall_cl_densities_near_the_seed_table():
    for name, seed_pct in (("mnist-conv2-1", 0.29), ("mnist-conv2-4", 0.83), ("mnist-conv2", 2.35)):
        assert abs(100 * conv_recipe(name).topology.rho_net - seed_pct) < 0.06, name


def test_run_conv2_trains_fc_and_sparse_writes_report_and_resumes(tmp_path):
    data = load_dataset("mnist", limit=256, val_size=256, seed=0)
    cfg = Conv2Config(epochs=1, batch_size=64)
    res = run_conv2(cfg, tmp_path, data=data)
    fc, sp = res["accuracy"]
    assert (fc["model"], sp["model"]) == ("fc", "sparse") and fc["fan_out"] == [768, 10] and sp["fan_out"] == [16, 10]
    assert sp["params"] < fc["params"] and 0 <= sp["test_acc"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert "| overall param reduction (%) | 95.63 | 95.63 |" in report and "| sparse |" in report
    mtime = (tmp_path / "results" / "sparse.json").stat().st_mtime_ns
    assert run_conv2(cfg, tmp_path, data=data)["accuracy"] == res["accuracy"]
    assert (tmp_path / "results" / "sparse.json").stat().st_mtime_ns == mtime  # reused, not retrained
    with pytest.raises(ConfigError, match="lr"):  # the run directory belongs to these settings
        run_conv2(replace(cfg, lr=0.1), tmp_path, data=data)
    assert run_conv2(replace(cfg, epochs=0), tmp_path, overwrite=True)["accuracy"] == []


def test_bad_recipe_and_fan_out_count_are_named():
    with pytest.raises(ValueError, match="recipe='resnet' is not known; choose one of"):
        Conv2Config(recipe="resnet")
    with pytest.raises(ValueError, match=r"fan_out=\[16\]: recipe 'mnist-conv2' has 2 classifier junctions"):
        conv_recipe("mnist-conv2", fan_out=[16])


def _cli(*args, cwd):
    return subprocess.run([str(Path(sys.executable).with_name("sparseforge")), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_cli_prints_the_savings_table_and_refuses_bad_input_in_one_line(tmp_path):
    ok = _cli("conv2", "--epochs", "0", "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "95.63" in ok.stdout and "18.29" in ok.stdout and "18.22" in ok.stdout
    for args, msg in ((["--fan-out", "16,7", "--epochs", "0"], "d_out=7"),
                      (["--recipe", "cifar10-conv2", "--epochs", "1"], "CIFAR-10 is not bundled")):
        bad = _cli("conv2", *args, "--run-dir", str(tmp_path / "b"), cwd=tmp_path)
        assert bad.returncode == 2 and msg in " ".join(bad.stderr.split()), (args, bad.stderr)
        assert "Traceback" not in bad.stderr
