"""SSL (seed 002): group norms, the group-Lasso regularizer, thinning, FLOPs, export and the `ssl` command."""

import copy
import math
import warnings

import pytest
import torch
import yaml
from torch import nn
from cli_runner import BoundaryRunner as CliRunner

from sparseforge.data import ArrayDataset, DataSplits
from sparseforge.nn import lenet5
from sparseforge.nn.resnet import PadShortcut, resnet20
from sparseforge.ssl import (
    FreezeZeroGroups,
    GroupLasso,
    LoweredConv2d,
    channel_groups,
    column_groups,
    depth_groups,
    filter_groups,
    layer_flops,
    layer_groups,
    lower_conv,
    model_flops,
    proximal_step,
    remove_channels,
    remove_filters,
    row_groups,
    shape_groups,
    sparsity_report,
    ssl_groups,
    thin,
    threshold_groups,
)
from sparseforge.train import TrainConfig, fit

torch.set_num_threads(1)


def rand_splits(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda k: ArrayDataset(torch.rand(k, 1, 28, 28, generator=g), torch.randint(0, 10, (k,), generator=g))
    return DataSplits("rand", mk(n), mk(16), mk(16), 10, (1, 28, 28))


def randomize_bn(model, seed=0):
    """Non-trivial BN statistics and affine parameters, so that thinning must carry them correctly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)


def assert_same(a, b, x, atol=1e-5):
    a.eval(), b.eval()
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    assert torch.allclose(ya, yb, atol=atol, rtol=1e-5), float((ya - yb).abs().max())


# ------------------------------------------------------------------------------------------- groups
def test_group_norms_match_hand_computation():
    conv = nn.Conv2d(2, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(24, dtype=torch.float32).reshape(3, 2, 2, 2))
    w = conv.weight.detach()
    # filter n: sqrt(sum of the 8 values of filter n); filter 0 holds 0..7
    assert torch.allclose(filter_groups(conv, "c").norms(), torch.tensor(
        [math.sqrt(sum(v * v for v in range(8 * n, 8 * n + 8))) for n in range(3)]))
    # channel c: values 4c..4c+3 of each of the 3 filters
    hand_ch = [math.sqrt(sum((8 * n + 4 * c + k) ** 2 for n in range(3) for k in range(4))) for c in range(2)]
    assert torch.allclose(channel_groups(conv, "c").norms(), torch.tensor(hand_ch))
    # shape (c, i, j): one value per filter -> column of the [3, 8] lowered matrix
    hand_sh = [math.sqrt(sum((8 * n + col) ** 2 for n in range(3))) for col in range(8)]
    assert torch.allclose(shape_groups(conv, "c").norms(), torch.tensor(hand_sh))
    assert torch.allclose(layer_groups(conv, "c").norms(), w.norm().reshape(1))
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]))
    assert torch.allclose(row_groups(lin, "l").norms(), torch.tensor([5.0, 2.0]))
    assert torch.allclose(column_groups(lin, "l").norms(), torch.tensor([3.0, 4.0, 2.0]))
    # a filter group with its BatchNorm scale and shift
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.fill_(2.0)
        bn.bias.fill_(1.0)
    gs = filter_groups(conv, "c", bn=bn)
    assert gs.group_size == 8 + 2
    assert torch.allclose(gs.norms() ** 2, filter_groups(conv, "c").norms() ** 2 + 5.0)
    # depth: all parameters of a module
    d = depth_groups(nn.Sequential(conv, bn).named_parameters(), "b")
    assert d.n_groups == 1 and torch.allclose(d.norms(), torch.sqrt(w.pow(2).sum() + 3 * 5.0).reshape(1))


def test_ssl_groups_discovers_layers_and_bn():
    model = resnet20()
    sets = ssl_groups(model, filter=1.0, depth=2.0)
    filt = [s for s in sets if s.kind == "filter"]
    assert len(filt) == 19 and all(len(s.members) == 3 for s in filt)  # every conv is followed by a BN
    assert sum(s.kind == "depth" for s in sets) == 9
    lenet = lenet5()
    sets = ssl_groups(lenet, filter=1.0, channel=1.0, row=1.0)
    assert [(s.layer, s.kind) for s in sets] == [("0", "filter"), ("2", "filter"), ("2", "channel"), ("5", "row")]


# ------------------------------------------------------------------------------------------- regularizer
def test_penalty_gradient_matches_autograd_of_explicit_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
    with torch.no_grad():
        model[0].weight[1] = 0  # a zero filter: subgradient 0, not NaN
        model[1].weight[1] = 0
        model[1].bias[1] = 0
    lam = dict(filter=0.3, channel=0.2, shape=0.1, row=0.05, column=0.07)
    reg = GroupLasso(ssl_groups(model, **lam, input_channels=True, output_rows=True), mode="loss")
    reg.penalty().backward()
    got = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    W, bn, L = model[0].weight, model[1], model[3].weight
    explicit = 0.0
    for n in range(4):
        sq = W[n].pow(2).sum() + bn.weight[n] ** 2 + bn.bias[n] ** 2
        explicit = explicit + lam["filter"] * (sq.sqrt() if n != 1 else sq * 0)  # d sqrt at 0 is undefined
    explicit = explicit + lam["channel"] * sum(W[:, c].pow(2).sum().sqrt() for c in range(2))
    explicit = explicit + lam["shape"] * sum(W[:, c, i, j].pow(2).sum().sqrt()
                                             for c in range(2) for i in range(3) for j in range(3))
    explicit = explicit + lam["row"] * sum(L[o].pow(2).sum().sqrt() for o in range(5))
    explicit = explicit + lam["column"] * sum(L[:, i].pow(2).sum().sqrt() for i in range(64))
    explicit.backward()
    for a, p in zip(got, model.parameters()):
        want = torch.zeros_like(p) if p.grad is None else p.grad
        assert torch.isfinite(a).all()
        assert torch.allclose(a, want, atol=1e-6), (a - want).abs().max()
    assert torch.allclose(reg.penalty().detach(), explicit.detach(), rtol=1e-6)


def test_proximal_step_zeroes_small_groups_and_shrinks_others_exactly():
    lin = nn.Linear(2, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.6, 0.8], [6.0, 8.0]]))  # norms 5, .5, 1, 10
    gs = row_groups(lin, "l")
    zero = proximal_step(gs, tau=0.5, threshold=0.6)
    w = lin.weight.detach()
    assert zero.tolist() == [False, True, True, False]
    # norm .5 <= tau -> 0; norm 1 -> 0.5 < threshold 0.6 -> 0; others shrink by exactly tau, same direction
    assert torch.equal(w[1], torch.zeros(2)) and torch.equal(w[2], torch.zeros(2))
    assert torch.allclose(w[0], torch.tensor([3.0, 4.0]) * (4.5 / 5))
    assert torch.allclose(w[3], torch.tensor([6.0, 8.0]) * (9.5 / 10))
    # threshold_groups zeroes below a norm and reports how many it zeroed
    assert threshold_groups([gs], 4.6) == 1 and torch.equal(w[0], torch.zeros(2))


def test_group_lasso_callback_in_fit_uses_lr_and_both_modes():
    data = rand_splits()
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", lr=0.1, momentum=0.0)
    torch.manual_seed(0)
    m = lenet5()
    reg = GroupLasso(ssl_groups(m, filter=50.0), mode="proximal")  # tau = 5 per step: kills every filter
    st = fit(m, data, cfg, callbacks=[reg])
    assert st.history[-1]["zero_filter"] == 1.0
    assert bool((m[0].weight == 0).all()) and bool((m[2].weight == 0).all())
    # loss mode: the callback returns loss + penalty
    torch.manual_seed(0)
    m = lenet5()
    reg = GroupLasso(ssl_groups(m, channel=0.5), mode="loss", threshold=1e-3)
    loss = torch.tensor(1.0)
    assert torch.allclose(reg.before_backward(None, loss), 1.0 + reg.penalty())
    st = fit(m, data, cfg, callbacks=[reg])
    assert "ssl_penalty" in st.history[-1] and 0.0 <= st.history[-1]["zero_channel"] <= 1.0
    with pytest.raises(ValueError, match="mode"):
        GroupLasso([], mode="lasso")


def test_freeze_zero_groups_keeps_structure_during_finetuning():
    data = rand_splits()
    torch.manual_seed(0)
    m = lenet5()
    with torch.no_grad():
        m[0].weight[:5] = 0
    sets = ssl_groups(m, filter=1.0)
    fit(m, data, TrainConfig(epochs=1, batch_size=16, optimizer="sgd", lr=0.1, weight_decay=1e-3),
        callbacks=[FreezeZeroGroups(sets)])
    assert bool((m[0].weight[:5] == 0).all()) and bool((m[0].weight[5:] != 0).any())


# ------------------------------------------------------------------------------------------- thinning
def test_lowered_conv_matches_conv2d():
    torch.manual_seed(0)
    for kw in [dict(), dict(stride=2, padding=1), dict(padding=2, dilation=2)]:
        conv = nn.Conv2d(3, 5, 3, **kw)
        with torch.no_grad():
            conv.weight.view(5, -1)[:, [0, 4, 7, 20]] = 0
        low = lower_conv(conv)
        assert low.n_columns == 27 - 4
        x = torch.randn(6, 3, 11, 9)
        assert torch.allclose(low(x), conv(x), atol=1e-5)
        low.max_index_elements = 1  # one sample per chunk
        assert torch.allclose(low(x), conv(x), atol=1e-5)
        assert torch.allclose(low.dense_weight(), conv.weight.detach())
        # surgery keeps LoweredConv2d exact
        keep_in = torch.tensor([0, 2])
        x2 = x.clone()
        x2[:, 1] = 0
        assert torch.allclose(remove_channels(low, keep_in)(x2[:, keep_in]), conv(x2), atol=1e-5)
        assert torch.allclose(remove_filters(low, [1, 3])(x), conv(x)[:, [1, 3]], atol=1e-5)


def lenet_with_zeros():
    torch.manual_seed(1)
    m = lenet5()
    with torch.no_grad():
        m[0].weight[[1, 3, 5]] = 0          # dead conv1 filters; their biases (constants) fold into conv2
        m[2].weight[:, [2, 7]] = 0          # conv2 ignores channels 2, 7
        m[2].weight[[0, 4, 9]] = 0          # dead conv2 filters -> folded into fc1's bias through Flatten
        m[2].weight[:, 10:, 0, 0] = 0       # a shape column in channels 10.. (not whole channels)
        m[5].weight[[3, 10]] = 0            # fc1 rows (neurons)
        m[7].weight[:, 20] = 0              # fc2 ignores neuron 20
    return m


def test_thin_lenet_filters_channels_shapes_rows_columns():
    m = lenet_with_zeros()
    x = torch.rand(16, 1, 28, 28)
    t = thin(m, x[:1])
    # 20 - 3 dead - 2 unused = 15 conv1 filters; 50 - 3 conv2 filters; 500 - 2 rows - 1 unused column
    assert t[0].out_channels == 15 and isinstance(t[2], LoweredConv2d)
    assert t[2].in_channels == 15 and t[2].out_channels == 47
    kept_ch = [c for c in range(20) if c not in (1, 3, 5, 2, 7)]
    assert t[2].n_columns == 15 * 25 - sum(1 for c in kept_ch if c >= 10)
    assert t[5].in_features == 47 * 16 and t[5].out_features == 497 and t[7].in_features == 497
    assert_same(m, t, x)
    # shapes=False keeps a plain Conv2d; the function is the same
    t2 = thin(m, x[:1], shapes=False)
    assert isinstance(t2[2], nn.Conv2d) and t2[2].weight.shape == (47, 15, 5, 5)
    assert_same(m, t2, x)
    # the original is untouched
    assert m[0].out_channels == 20


def test_thin_keeps_dead_filter_when_its_constant_cannot_be_folded():
    """A dead filter with a non-zero bias feeding a padded conv is not a uniform bias: it must stay."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    with torch.no_grad():
        m[0].weight[1] = 0
        m[0].bias[1] = 0.7
        m[0].weight[2] = 0
        m[0].bias[2] = -0.5          # relu(-0.5) = 0: removable
    x = torch.rand(3, 1, 9, 9)
    t = thin(m, x[:1])
    assert t[0].out_channels == 3
    assert_same(m, t, x)


def test_flops_of_thinned_lenet_drop_by_the_exact_amount():
    m = lenet_with_zeros()
    x = torch.zeros(1, 1, 28, 28)
    t = thin(m, x)
    before = {r["layer"]: r["macs"] for r in layer_flops(m, x)}
    after = {r["layer"]: r["macs"] for r in layer_flops(t, x)}
    assert before == {"0": 20 * 25 * 24 * 24, "2": 50 * 500 * 8 * 8, "5": 800 * 500, "7": 500 * 10}
    kept_ch = [c for c in range(20) if c not in (1, 3, 5, 2, 7)]
    k = 15 * 25 - sum(1 for c in kept_ch if c >= 10)
    assert after == {"0": 15 * 25 * 24 * 24, "2": 47 * k * 8 * 8, "5": 47 * 16 * 497, "7": 497 * 10}
    assert model_flops(t, x) == 2 * sum(after.values())
    rep = {r["layer"]: r for r in sparsity_report(m)}
    assert rep["0"]["filters_nz"] == 17 and rep["2"]["channels_nz"] == 18 and rep["2"]["filters_nz"] == 47
    assert rep["5"]["filters_nz"] == 498 and rep["7"]["channels_nz"] == 499


def resnet_with_zeros():
    torch.manual_seed(0)
    r = resnet20()
    randomize_bn(r)
    with torch.no_grad():
        for name in ["layer1_1", "layer2_0", "layer3_2"]:        # whole branches (incl. a downsampling block)
            for p in getattr(r, name).branch.parameters():
                p.zero_()
        b = r.layer2_1.branch                                       # inner filters, with BN scale/shift
        b[0].weight[[1, 2, 5]] = 0
        b[1].weight[[1, 2, 5]] = 0
        b[1].bias[[1, 2, 5]] = 0
        r.layer3_0.branch[3].weight[:, [0, 3]] = 0                  # conv2 ignores two inner channels
    return r


def test_thin_resnet_removes_blocks_and_inner_channels_with_batchnorm():
    r = resnet_with_zeros()
    x = torch.rand(4, 1, 28, 28)
    t = thin(r, x[:1])
    assert isinstance(t.layer1_1, nn.Identity) and isinstance(t.layer2_0, PadShortcut)
    assert isinstance(t.layer3_2, nn.Identity)
    assert t.layer2_1.branch[0].out_channels == 29 and t.layer2_1.branch[1].num_features == 29
    assert t.layer3_0.branch[0].out_channels == 62
    assert r.depth() == 20 and t.depth() == 14
    assert_same(r, t, x)
    fl_r, fl_t = model_flops(r, x[:1]), model_flops(t, x[:1])
    removed = sum(f["flops"] for f in layer_flops(r, x[:1]) if f["layer"].split(".")[0] in ("layer1_1", "layer2_0", "layer3_2"))
    assert fl_t < fl_r - removed  # the inner channels save more on top of the removed blocks


def test_depth_prox_zeroes_branches_that_thinning_then_removes():
    torch.manual_seed(0)
    r = resnet20()
    randomize_bn(r)
    sets = ssl_groups(r, depth=1.0)
    norms = torch.stack([gs.norms()[0].detach() for gs in sets])
    small = [gs for gs, n in zip(sets, norms) if n < norms.median()]
    for gs in small:
        proximal_step(gs, tau=float(norms.median()))
    x = torch.rand(2, 1, 28, 28)
    t = thin(r, x[:1])
    assert t.depth() == 20 - 2 * len(small)
    assert_same(r, t, x)


def test_variant_layer_scale_multiplies_coefficients():
    from sparseforge.studies.ssl import Variant

    v = Variant(name="v", filter=0.2, channel=0.05, layer_scale={"0": 0.5})
    lams = {(gs.layer, gs.kind): gs.lam for gs in v.groups(lenet5())}
    assert lams == {("0", "filter"): 0.1, ("2", "filter"): 0.2, ("2", "channel"): 0.05}
    with pytest.raises(ValueError, match="layer_scale"):
        Variant(name="v", filter=0.2, layer_scale={"9": 0.5}).groups(lenet5())


def test_thinned_model_saves_reloads_and_exports(tmp_path):
    m = lenet_with_zeros()
    x = torch.rand(2, 1, 28, 28)
    t = thin(m, x[:1]).eval()
    torch.save(t, tmp_path / "t.pt")
    back = torch.load(tmp_path / "t.pt", weights_only=False)
    assert_same(t, back, x, atol=0)
    r = thin(resnet_with_zeros(), x[:1]).eval()
    torch.save(r.state_dict(), tmp_path / "r.pt")
    r2 = copy.deepcopy(r)
    for p in r2.parameters():
        p.data.zero_()
    r2.load_state_dict(torch.load(tmp_path / "r.pt"))
    assert_same(r, r2, x, atol=0)
    onnx = pytest.importorskip("onnx")
    for model, name in [(t, "lenet"), (r, "resnet")]:
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"])
        onnx.checker.check_model(onnx.load(str(path)))
        try:
            import onnxruntime as ort
        except ImportError:
            continue
        y = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            assert torch.allclose(torch.from_numpy(y), model(x), atol=1e-4)


def test_remove_filters_and_channels_low_level():
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 7, 7)
    assert torch.allclose(remove_filters(conv, [0, 2])(x), conv(x)[:, [0, 2]])
    lin = nn.Linear(2 * 4, 3)
    z = torch.randn(5, 2, 2, 2)
    z2 = z.clone()
    z2[:, 0] = 0
    new = remove_channels(lin, [1], spatial=4)
    assert torch.allclose(new(z[:, 1:].flatten(1)), lin(z2.flatten(1)), atol=1e-6)
    with pytest.raises(ValueError, match="distinct"):
        remove_filters(conv, [1, 1])


