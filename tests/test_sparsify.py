"""sparsify(): which layers, which densities, what stays untouched, and outputs against dense float64 math."""

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

from sparseforge import SparseLinear, sparsify
from sparseforge.nn.sparsify import later_denser, select_linears
from sparseforge.topology import valid_out_degrees


class UserNet(nn.Module):
    """A model written elsewhere: nested containers, a conv, a shared-free plain layout."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.body = nn.Sequential(nn.Linear(4 * 6 * 6, 96), nn.ReLU(), nn.Linear(96, 48), nn.ReLU())
        self.head = nn.Linear(48, 10)

    def forward(self, x):
        return self.head(self.body(torch.relu(self.stem(x)).flatten(1)))


def _dense_reference(layer: SparseLinear) -> np.ndarray:
    """The layer's weight as a dense float64 matrix, scattered edge by edge from the pattern by hand."""
    w = np.zeros((layer.out_features, layer.in_features))
    vals = layer.weight.detach().double().numpy().reshape(-1)
    for e, (r, c) in enumerate(zip(layer.pattern.rows, layer.pattern.indices)):
        w[r, c] = vals[e]
    return w


def test_plain_module_selected_layers_sparse_rest_untouched_and_forward_matches_float64():
    torch.manual_seed(0)
    model = UserNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = sparsify(model, density=0.1, seed=3)

    assert isinstance(model.body[0], SparseLinear) and isinstance(model.body[2], SparseLinear)
    assert type(model.head) is nn.Linear  # the classifier stays dense by default
    for key in ("stem.weight", "stem.bias", "head.weight", "head.bias"):
        assert torch.equal(model.state_dict()[key], before[key])
    # densities: the nearest realisable fixed out-degree, fixed in- and out-degrees
    for r, layer in zip(report.layers[:2], (model.body[0], model.body[2])):
        ok = valid_out_degrees(r.n_in, r.n_out)
        assert r.d_out == min(ok, key=lambda d: (abs(d / r.n_out - 0.1), -d))
        assert layer.pattern.is_fixed_in_degree and layer.pattern.is_fixed_out_degree
        assert layer.pattern.d_out == r.d_out and r.edges == layer.pattern.edges == r.n_in * r.d_out
        assert r.params_after == r.edges + r.n_out
    assert report.layers[2].kept_dense == "last layer"
    assert report.model_params_after == sum(p.numel() for p in model.parameters())
    assert report.model_params_before == sum(v.numel() for v in before.values())

    x = torch.randn(5, 1, 6, 6)
    h = torch.relu(model.stem(x)).flatten(1).detach().double().numpy()
    for layer in (model.body[0], model.body[2]):
        h = np.maximum(h @ _dense_reference(layer).T + layer.bias.detach().double().numpy(), 0)
    ref = h @ model.head.weight.detach().double().numpy().T + model.head.bias.detach().double().numpy()
    np.testing.assert_allclose(model(x).detach().double().numpy(), ref, rtol=1e-5, atol=1e-5)
    model(x).sum().backward()
    assert model.body[0].weight.grad is not None and model.body[0].weight.grad.abs().sum() > 0


def test_fresh_init_has_the_sparse_fan_in_and_keep_weights_copies_the_pattern_entries():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
    dense_w = model[0].weight.detach().clone()
    kept = copy.deepcopy(model)
    sparsify(model, density=0.25, seed=0)
    sparsify(kept, density=0.25, seed=0, keep_weights=True)
    assert model[0].pattern == kept[0].pattern  # same seed, same pattern
    d_in = model[0].pattern.d_in
    assert model[0].weight.abs().max() <= 1 / np.sqrt(d_in) + 1e-7
    assert model[0].weight.abs().max() > 0.5 / np.sqrt(d_in)  # scaled by the real fan-in, not by 64
    mask = torch.as_tensor(kept[0].pattern.to_dense())
    torch.testing.assert_close(kept[0].to_dense(), dense_w * mask)


