"""Pruning: schedules, masks and criteria, masked training, conversion to sparse layers, structure
extraction, the Pruner callback, and the ``prune`` command on a tiny setting."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import typer
from torch import nn
from cli_runner import BoundaryRunner as CliRunner

from sparseforge.config import ConfigError, parse
from sparseforge.data import load_dataset
from sparseforge.nn import DenseLinear, SparseLinear, SparseMLP, lenet5, lenet_300_100
from sparseforge.prune import (Constant, Cubic, FunctionSchedule, Linear, MaskedConv2d, MaskedLinear, Piecewise,
                               Pruner, SparseSequential, apply_masks, check_monotone, compute_masks, extract_masks,
                               layer_sparsity, mask_topology, masked_layers, masks_from_topology, prune_below,
                               prune_once, remove, removable_groups, schedule_from_dict, to_sparse, to_sparse_mlp)
from sparseforge.train import TrainConfig, fit


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Shared 2-core machines: one torch thread here, restored for the other test files."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def mlp(seed: int = 0, n_in: int = 64) -> nn.Sequential:
    torch.manual_seed(seed)
    return lenet_300_100(n_in=n_in)


# ---------------------------------------------------------------------------------------------- schedules
def test_cubic_formula_values_and_endpoints():
    s = Cubic(initial=0.1, target=0.9, start=100, end=1100, every=1)
    assert s(0) == 0.0 and s(99) == 0.0  # dense before pruning starts
    assert s(100) == pytest.approx(0.1)
    for t in (100, 350, 600, 850, 1099):
        expected = 0.9 + (0.1 - 0.9) * (1 - (t - 100) / 1000) ** 3
        assert s(t) == pytest.approx(expected, abs=1e-12)
    assert s(600) == pytest.approx(0.9 - 0.8 / 8)  # half-way: 7/8 of the way up
    assert s(1100) == s(10**6) == 0.9
    assert s.final == 0.9


def test_cubic_prunes_every_k_steps_and_is_monotone():
    s = Cubic(initial=0.0, target=0.95, start=0, end=1000, every=100)
    values = [s(t) for t in range(0, 1200)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    changes = [t for t in range(1, 1200) if values[t] != values[t - 1]]
    assert changes == list(range(100, 1001, 100))
    assert s(150) == s(100) == pytest.approx(0.95 * (1 - 0.9**3))
    check_monotone(s, range(0, 1200))


def test_linear_constant_piecewise_and_round_trip():
    lin = Linear(initial=0.2, target=0.6, start=10, end=50)
    assert lin(9) == 0 and lin(10) == pytest.approx(0.2) and lin(30) == pytest.approx(0.4) and lin(99) == 0.6
    const = Constant(0.75, start=5)
    assert const(4) == 0 and const(5) == const(500) == 0.75
    pw = Piecewise(((0, 0.0), (10, 0.5), (20, 0.9)))
    assert pw(5) == pytest.approx(0.25) and pw(15) == pytest.approx(0.7) and pw(100) == 0.9
    for sch in (lin, const, pw, Cubic(target=0.99, end=77, every=7)):
        d = json.loads(json.dumps(sch.to_dict()))
        assert schedule_from_dict(d) == sch
    with pytest.raises(ValueError, match="must not decrease"):
        Piecewise(((0, 0.5), (10, 0.4)))
    with pytest.raises(ValueError, match="must be non-decreasing"):
        FunctionSchedule(lambda t: 0.5 if t < 10 else 0.2, horizon=100)
    f = FunctionSchedule(lambda t: min(0.9, t / 100), horizon=100)
    assert f(50) == 0.5 and f.final == 0.9
    with pytest.raises(ValueError, match="kind"):
        schedule_from_dict({"kind": "exponential"})
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Cubic(target=1.0)


# ---------------------------------------------------------------------------------------------- masks
@pytest.mark.parametrize("s", [0.5, 0.9, 0.99])
def test_layerwise_magnitude_sparsity_is_exact(s):
    m = mlp()
    w_before = {n: l.weight.detach().clone() for n, l in m.named_modules() if isinstance(l, nn.Linear)}
    res = prune_once(m, s)
    for name, layer in masked_layers(m).items():
        n = layer.weight.numel()
        assert layer.kept == n - round(s * n)
        assert res.sparsity[name] == pytest.approx(round(s * n) / n)
        kept_mag = w_before[name].abs()[layer.mask.bool()]
        pruned_mag = w_before[name].abs()[~layer.mask.bool()]
        assert kept_mag.min() >= pruned_mag.max() == pytest.approx(res.threshold[name])
        assert torch.all(layer.weight[~layer.mask.bool()] == 0)


def test_global_scope_exact_total_and_single_threshold():
    m = mlp()
    res = prune_once(m, 0.9, scope="global")
    layers = masked_layers(m)
    total = sum(l.weight.numel() for l in layers.values())
    assert sum(l.kept for l in layers.values()) == total - round(0.9 * total)
    assert res.overall == pytest.approx(round(0.9 * total) / total)
    kept = torch.cat([l.weight[l.mask.bool()].abs() for l in layers.values()])
    assert kept.min() >= max(res.threshold.values())
    assert len({round(v, 6) for v in res.sparsity.values()}) > 1  # layers differ under one threshold
    table = layer_sparsity(m)
    assert [r["layer"] for r in table] == ["1", "3", "5", "overall"]
    assert table[-1]["kept"] == total - round(0.9 * total) and table[-1]["sparsity"] == pytest.approx(res.overall)


def test_per_layer_targets_and_masks_never_grow_back():
    m = mlp()
    prune_once(m, {"1": 0.9, "5": 0.5})
    layers = masked_layers(m)
    assert set(layers) == {"1", "5"} and layers["1"].sparsity == pytest.approx(0.9, abs=1e-4)
    before = layers["1"].mask.clone()
    with torch.no_grad():
        layers["1"].weight.add_(torch.randn_like(layers["1"].weight))  # scramble magnitudes
    res = compute_masks(layers, {"1": 0.95})
    assert not torch.any(res.masks["1"] & ~before.bool())  # pruned weights stay pruned
    res = compute_masks(layers, 0.3)  # target below current sparsity: nothing changes
    assert torch.equal(res.masks["1"], before.bool()) and res.newly_pruned["1"] == 0


def test_prune_below_threshold():
    m = mlp()
    w = m[1].weight.detach().clone()
    spars = prune_below(m, {"1": 0.02})
    assert spars["1"] == pytest.approx(float((w.abs() < 0.02).float().mean()))
    assert isinstance(m[1], MaskedLinear) and type(m[3]) is nn.Linear


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_masked_gradient_stays_zero_through_optimizer_steps(opt, digits):
    m = mlp()
    prune_once(m, 0.8)
    masks = {n: l.mask.bool().clone() for n, l in masked_layers(m).items()}
    params = list(m.parameters())
    o = (torch.optim.Adam(params, lr=1e-2, weight_decay=1e-3) if opt == "adam"
         else torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-3))
    x, y = digits.train.x[:64], digits.train.y[:64]
    for _ in range(5):
        o.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        for n, l in masked_layers(m).items():
            assert torch.all(l.weight.grad[~masks[n]] == 0)
            assert torch.any(l.weight.grad[masks[n]] != 0)
        o.step()
    for n, l in masked_layers(m).items():
        assert torch.all(l.weight[~masks[n]] == 0)


def test_apply_masks_shares_parameters_and_remove_bakes_zeros():
    m = lenet5()
    w_ids = {id(p) for p in m.parameters()}
    apply_masks(m)
    assert {id(p) for p in m.parameters()} == w_ids
    assert isinstance(m[0], MaskedConv2d) and isinstance(m[5], MaskedLinear)
    x = torch.rand(3, 1, 28, 28)
    dense_out = lenet5()(x)  # different init: only checks that shapes work
    res = prune_once(m, 0.7)
    y = m(x)
    assert y.shape == dense_out.shape and res.overall == pytest.approx(0.7, abs=1e-4)
    structure = extract_masks(m)
    remove(m)
    assert not masked_layers(m) and type(m[0]) is nn.Conv2d
    assert torch.allclose(m(x), y)
    assert torch.equal(extract_masks(m, zeros=True)["2"], structure["2"])


def test_removable_groups_of_a_conv_mask():
    mask = torch.ones(4, 3, 2, 2)
    mask[1] = 0  # filter 1 gone
    mask[:, 2] = 0  # input channel 2 read by no filter
    assert removable_groups(mask) == {"filters": [1], "channels": [2]}


# ---------------------------------------------------------------------------------------------- conversion
@pytest.mark.parametrize("s,scope", [(0.9, "layer"), (0.97, "global")])  # global at init empties layer 1
def test_converted_model_matches_masked_model(s, scope):
    m = mlp(n_in=784)
    prune_once(m, s, scope=scope)
    fast = to_sparse(m)
    assert isinstance(fast, SparseSequential)
    assert all(isinstance(l, SparseLinear) for l in fast if isinstance(l, (nn.Linear, SparseLinear)))
    x = torch.rand(17, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(fast(x), m(x), atol=1e-5)
    nnz = sum(l.kept for l in masked_layers(m).values())
    biases = 300 + 100 + 10
    assert fast.num_parameters() == nnz + biases
    assert sum(p.numel() for p in fast.parameters()) == nnz + biases
    assert fast.flops_per_sample() == 2 * nnz + biases
    # the sparse model also trains: gradients flow to the kept weights only
    fast(x).sum().backward()
    assert fast[3].weight.grad.numel() == fast[3].edges > 0


def test_conversion_keeps_unpruned_layers_dense_and_converts_lenet5():
    m = mlp()
    prune_once(m, {"1": 0.9})
    fast = to_sparse(m, zeros=False)
    assert isinstance(fast[1], SparseLinear) and type(fast[3]) is nn.Linear
    m5 = lenet5()
    prune_once(m5, 0.9)
    f5 = to_sparse(m5)
    assert type(f5[0]) is nn.Conv2d and isinstance(f5[5], SparseLinear)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(f5(x), m5(x), atol=1e-5)
    full = to_sparse(apply_masks(mlp()))
    assert all(isinstance(l, DenseLinear) for l in full if hasattr(l, "forward_fm"))


def test_structure_extraction_round_trip():
    m = mlp()
    prune_once(m, 0.95)
    topo = mask_topology(m)
    assert topo.sizes == (64, 300, 100, 10) and topo.family == "pruned"
    masks = extract_masks(m)
    assert topo.edges == sum(int(v.sum()) for v in masks.values())
    for name, p in zip(["1", "3", "5"], topo.patterns):
        assert np.array_equal(p.to_dense(), masks[name].numpy())
    back = masks_from_topology(topo, mlp(seed=5))
    assert all(torch.equal(back[n], masks[n]) for n in masks)
    # same structure, new initialisation: retrain from scratch as a SparseMLP
    fresh = apply_masks(mlp(seed=5), back)
    assert torch.equal(extract_masks(fresh)["3"], masks["3"])
    torch.manual_seed(1)
    a = SparseMLP(topo)
    torch.manual_seed(2)
    b = SparseMLP(topo)
    assert not torch.equal(a.layers[0].weight, b.layers[0].weight)
    assert a.num_parameters() == topo.edges + 410
    # trained weights carried over
    sm = to_sparse_mlp(m)
    x = torch.rand(5, 64)
    with torch.no_grad():
        assert torch.allclose(sm(x), m(x), atol=1e-5)


# ---------------------------------------------------------------------------------------------- Pruner
def test_pruner_reaches_scheduled_sparsity_on_digits(digits):
    m = mlp()
    cfg = TrainConfig(epochs=3, batch_size=64, lr=3e-3)
    spe = math.ceil(len(digits.train) / cfg.batch_size)
    schedule = Cubic(initial=0.0, target=0.9, start=0, end=2 * spe, every=3)
    pruner = Pruner(m, schedule, eval_every=spe)
    state = fit(m, digits, cfg, callbacks=[pruner])
    h = state.history
    for row in h:
        step = row["epoch"] * spe
        assert row["target_sparsity"] == pytest.approx(schedule(step))
        assert row["sparsity"] == pytest.approx(schedule(step), abs=1e-3)
    assert h[-1]["sparsity"] == pytest.approx(0.9, abs=1e-4)
    assert all(h[-1][f"sparsity/{n}"] == pytest.approx(0.9, abs=1e-3) for n in ("1", "3", "5"))
    assert [r["step"] for r in pruner.log] == sorted({r["step"] for r in pruner.log})
    assert all(b["sparsity"] >= a["sparsity"] for a, b in zip(pruner.log, pruner.log[1:]))
    assert len(pruner.log) > 10 and [c["step"] for c in pruner.curve] == [0, spe, 2 * spe, 3 * spe]
    assert state.metrics["test_acc"] > 0.6  # still learns while being pruned to 90%
    for layer in masked_layers(m).values():
        assert torch.all(layer.weight[layer.mask == 0] == 0)


def test_pruner_resume_continues_the_schedule(digits, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=128, lr=3e-3)
    spe = math.ceil(len(digits.train) / cfg.batch_size)
    sched = Linear(target=0.8, start=0, end=2 * spe, every=2)
    m1 = mlp()
    p1 = Pruner(m1, sched)
    full = fit(m1, digits, cfg, callbacks=[p1])
    m2 = mlp()
    fit(m2, digits, TrainConfig(**{**cfg.__dict__, "epochs": 1}), callbacks=[Pruner(m2, sched)], run_dir=tmp_path)
    m3 = mlp()
    p3 = Pruner(m3, sched)
    resumed = fit(m3, digits, cfg, callbacks=[p3], run_dir=tmp_path, resume=True)
    assert resumed.metrics["test_acc"] == pytest.approx(full.metrics["test_acc"])
    assert torch.equal(extract_masks(m3)["1"], extract_masks(m1)["1"])
    assert p3.log == p1.log and p3.log[0]["step"] == 2  # every=2: first pruning at step 2


# ---------------------------------------------------------------------------------------------- CLI
def _app() -> typer.Typer:
    from sparseforge.cli import app

    return app


def test_prune_command_tiny_setting(tmp_path):
    run = tmp_path / "run"
    res = CliRunner().invoke(_app(), ["prune", "--config", "prune_tiny", "--run-dir", str(run), "--quiet",
                                      "--limit", "400", "--bench-batches", "1,8"])
    assert res.exit_code == 0, res.output
    assert "one-shot vs iterative" in res.output and "per-layer sparsity" in res.output
    for f in ("sweep.csv", "layers.csv", "retrain.csv", "bench.csv", "report.md", "figures/accuracy_vs_sparsity.png",
              "figures/iterative_s90.png", "figures/retrain_curves.png", "figures/speedup.png"):
        assert (run / f).exists(), f
    sweep = (run / "sweep.csv").read_text().splitlines()
    assert len(sweep) == 1 + 1 + 2 * 2  # header, dense, 2 methods x 2 sparsities
    from sparseforge.studies.prune import kernel_backends

    n_backends = len(kernel_backends())  # stock, and native where the compiled kernels are available
    assert len((run / "bench.csv").read_text().splitlines()) == 1 + 2 * 2 * n_backends  # x 2 sparsities x 2 batches
    # resumable: a second invocation reuses every sub-run
    mtime = (run / "iterative_s90" / "result.json").stat().st_mtime
    res2 = CliRunner().invoke(_app(), ["prune", "--config", "prune_tiny", "--run-dir", str(run), "--quiet",
                                       "--limit", "400", "--parts", "sweep"])
    assert res2.exit_code == 0, res2.output
    assert (run / "iterative_s90" / "result.json").stat().st_mtime == mtime


def test_bad_config_value_names_the_field(tmp_path):
    from sparseforge.studies.prune import PruneSpec

    bad = tmp_path / "bad.yaml"
    bad.write_text("model: lenet300\nprune: {scope: everywhere}\n")
    res = CliRunner().invoke(_app(), ["prune", "--config", str(bad), "--run-dir", str(tmp_path / "r")])
    assert res.exit_code == 2
    text = " ".join(res.output.split())
    assert "prune.scope" in text and "everywhere" in text and "'layer'" in text and "'global'" in text
    assert text.count("error") == 1
    with pytest.raises(ConfigError, match=r"prune\.sparsities.*1\.5"):
        parse(PruneSpec, {"prune": {"sparsities": [0.5, 1.5]}})
    with pytest.raises(ConfigError, match=r"retrain\.seedz.*Extra inputs are not permitted"):
        parse(PruneSpec, {"retrain": {"seedz": [1]}})
    res = CliRunner().invoke(_app(), ["prune", "--model", "lenet5", "--dataset", "digits", "--run-dir",
                                      str(tmp_path / "r2")])
    assert res.exit_code == 2 and "lenet5 needs square images" in " ".join(res.output.split())


def test_packaged_recipes_validate():
    from sparseforge.config import load_yaml
    from sparseforge.config import RECIPES
    from sparseforge.studies.prune import PruneSpec

    recipes = sorted(RECIPES.glob("prune_*.yaml"))
    assert len(recipes) >= 3
    for path in recipes:
        cfg = load_yaml(path, PruneSpec)
        assert cfg.prune.sparsities and all(0 < s < 1 for s in cfg.prune.sparsities)


def test_pruned_conv_zero_filters_are_removed_by_ssl_thinning():
    """One mechanism: pruning bakes its zeros in (``remove``), SSL's ``thin`` removes dead filters/channels."""
    ssl = pytest.importorskip("sparseforge.ssl")
    torch.manual_seed(0)
    m = apply_masks(lenet5())
    masks = extract_masks(m)
    masks["0"][3] = False  # filter 3 of conv 1 pruned away
    masks["2"][:, 7] = False  # no conv-2 filter reads channel 7
    apply_masks(m, masks)
    assert removable_groups(m[0].mask)["filters"] == [3] and removable_groups(m[2].mask)["channels"] == [7]
    x = torch.rand(4, 1, 28, 28)
    y = m.eval()(x)
    small = ssl.thin(remove(m), x[:1])
    assert small[0].out_channels == 18 and small[2].in_channels == 18
    with torch.no_grad():
        assert torch.allclose(small(x), y, atol=1e-5)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_wrap_shares_parameters_and_unwrap_gives_the_plain_layer(kind):
    from sparseforge.prune.masked import MaskedConv2d, MaskedLinear

    torch.manual_seed(0)
    layer, cls, x = ((nn.Linear(4, 3), MaskedLinear, torch.randn(2, 4)) if kind == "linear"
                     else (nn.Conv2d(2, 3, 3), MaskedConv2d, torch.randn(1, 2, 5, 5)))
    m = cls.wrap(layer)
    assert m.weight is layer.weight and "mask" in m.state_dict() and "mask" not in layer.state_dict()
    m.register_forward_hook(lambda *a: None)
    assert not layer._forward_hooks  # the wrapper's hooks are its own
    m.mask[0].zero_()
    plain = m.unwrap()
    assert type(plain) is type(layer) and "mask" not in plain.state_dict() and plain.weight is m.weight
    assert (plain.weight[0] == 0).all()
    torch.testing.assert_close(plain(x), m(x))
