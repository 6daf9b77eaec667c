"""Taking models elsewhere: ONNX (onnxruntime) and TorchScript exports of standard operators, state_dict and
topology files, load(run_dir) and the export/predict commands through the installed console script."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sparseforge
from sparseforge import NetworkTopology, Pattern, SparseMLP, TopologyError, design
from sparseforge.deploy import export, load, predict
from sparseforge.kernels import native, use_backend
from sparseforge.nn.convnet import ConvNet
from sparseforge.topology import random_uniform

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
BACKENDS = ["stock", pytest.param("native", marks=pytest.mark.skipif(not native.available(), reason="no native"))]
CLI = str(Path(sys.executable).with_name("sparseforge"))


def mlp(density: float = 0.1, seed: int = 0) -> SparseMLP:
    torch.manual_seed(seed)
    return SparseMLP(design((300, 100, 10), density=density, seed=seed)).eval()


def convnet() -> nn.Module:
    torch.manual_seed(0)
    return ConvNet((1, 8, 8), 10, channels=[4], hidden=[32], density=0.25).eval()


def sparsified() -> nn.Module:
    """A plain nn.Sequential whose Linear layers sparsify() turned into SparseLinear."""
    from sparseforge.nn.sparsify import sparsify

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    sparsify(model, 0.2, dense_last=False)
    assert all(isinstance(m, sparseforge.SparseLinear) for m in (model[0], model[2]))
    return model.eval()


def onnx_run(path: Path, x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make, shape", [(mlp, (5, 300)), (convnet, (4, 1, 8, 8)), (lambda: mlp(1.0), (5, 300)),
                                         (sparsified, (5, 300))])
def test_onnx_and_torchscript_equal_pytorch(tmp_path, backend, make, shape):
    model = make()
    x = torch.randn(shape)
    with use_backend(backend), torch.no_grad():
        expect = model(x)
    export(model, tmp_path / "m.onnx", example=x)
    export(model, tmp_path / "m.pt", format="torchscript", example=x)
    torch.testing.assert_close(onnx_run(tmp_path / "m.onnx", x), expect, atol=1e-5, rtol=1e-5)
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    torch.testing.assert_close(scripted(x), expect, atol=1e-5, rtol=1e-5)
    other = torch.randn((3,) + shape[1:])  # another batch size: the batch dimension is dynamic
    with use_backend(backend), torch.no_grad():
        torch.testing.assert_close(onnx_run(tmp_path / "m.onnx", other), model(other), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(scripted(other), model(other), atol=1e-5, rtol=1e-5)


def test_onnx_is_standard_operators_and_grows_with_edges_not_n_in_times_n_out(tmp_path):
    sizes = {}
    for rho in (0.05, 0.2):
        model = mlp(rho)
        export(model, tmp_path / f"{rho}.onnx")
        graph = onnx.load(str(tmp_path / f"{rho}.onnx")).graph
        assert {n.domain for n in graph.node} <= {""}  # the default ONNX domain only: no custom op
        assert {"Gather", "Mul", "ReduceSum"} <= {n.op_type for n in graph.node}
        sizes[rho] = ((tmp_path / f"{rho}.onnx").stat().st_size, model.topology.edges)
    (small, e_small), (big, e_big) = sizes[0.05], sizes[0.2]
    dense_bytes = 4 * (300 * 100 + 100 * 10)
    assert small < dense_bytes / 3
    per_edge = (big - small) / (e_big - e_small)  # bytes per added edge: an int64 index and a float32 weight
    assert 11 <= per_edge <= 14


def test_export_refuses_unknown_format_and_missing_example(tmp_path):
    with pytest.raises(ValueError, match="format='tf' is not supported; allowed: onnx, torchscript"):
        export(mlp(), tmp_path / "m", format="tf")
    with pytest.raises(ValueError, match="give example="):
        export(convnet(), tmp_path / "m.onnx")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("make", [mlp, lambda: mlp(1.0), lambda: nn.Linear(300, 10)])
def test_state_dict_round_trip(make, backend):
    model, x = make(), torch.randn(4, 300)
    fresh = make() if not isinstance(model, SparseMLP) else SparseMLP(model.topology)
    fresh.load_state_dict(model.state_dict())
    with use_backend(backend):
        torch.testing.assert_close(fresh(x), model(x), atol=0, rtol=0)


# ---------------------------------------------------------------------------------------------- topology files
def test_topology_and_pattern_files_round_trip(tmp_path):
    topo = design((40, 20, 10), density=0.3, seed=3)
    topo.save(tmp_path / "t.npz")
    back = NetworkTopology.load(tmp_path / "t.npz")
    assert back.sizes == topo.sizes and back.patterns == topo.patterns and (back.family, back.seed) == ("structured", 3)
    p = random_uniform(17, 9, density=0.4, seed=1)  # variable degrees
    p.save(tmp_path / "p.npz")
    assert Pattern.load(tmp_path / "p.npz") == p


def test_damaged_or_mismatched_topology_files_are_refused(tmp_path):
    topo = design((40, 20, 10), density=0.3, seed=3)
    path = tmp_path / "t.npz"
    topo.save(path)
    with pytest.raises(TopologyError, match="holds a network, not a pattern"):
        Pattern.load(path)
    raw = bytearray(path.read_bytes())
    cut = tmp_path / "cut.npz"
    cut.write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(TopologyError, match="damaged"):
        NetworkTopology.load(cut)
    flipped = tmp_path / "flip.npz"
    raw[len(raw) // 3] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    with pytest.raises(TopologyError, match="damaged"):
        NetworkTopology.load(flipped)
    with np.load(path) as z:  # a future version, and a file whose arrays were edited without the checksum
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "v2.npz", **{**arrays, "version": np.int64(2)})
    with pytest.raises(TopologyError, match="format version 2; this sparseforge reads version 1"):
        NetworkTopology.load(tmp_path / "v2.npz")
    edited = dict(arrays, indices_0=arrays["indices_0"][::-1].copy())
    np.savez(tmp_path / "edit.npz", **edited)
    with pytest.raises(TopologyError, match="checksum does not match"):
        NetworkTopology.load(tmp_path / "edit.npz")
    (tmp_path / "x.npz").write_text("hello")
    with pytest.raises(TopologyError, match="damaged or not an .npz"):
        NetworkTopology.load(tmp_path / "x.npz")


# ------------------------------------------------------------------------------------------------- run dirs
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "r"
    proc = subprocess.run([CLI, "train", "--net", "64,32,10", "--density", "0.5", "--dataset", "digits",
                           "--epochs", "3", "--lr", "0.01", "--run-dir", str(d), "--quiet", "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.fixture(scope="module")
def fc_run_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "fc"
    proc = subprocess.run([CLI, "train", "--net", "64,16,10", "--dataset", "digits", "--epochs", "2", "--lr", "0.01",
                           "--run-dir", str(d), "--quiet", "--threads", "1"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return d


@pytest.mark.parametrize("which", ["sparse", "fc"])
def test_load_run_dir_gives_the_trained_model_in_eval_mode(run_dir, fc_run_dir, which):
    run_dir = run_dir if which == "sparse" else fc_run_dir
    model = load(run_dir)
    assert isinstance(model, SparseMLP) and not model.training
    assert all(isinstance(m, sparseforge.SparseLinear) == (which == "sparse") for m in model.layers)
    from sparseforge.train.checkpoint import load_checkpoint

    state = load_checkpoint(run_dir / "checkpoint.pt", check_settings=False).payload["model"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    for backend in ("stock", "native") if native.available() else ("stock",):
        with use_backend(backend):
            res = predict(run_dir)
        assert res["test_acc"] == res["recorded_test_acc"] and res["test_acc"] > 0.3, backend  # chance is 0.1


def test_cli_predict_prints_the_recorded_accuracy_and_export_runs_in_onnxruntime(run_dir, tmp_path):
    proc = subprocess.run([CLI, "predict", "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    recorded = predict(run_dir)["recorded_test_acc"]
    assert f"test accuracy {100 * recorded:.2f}%" in proc.stdout and f"recorded by the run: {100 * recorded:.2f}%" in proc.stdout
    out = tmp_path / "m.onnx"
    proc = subprocess.run([CLI, "export", "--run-dir", str(run_dir), "--format", "onnx", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    x = torch.randn(6, 64)
    with torch.no_grad():
        torch.testing.assert_close(onnx_run(out, x), load(run_dir)(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["export", "--run-dir", "/nonexistent/run"], "is not a directory"),
    (["export", "--run-dir", "{run}", "--format", "tf"], "--format: 'tf' is not supported; allowed: onnx, torchscript"),
    (["predict", "--run-dir", "{empty}"], "has no spec.json"),
    (["predict", "--run-dir", "{run}", "--dataset", "morse"], "does not fit|inputs and"),
])
def test_cli_errors_are_one_line_and_exit_2(run_dir, tmp_path, args, message):
    args = [a.format(run=run_dir, empty=tmp_path) for a in args]
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    import re

    assert re.search(message, proc.stderr), proc.stderr


def test_load_refuses_a_damaged_checkpoint(run_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(run_dir, bad)
    (bad / "checkpoint.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes()[:1000])
    with pytest.raises(sparseforge.errors.RunError, match="checkpoint.pt cannot be used: .*truncated or damaged"):
        load(bad)


def test_onnx_export_without_the_onnx_package_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(sparseforge.errors.MissingExtra, match=r"pip install 'sparseforge\[onnx\]'"):
        export(mlp(), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