def test_per_layer_dict_and_later_denser_rule():
    model = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 128),
                          nn.ReLU(), nn.Linear(128, 10))
    rep = sparsify(copy.deepcopy(model), density={"0": 0.05, "*": 0.5})
    assert [r.density for r in rep.layers[:3]] == [pytest.approx(6 / 128), 0.5, 0.5]
    rule = later_denser(0.05, 0.4)
    assert rule("a", 0, 3) == pytest.approx(0.05) and rule("c", 2, 3) == pytest.approx(0.4)
    rep = sparsify(copy.deepcopy(model), density=rule)
    dens = [r.density for r in rep.layers[:3]]
    assert dens[0] < dens[1] < dens[2]
    assert rep.layers[2].requested == pytest.approx(0.4)
    with pytest.raises(ValueError, match=r"density: layer '2' matches no key of \['0'\]"):
        sparsify(copy.deepcopy(model), density={"0": 0.1})


def test_torchvision_style_classifier_head_by_glob_regex_and_type():
    class VGGish(nn.Module):  # the layout of torchvision's VGG/AlexNet: features, avgpool, classifier
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
            self.avgpool = nn.AdaptiveAvgPool2d((4, 4))
            self.classifier = nn.Sequential(nn.Linear(8 * 16, 256), nn.ReLU(True), nn.Dropout(),
                                            nn.Linear(256, 256), nn.ReLU(True), nn.Dropout(), nn.Linear(256, 10))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    net = VGGish()
    assert select_linears(net, include="classifier.*") == ["classifier.0", "classifier.3", "classifier.6"]
    assert select_linears(net, include=re.compile(r"\.3$")) == ["classifier.3"]
    assert select_linears(net, include=nn.Linear, exclude="classifier.0") == ["classifier.3", "classifier.6"]
    rep = sparsify(net, density=0.125, include="classifier.*", dense_last=False)
    assert all(isinstance(net.classifier[i], SparseLinear) for i in (0, 3, 6))
    assert [r.density for r in rep.layers] == [0.125, 0.125, 0.5]  # 256 -> 10: d_out must be a multiple of 5
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("batch_first", [True, False])
def test_transformer_encoder_layer_feed_forward_equals_dense_reference_train_and_fast_path(batch_first):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0,
                                       batch_first=batch_first)
    attn = {k: v.clone() for k, v in layer.self_attn.state_dict().items()}
    rep = sparsify(layer, density=0.25, include=nn.Linear, dense_last=False, seed=1)
    assert [r.name for r in rep.layers] == ["linear1", "linear2"]  # attention's out_proj is never touched
    assert type(layer.self_attn.out_proj) is nn.modules.linear.NonDynamicallyQuantizableLinear
    for k, v in layer.self_attn.state_dict().items():
        assert torch.equal(v, attn[k])

    ref = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=batch_first)
    ref.load_state_dict({k: v for k, v in layer.state_dict().items() if not k.startswith("linear")}, strict=False)
    with torch.no_grad():
        for name in ("linear1", "linear2"):
            getattr(ref, name).weight.copy_(getattr(layer, name).to_dense())
            getattr(ref, name).bias.copy_(getattr(layer, name).bias)
    ref, layer = ref.double(), layer.double()
    x = torch.randn(3, 7, 32, dtype=torch.float64)
    torch.testing.assert_close(layer(x), ref(x))  # training mode: the regular path
    layer.eval(), ref.float().eval()
    with torch.no_grad():  # eval + no_grad: torch would take its fused fast path, which reads dense weights
        torch.testing.assert_close(layer.float()(x.float()), ref(x.float()), rtol=1e-4, atol=1e-4)


def test_a_layer_registered_under_two_names_is_replaced_everywhere():
    shared = nn.Linear(16, 16)
    model = nn.Module()
    model.a, model.b, model.out = shared, shared, nn.Linear(16, 2)
    rep = sparsify(model, density=0.25)
    assert model.a is model.b and isinstance(model.a, SparseLinear)
    assert [r.name for r in rep.layers] == ["a", "out"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(density=0.0), r"density=0.0 is not allowed: a density must be a number in \(0, 1\]"),
    (dict(density=1.5), r"density=1.5 is not allowed"),
    (dict(density="10%"), r"density='10%' is not allowed"),
    (dict(density=0.1, family="nope"), r"family='nope' is not a known pattern family; choose one of \[.*'structured'"),
    (dict(density=0.1, include="encoder.*"), r"include='encoder.\*', exclude=None matched no nn.Linear layer; "
                                             r"the model's nn.Linear layers \(outside attention\) are \['0', '2'\]"),
    (dict(density=0.1, include="2"), r"matched only the last layer '2'.*dense_last=False"),
    (dict(density=0.1, include=3), r"include: 3 is not allowed; give glob strings"),
    (dict(density=0.1, family="clash_free", z=7), r"layer '0' \(32 -> 16\), family 'clash_free'"),
])
def test_bad_arguments_give_one_clear_value_error(kwargs, message):
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    with pytest.raises(ValueError, match=message):
        sparsify(model, **kwargs)
    assert type(model[0]) is nn.Linear  # nothing replaced before the error