# ------------------------------------------------------------------------------------------- the command
def make_app():
    from sparseforge.cli import app

    return app


def tiny_config(tmp_path, **over):
    cfg = {
        "name": "t", "model": "lenet5", "data": {"name": "mnist", "limit": 96},
        "train": {"epochs": 1, "batch_size": 32, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        "ssl": {"epochs": 1, "lr": 0.05, "finetune_epochs": 1},
        "variants": [{"name": "prox", "mode": "proximal", "filter": 3.0, "channel": 3.0},
                     {"name": "loss", "mode": "loss", "shape": 1.0, "threshold": 0.05}],
        "bench": {"batch": 4, "repeats": 1, "number": 1},
        "export_onnx": False,
    }
    cfg.update(over)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_tiny_run_writes_tables_plots_and_report(tmp_path):
    pytest.importorskip("sparseforge.data.mnist")
    from sparseforge.data import DatasetUnavailable, load_dataset

    try:
        load_dataset("mnist", limit=1)
    except DatasetUnavailable:
        pytest.skip("MNIST not installed")
    run = tmp_path / "run"
    res = CliRunner().invoke(make_app(), ["ssl", "--config", str(tiny_config(tmp_path)), "--run-dir", str(run), "--quiet"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f in ["table.csv", "layers.csv", "conv1_filters.png", "sparsity.png", "report.md", "prox/thinned.pt"]:
        assert (run / f).exists(), f
    import csv

    rows = list(csv.DictReader(open(run / "table.csv")))
    assert [r["model"] for r in rows] == ["baseline", "prox", "loss"]
    assert float(rows[1]["flop_pct"]) < 1.0          # the strong proximal setting removed structures
    assert all(float(r["max_abs_diff"]) < 1e-4 for r in rows)
    # a second call resumes: nothing is retrained, same table
    res2 = CliRunner().invoke(make_app(), ["ssl", "--config", str(tiny_config(tmp_path)), "--run-dir", str(run), "--quiet"])
    assert res2.exit_code == 0 and list(csv.DictReader(open(run / "table.csv")))[1]["test_err"] == rows[1]["test_err"]
    # a finished variant is not reused under other settings: the error names the variant and the field
    changed = tiny_config(tmp_path, variants=[{"name": "prox", "mode": "proximal", "filter": 2.0, "channel": 3.0}])
    res3 = CliRunner().invoke(make_app(), ["ssl", "--config", str(changed), "--run-dir", str(run), "--quiet"])
    out = " ".join(res3.output.split())
    assert res3.exit_code == 2 and "'prox'" in out and "variant.filter" in out, out


def test_cli_bad_config_value_names_the_field(tmp_path):
    bad = tiny_config(tmp_path, variants=[{"name": "v", "mode": "lasso", "filter": 1.0}])
    res = CliRunner().invoke(make_app(), ["ssl", "--config", str(bad), "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2
    out = " ".join(res.output.split())
    assert "variants.0.mode" in out and "lasso" in out and "proximal" in out
    res = CliRunner().invoke(make_app(), ["ssl", "--config", str(tiny_config(tmp_path, bogus=1)), "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "bogus" in res.output
    res = CliRunner().invoke(make_app(), ["ssl", "--recipe", "nope", "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2 and "lenet-filter" in " ".join(res.output.split())


def test_packaged_recipes_validate():
    from sparseforge.cli.ssl import RECIPES, load_spec

    for name in RECIPES:
        cfg = load_spec(None, name, {"ssl": {"epochs": 2}})
        assert cfg.variants and cfg.ssl.epochs == 2
    # a partial train section keeps the recipe's other settings
    assert load_spec(None, "lenet-filter", {"train": {"epochs": 1}}).train.optimizer == "sgd"
