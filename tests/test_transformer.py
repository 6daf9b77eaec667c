"""The sparse-FF Vision Transformer against dense float64 references, and the transformer study end to end."""

import json
import subprocess
import sys
from pathlib import Path
from dataclasses import replace

import numpy as np
import pytest
import torch

from sparseforge import SparseLinear
from sparseforge.data import load_dataset
from sparseforge.nn.transformer import ViT, sparse_vit
from sparseforge.studies.transformer import SETTINGS, run_transformer_study


def test_tokens_are_the_patches_read_by_hand():
    vit = ViT((2, 8, 12), 3, patch=4, d_model=8, depth=1, heads=2, d_ff=16)
    x = torch.randn(2, 2, 8, 12)
    tok = vit.tokens(x)
    assert tok.shape == (2, 6, 32)
    for b in range(2):
        for i in range(2):
            for j in range(3):
                want = x[b, :, 4 * i:4 * i + 4, 4 * j:4 * j + 4].reshape(-1)  # channel-major patch values
                assert torch.equal(tok[b, 3 * i + j], want)


def _dense_reference_forward(model, x):
    """The same ViT in float64 numpy-free torch code, every SparseLinear replaced by its dense matrix."""
    def lin(layer, h):
        w = layer.to_dense() if isinstance(layer, SparseLinear) else layer.weight
        return h @ w.detach().double().T + layer.bias.detach().double()

    def ln(norm, h):
        mu, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        return (h - mu) / torch.sqrt(var + norm.eps) * norm.weight.double() + norm.bias.double()

    z = lin(model.embed, model.tokens(x).double())
    z = torch.cat([model.cls.double().expand(z.shape[0], -1, -1), z], 1) + model.pos.double()
    for blk in model.blocks:
        h = ln(blk.ln1, z)
        b, t, d = h.shape
        nh = blk.attn.heads
        q, k, v = lin(blk.attn.qkv, h).view(b, t, 3, nh, d // nh).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / np.sqrt(d // nh), -1)
        z = z + lin(blk.attn.proj, (att @ v).transpose(1, 2).reshape(b, t, d))
        h = lin(blk.ff.fc1, ln(blk.ln2, z))
        z = z + lin(blk.ff.fc2, 0.5 * h * (1 + torch.erf(h / np.sqrt(2))))
    return lin(model.head, ln(model.norm, z[:, 0]))


@pytest.mark.parametrize("proj_density", [None, 0.25])
def test_sparse_vit_layers_and_forward_equal_dense_float64_reference(proj_density):
    torch.manual_seed(0)
    model, rep = sparse_vit((1, 28, 28), 10, ff_density=0.25, proj_density=proj_density, patch=7, d_model=32,
                            d_ff=64, depth=2, heads=4)
    names = [r.name for r in rep.layers]
    ff = [f"blocks.{i}.ff.{n}" for i in range(2) for n in ("fc1", "fc2")]
    attn = [f"blocks.{i}.attn.{n}" for i in range(2) for n in ("qkv", "proj")]
    assert sorted(names) == sorted(ff + (attn if proj_density else []))
    assert all(isinstance(model.get_submodule(n), SparseLinear) for n in names)
    assert type(model.embed) is torch.nn.Linear and type(model.head) is torch.nn.Linear
    assert all(r.density == 0.25 for r in rep.layers)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model(x).double(), _dense_reference_forward(model, x), rtol=1e-4, atol=1e-4)
    model(x).sum().backward()
    assert model.blocks[0].ff.fc1.weight.grad.abs().sum() > 0


def test_dense_vit_returns_no_report_and_bad_options_are_named():
    model, rep = sparse_vit((1, 28, 28), 10, ff_density=1.0, d_model=16, d_ff=32, heads=2)
    assert rep is None and not any(isinstance(m, SparseLinear) for m in model.modules())
    with pytest.raises(ValueError, match="patch=5 must divide the image size 28x28"):
        ViT((1, 28, 28), 10, patch=5)
    with pytest.raises(ValueError, match="d_model=30 must be a multiple of heads=4"):
        ViT((1, 28, 28), 10, d_model=30, heads=4)
    with pytest.raises(ValueError, match=r"density\[.*\]=0 is not allowed"):
        sparse_vit((1, 28, 28), 10, ff_density=0)


def test_study_trains_every_density_times_them_and_resumes(tmp_path):
    data = load_dataset("mnist", limit=200, val_size=200, seed=0)
    cfg = replace(SETTINGS["tiny"], densities=(0.25,), batch_size=50, timing_repeats=1)
    res = run_transformer_study(cfg, tmp_path, data=data)
    assert [r["label"] for r in res["accuracy"]] == ["dense", "ff25"]  # the dense twin is always added
    dense, sparse = res["accuracy"]
    assert sparse["ff_params"] < dense["ff_params"] and sparse["params"] < dense["params"]
    assert sparse["params"] == dense["params"] - (dense["ff_params"] - sparse["ff_params"])
    t = {r["label"]: r for r in res["timing"]}
    assert t["dense"]["model_train_speedup"] == 1.0 and t["ff25"]["ff_infer_ms"] > 0
    assert t["ff25"]["tokens"] == cfg.timing_batch * 17
    for f in ("table.csv", "timing.csv", "report.md", "accuracy_vs_density.png", "speedup_vs_density.png"):
        assert (tmp_path / f).stat().st_size > 0
    assert "| 25% |" in (tmp_path / "report.md").read_text()
    again = run_transformer_study(cfg, tmp_path, data=data)  # finished sub-runs and timing are reused
    assert again == res


def test_medium_setting_times_the_width_the_issue_asks_for():
    m = SETTINGS["medium"]
    assert (m.timing_d_model, m.timing_d_ff) == (512, 2048) and m.timing_tokens >= 4096


def test_cli_study_transformer_bad_setting_is_one_line(tmp_path):
    exe = str(Path(sys.executable).with_name("sparseforge"))
    r = subprocess.run([exe, "study", "transformer", "--setting", "huge"], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--setting='huge' is not a setting of study transformer; choose one of ['medium', 'tiny']" in \
        " ".join(r.stderr.split())


def test_cli_study_transformer_keeps_its_run_dir_and_overwrite_clears_it(tmp_path):
    """A run dir of other settings is refused naming a field; --overwrite clears it; --seeds is refused."""
    from sparseforge.runs import RunStore

    exe = str(Path(sys.executable).with_name("sparseforge"))
    rd = tmp_path / "rd"
    with RunStore(rd, SETTINGS["medium"], command="study transformer"):
        pass
    (rd / "results" / "stale.json").parent.mkdir(exist_ok=True)
    (rd / "results" / "stale.json").write_text("{}")

    def cli(*extra):
        return subprocess.run([exe, "study", "transformer", "--setting", "tiny", "--run-dir", str(rd), "--quiet",
                               *extra], capture_output=True, text=True, timeout=600, cwd=tmp_path)

    r = cli()
    assert r.returncode == 2 and "Traceback" not in r.stderr and "d_model" in r.stderr, r.stderr
    r = cli("--seeds", "3")
    assert r.returncode == 2 and "--seeds=3" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = cli("--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (rd / "results" / "stale.json").exists()
    assert json.loads((rd / "run.json").read_text())["settings"]["d_model"] == SETTINGS["tiny"].d_model