def test_report_markdown_lists_every_layer():
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4))
    text = str(sparsify(model, density=0.25))
    assert "| 0 | 16x32 | 25% | 25% | 4 / 8 | 128 |" in text and "| 2 (last layer) | 4x16 |" in text


def test_a_layer_that_cannot_take_the_pattern_leaves_the_whole_model_unchanged():
    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 32), nn.Linear(32, 20), nn.Linear(20, 20), nn.Linear(20, 2))
    with pytest.raises(ValueError, match=r"layer '3' \(20 -> 20\), family 'clash_free'.*z=16 must divide"):
        sparsify(model, density=0.25, family="clash_free", z=16)  # z=16 banks need n_in a multiple of 16
    assert all(type(m) is nn.Linear for m in model)


@pytest.mark.parametrize("family", ["random", "expander"])
def test_families_with_varying_degrees_report_mean_degrees_and_train(family):
    """family='random' used to raise 'pattern has variable out-degree' after replacing the first layer (the model
    left half-sparsified); the report now gives mean degrees, and the model computes as float64 dense math says."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 32), nn.ReLU(), nn.Linear(32, 4))
    report = sparsify(model, density=0.25, family=family, seed=1)
    assert all(isinstance(model[i], SparseLinear) for i in (0, 2)) and type(model[4]) is nn.Linear
    for r, layer in zip(report.layers[:2], (model[0], model[2])):
        p = layer.pattern
        assert r.edges == p.edges and r.d_out == pytest.approx(p.edges / p.n_in) and r.d_in == pytest.approx(p.edges / p.n_out)
        assert isinstance(r.d_out, int) == p.is_fixed_out_degree and isinstance(r.d_in, int) == p.is_fixed_in_degree
    assert any(not layer.pattern.is_fixed_out_degree or not layer.pattern.is_fixed_in_degree
               for layer in (model[0], model[2]))
    assert "~" in str(report)
    x = torch.randn(6, 64)
    h = x.double().numpy()
    for layer in (model[0], model[2]):
        h = np.maximum(h @ _dense_reference(layer).T + layer.bias.detach().double().numpy(), 0)
    ref = h @ model[4].weight.detach().double().numpy().T + model[4].bias.detach().double().numpy()
    np.testing.assert_allclose(model(x).detach().double().numpy(), ref, rtol=1e-5, atol=1e-5)


def test_density_far_from_the_request_warns_with_the_realisable_ones():
    """784 -> 300 allows out-degrees 75k only: 10% becomes 25%, and the user is told so (300 -> 100 at 10% is
    exact: no warning for it)."""
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
    with pytest.warns(UserWarning) as caught:
        report = sparsify(model, density=0.1)
    msgs = [str(w.message) for w in caught if "sparsify" in str(w.message)]
    assert len(msgs) == 1 and "'0' (784 -> 300" in msgs[0] and "25%" in msgs[0] and "10%" in msgs[0], msgs
    assert report.layers[0].density == 0.25 and report.layers[1].density == 0.1


def test_block_and_grouped_families_take_a_density_they_can_build():
    """A Transformer feed-forward made block-sparse at 10%: 512 -> 2048 and 2048 -> 512 round to 8 x a block-level
    degree (9.38%), where the plain rounding (10.01%: d_out 205) used to make the generator refuse."""
    ff = nn.TransformerEncoderLayer(d_model=512, nhead=8, dim_feedforward=2048, batch_first=True)
    report = sparsify(ff, density=0.1, family="block", block=8, include=["linear1", "linear2"], dense_last=False)
    assert [(r.name, r.d_out % 8, round(r.density, 4)) for r in report.layers] == [("linear1", 0, 0.0938),
                                                                                    ("linear2", 0, 0.0938)]
    assert ff.linear1._layout.block == 8 and ff.linear2._layout.block == 8  # the block kernels run
    assert ff(torch.rand(2, 5, 512)).shape == (2, 5, 512)
    model = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 64))
    report = sparsify(model, density=0.1, family="grouped", group=4)
    assert report.layers[0].d_out % 4 == 0 and model[0]._layout.group == 4
