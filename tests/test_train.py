"""The training loop: learning happens, callbacks fire, checkpoints resume to the same result."""

import json
import math

import pytest
import torch

from sparseforge.data import load_dataset
from sparseforge.errors import ConfigError
from sparseforge.nn import SparseMLP
from sparseforge.topology import design
from sparseforge.train import Callback, TrainConfig, evaluate, fit, load_checkpoint, lr_factor


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def model(seed=0, fan_out=(8, 10)):
    torch.manual_seed(seed)
    return SparseMLP(design((64, 32, 10), fan_out=fan_out, seed=seed))


def test_sparse_mlp_learns_digits(digits):
    m = model()
    _, acc0 = evaluate(m, digits.test)
    state = fit(m, digits, TrainConfig(epochs=15, batch_size=32, lr=5e-3))
    assert acc0 < 0.3
    assert state.metrics["test_acc"] > 0.85
    assert len(state.history) == 15
    h = state.history[-1]
    assert h["params"] == m.num_parameters() and h["flops_per_sample"] == m.flops_per_sample()
    assert h["train_loss"] < state.history[0]["train_loss"]


class Recorder(Callback):
    def __init__(self):
        self.events = []

    def on_train_begin(self, s):
        self.events.append("begin")

    def on_epoch_begin(self, s):
        self.events.append(f"epoch{s.epoch}")

    def before_backward(self, s, loss):
        self.events.append("bb")
        return loss + 0.0 * sum(p.sum() for p in s.model.parameters())

    def after_step(self, s):
        self.events.append("step")

    def on_epoch_end(self, s):
        s.metrics["custom"] = s.epoch
        self.events.append("end")

    def on_train_end(self, s):
        self.events.append("done")


def test_callbacks_fire_in_order_and_add_metrics(digits):
    rec = Recorder()
    small = load_dataset("digits", seed=0, limit=64)
    state = fit(model(), small, TrainConfig(epochs=2, batch_size=32), callbacks=[rec])
    assert rec.events[0] == "begin" and rec.events[-1] == "done"
    assert rec.events.count("step") == 4 and rec.events.count("bb") == 4
    assert rec.events[1] == "epoch0" and "epoch1" in rec.events
    assert [h["custom"] for h in state.history] == [1, 2]


def test_resume_gives_identical_result(digits, tmp_path):
    cfg = TrainConfig(epochs=4, batch_size=64, lr=3e-3, lr_schedule="cosine")
    full = fit(model(), digits, cfg)

    class Stop(Callback):
        def on_epoch_end(self, s):
            if s.epoch == 2:
                raise KeyboardInterrupt

    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        fit(model(), digits, cfg, run_dir=run, callbacks=[Stop()])
    # interrupted before epoch 2 was saved: the checkpoint holds epoch 1 and epoch 2 is redone
    assert load_checkpoint(run / "checkpoint.pt", check_settings=False).payload["epoch"] == 1
    fresh = model()
    torch.manual_seed(123)
    for layer in fresh.layers:
        layer.reset_parameters()  # different weights: the checkpoint must supply them
    out = fit(fresh, digits, cfg, run_dir=run, resume=True)
    assert len(out.history) == 4
    assert [h["train_loss"] for h in out.history] == pytest.approx([h["train_loss"] for h in full.history], rel=1e-5)
    assert out.metrics["test_acc"] == full.metrics["test_acc"]


def test_resume_refuses_changed_settings(digits, tmp_path):
    fit(model(), load_dataset("digits", limit=64), TrainConfig(epochs=1), run_dir=tmp_path)
    with pytest.raises(ConfigError, match="train.lr 0.001 → 0.5"):
        fit(model(), digits, TrainConfig(epochs=2, lr=0.5), run_dir=tmp_path, resume=True)


def test_checkpoint_is_never_half_written(digits, tmp_path):
    fit(model(), load_dataset("digits", limit=64), TrainConfig(epochs=2), run_dir=tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3


def test_lr_schedules():
    cfg = TrainConfig(epochs=10, lr_schedule="cosine")
    assert lr_factor(cfg, 0) == 1.0 and lr_factor(cfg, 5) == pytest.approx(0.5)
    assert lr_factor(TrainConfig(lr_schedule="exponential", lr_decay=0.9), 2) == pytest.approx(0.81)
    assert lr_factor(TrainConfig(lr_schedule="step", lr_decay=0.1, lr_step=3), 3) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor(TrainConfig(lr_schedule="bogus"), 0)


def test_weight_decay_shrinks_weights(digits):
    small = load_dataset("digits", limit=200)
    a = fit(model(), small, TrainConfig(epochs=3, weight_decay=0.0, lr=1e-2)).model
    b = fit(model(), small, TrainConfig(epochs=3, weight_decay=0.5, lr=1e-2)).model
    norm = lambda m: math.sqrt(sum((l.weight ** 2).sum().item() for l in m.layers))  # noqa: E731
    assert norm(b) < 0.8 * norm(a)
