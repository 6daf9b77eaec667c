"""Library logic that used to live in the study runners: the model zoo (nn/zoo.py), degree solving
(topology/degrees.py) and the fixed-point training loop (hardware/train.py), used with plain arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparseforge.hardware import FixedFormats, FixedPoint, fixed_from_float, train_step_fixed
from sparseforge.hardware.train import float_twin, load_checkpoint, predict_classes, train_epochs
from sparseforge.nn.zoo import MODELS, build_model
from sparseforge.topology import TopologyError, design, resolve_out_degrees, valid_out_degrees
from sparseforge.topology.clash_free import design_clash_free
from sparseforge.topology.degrees import fc_edges, out_degrees, radix_widths, round_down, solve_fixed


# ---------------------------------------------------------------------------------------------- zoo
def test_zoo_builds_by_name_from_the_data_shape():
    torch.manual_seed(0)
    m = build_model("lenet300", (1, 28, 28), 10)
    # LeNet-300-100 by hand: weights + biases of 784-300-100-10
    assert sum(p.numel() for p in m.parameters()) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert build_model("lenet5", (3, 32, 32), 7)(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    assert build_model("resnet20", (1, 8, 8), 4)(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    mlp = build_model("mlp", (20,), 5, width=[12], density=0.5, seed=3)
    assert mlp.num_parameters() == design((20, 12, 5), density=0.5, seed=3).edges + 12 + 5
    cnn = build_model("cnn", (1, 8, 8), 3, channels=[4], fc_width=[6])
    assert cnn(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    assert set(MODELS) == {"lenet300", "lenet5", "resnet20", "mlp", "cnn"}


@pytest.mark.parametrize("args, needle", [
    (("lenet5", (1, 8, 8), 10), "lenet5 needs square images of side >= 16"),
    (("resnet20", (64,), 10), "resnet20 needs image samples"),
    (("vgg", (1, 28, 28), 10), "choose one of lenet300, lenet5"),
    (("lenet300", (784,), 1), "n_classes=1"),
])
def test_zoo_errors_name_the_model_and_the_shape(args, needle):
    with pytest.raises(ValueError, match=needle):
        build_model(*args)
    with pytest.raises(ValueError, match=r"model lenet5: options \['width'\]"):
        build_model("lenet5", (1, 28, 28), 10, width=[3])


# ---------------------------------------------------------------------------------------------- degrees
def test_out_degrees_sources():
    sizes = (100, 50, 20, 10)
    assert out_degrees(sizes) == (50, 20, 10)  # no source: fully connected
    assert out_degrees(sizes, density=0.4) == resolve_out_degrees(sizes, density=0.4)
    assert out_degrees(sizes, fan_out=[10, 4, 10]) == (10, 4, 10)
    d = out_degrees(sizes, edges_like=[100, 10, 10])  # budget of a 100-10-10 FC net: 1100 weights
    edges = sum(n * k for n, k in zip(sizes, d))
    assert abs(edges - 1100) <= 100 * 5 and d[-1] == 10  # nearest realisable degrees, last junction dense
    down = out_degrees(sizes, edges_like=[100, 10, 10], round_to_budget=True)
    assert sum(n * k for n, k in zip(sizes, down)) <= 1100


def test_solve_fixed_pins_junctions_and_spreads_the_rest():
    sizes = (100, 50, 20, 10)
    d = solve_fixed(sizes, 0.3, {3: 0.5})
    assert d[2] == 5  # junction 3 pinned at density 0.5 of its 10 outputs
    rho = sum(n * k for n, k in zip(sizes, d)) / sum(fc_edges(sizes))
    # brute force over the realisable degrees of the free junctions: the even spread is close to the best
    best = min(abs(sum(n * k for n, k in zip(sizes, (a, b, d[2]))) / sum(fc_edges(sizes)) - 0.3)
               for a in valid_out_degrees(100, 50) for b in valid_out_degrees(50, 20))
    assert abs(rho - 0.3) <= best + 0.02
    assert d[0] / 50 == pytest.approx(d[1] / 20, abs=0.1)  # the rest spread evenly
    with pytest.raises(TopologyError, match="junction 4 does not exist"):
        solve_fixed(sizes, 0.3, {4: 0.5})
    with pytest.raises(TopologyError, match="every junction is fixed"):
        solve_fixed((10, 10), 0.3, {1: 0.5})


def test_round_down_and_radix_widths():
    sizes = (60, 40, 10)
    d = round_down(sizes, (40, 10), budget=1000.0)
    assert sum(n * k for n, k in zip(sizes, d)) <= 1000 and d[0] in valid_out_degrees(60, 40)
    with pytest.raises(TopologyError, match="even the smallest degrees"):
        round_down(sizes, (40, 10), budget=10.0)
    assert radix_widths([[2, 5]], (10, 20, 30)) == (10, [1, 2, 3])
    with pytest.raises(TopologyError, match="multiple of N'=10"):
        radix_widths([[2, 5]], (10, 25, 30))


# ---------------------------------------------------------------------------------------------- hardware loop
def _tiny(word: bool):
    topo = design_clash_free((16, 8, 4), fan_out=(4, 2), z=(4, 2), seed=0)
    rng = np.random.default_rng(0)
    ws = [rng.normal(0, 0.5, size=p.padded_ell()[1].shape) * p.padded_ell()[1] for p in topo.patterns]
    w = FixedPoint(12, 3)
    formats = FixedFormats(weight=w, act=w, preact=w, delta=w, input=FixedPoint(8, 0, signed=False))
    fixed = fixed_from_float(topo, ws, None, formats)
    net = fixed if word else float_twin(fixed_from_float(topo, ws, None, FixedFormats()), ws, "sigmoid")
    x = formats.input.quantize(rng.random((40, 16)))
    y = rng.integers(0, 4, size=40)
    return net, x, y


@pytest.mark.parametrize("word", [True, False])
def test_train_epochs_resumes_exactly(tmp_path, word):
    net, x, y = _tiny(word)
    kw = dict(n_classes=4, batch_size=4, lr_shift=3, seed=1)
    full = train_epochs(net, x, y, x, y, epochs=3, checkpoint_path=tmp_path / "a.pt", row={"run": "a"}, **kw)
    assert [r["epoch"] for r in full] == [0, 1, 2, 3] and all(r["run"] == "a" for r in full)
    part = train_epochs(net, x, y, x, y, epochs=1, checkpoint_path=tmp_path / "b.pt", **kw)
    seen = []
    resumed = train_epochs(net, x, y, x, y, epochs=3, checkpoint_path=tmp_path / "b.pt", notify=seen.append, **kw)
    assert len(part) == 2 and [r["epoch"] for r in seen] == [2, 3]
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("epoch_time_s", "run")} for r in rows]  # noqa: E731
    assert strip(resumed) == strip(full)
    a, _ = load_checkpoint(tmp_path / "a.pt", net)
    b, _ = load_checkpoint(tmp_path / "b.pt", net)
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)
    # the accuracy in the history is the argmax over the first n_classes outputs on the test inputs
    # (round-to-nearest: the evaluation draws nothing from its generator)
    assert resumed[-1]["test_acc"] == float(np.mean(predict_classes(a, x, 4) == y))


def test_train_epochs_fixed_matches_hand_loop():
    """One epoch of train_epochs equals train_step_fixed applied in the documented sample order."""
    net, x, y = _tiny(True)
    hist = train_epochs(net, x, y, x, y, n_classes=4, epochs=1, batch_size=4, lr_shift=3, seed=5)
    order = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(1, 1))).permutation(len(y))
    rng = np.random.default_rng(np.random.SeedSequence(5, spawn_key=(2, 1)))
    ref, loss = net, 0.0
    for i in range(0, len(y), 4):
        idx = order[i : i + 4]
        ref, st = train_step_fixed(ref, x[idx], y[idx], lr_shift=3, rng=rng)
        loss += st.loss * st.batch
    assert hist[1]["train_loss"] == pytest.approx(loss / len(y), rel=1e-12)
