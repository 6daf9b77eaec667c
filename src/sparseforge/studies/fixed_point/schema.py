"""The fixed-point study's settings (``sparseforge hw fixed``; YAML keys of the same names) and what
follows from them alone: the word formats, the predicted range drift, the network, a dry validation."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from ...config import _Strict
from ...hardware import (FixedFormats, FixedPoint, FixedPointError, HardwareError, fixed_from_float, initial_weights,
                         train_step_fixed)
from ...topology import NetworkTopology
from ...topology.clash_free import design_clash_free


# ---------------------------------------------------------------------------------------------- config
class FixedStudyConfig(_Strict):
    """Settings of the fixed-point vs float study, ``sparseforge hw fixed`` (YAML keys of the same names;
    flags override). Defaults: the FPGA network, a few minutes on 1 core.

    Attributes:
        net, fan_out, z: the clash-free network (``N_net``, out-degree and parallelism per junction).
        interleaver, dither, seed: the clash-free generator's settings; ``seed`` also draws the initial
            weights and the sample order.
        dataset, data_root: the data (images in [0, 1]).
        limit: training samples used (None: all); test_limit: test samples used (None: all).
        epochs: passes over the training samples.
        batch_size: inputs per update (1 = online, as the hardware; gradients are summed, not averaged).
        lr_shift: learning rate ``2**-lr_shift`` for every run.
        word_bits: the fixed-point word lengths to train with (weights, activations, pre-activations and
            deltas all use ``FixedPoint(word_bits, int_bits)``).
        int_bits: integer bits (sign excluded) of those words; every combination with ``word_bits`` runs.
        input_bits: bits of the unsigned input words (``FixedPoint(input_bits, 0, unsigned)``).
        rounding: "nearest" (the hardware's add-half-and-truncate) or "stochastic".
        hidden: hidden nonlinearity, "sigmoid" (as the FPGA) or "relu"; the output layer is sigmoid.
        float_baseline: also train the float64 twin.
    """


    net: tuple[int, ...] = Field(default=(1024, 64, 32), min_length=2)
    fan_out: tuple[int, ...] = Field(default=(4, 16), min_length=1)
    z: tuple[int, ...] = Field(default=(128, 32), min_length=1)
    interleaver: Literal[1, 2, 3] = 1
    dither: bool = False
    seed: int = Field(default=0, ge=0)
    dataset: str = "mnist"
    data_root: str | None = None
    limit: int | None = Field(default=10000, ge=1, description="training samples (None: all)")
    test_limit: int | None = Field(default=None, ge=1, description="test samples (None: all)")
    epochs: int = Field(default=3, ge=1)
    batch_size: int = Field(default=1, ge=1, description="1 = online updates, as the hardware")
    lr_shift: int = Field(default=3, ge=0, le=30, description="learning rate 2**-lr_shift")
    word_bits: tuple[int, ...] = Field(default=(8, 10, 12, 16), description="fixed-point word lengths to train")
    int_bits: tuple[int, ...] = Field(default=(2, 3), min_length=1, description="integer bits (sign excluded) to sweep")
    input_bits: int = Field(default=8, ge=1, le=16)
    rounding: Literal["nearest", "stochastic"] = "nearest"
    hidden: Literal["sigmoid", "relu"] = "sigmoid"
    float_baseline: bool = True

    @field_validator("word_bits", "int_bits")
    @classmethod
    def _distinct(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(v)) != len(v):
            raise ValueError(f"values must be distinct, got {v}")
        if any(b < 0 for b in v):
            raise ValueError(f"bit counts must be >= 0, got {v}")
        return v

    def words(self) -> list[tuple[int, int]]:
        """The fixed-point runs: ``(word_bits, int_bits)`` for every combination, by int bits then length."""
        return [(int(w), int(i)) for i in self.int_bits for w in self.word_bits]

    def label(self, word: tuple[int, int] | None) -> str:
        """Sub-run name: ``float`` or ``w{word_bits:02d}_i{int_bits}`` (``_sr`` when stochastic)."""
        if word is None:
            return "float"
        return f"w{word[0]:02d}_i{word[1]}" + ("_sr" if self.rounding == "stochastic" else "")


# Fields a sub-run's result depends on, other than its word length; a run directory keeps them fixed.
RUN_KEYS = ("net", "fan_out", "z", "interleaver", "dither", "seed", "dataset", "limit", "test_limit",
             "batch_size", "lr_shift", "input_bits", "rounding", "hidden")


def study_formats(cfg: FixedStudyConfig, word: tuple[int, int]) -> FixedFormats:
    """The word formats of the fixed-point run ``word = (word_bits, int_bits)`` (raises
    :class:`FixedPointError` naming the word length)."""
    w = FixedPoint(int(word[0]), int(word[1]), rounding=cfg.rounding)
    return FixedFormats(weight=w, act=w, preact=w, delta=w,
                        input=FixedPoint(cfg.input_bits, 0, signed=False, rounding=cfg.rounding), hidden=cfg.hidden)


def range_drift(cfg: FixedStudyConfig, word: tuple[int, int]) -> bool | None:
    """Predicted from the formats alone: does a saturated wrong output keep pushing its bias down?

    A pre-activation saturated at ``-2**int_bits`` gives the ROM output ``q = act(sigmoid(-2**int_bits))``;
    the output delta ``q - 0`` then never vanishes, and the bias update ``2**-lr_shift * q`` survives the
    round-to-nearest exactly when it exceeds half a weight LSB. None for stochastic rounding (it always
    survives on average).
    """
    if cfg.rounding != "nearest":
        return None
    f = study_formats(cfg, word)
    q = float(f.act.quantize(np.array(1.0 / (1.0 + np.exp(-f.preact.min_value)))))
    return q * 2.0 ** -cfg.lr_shift > f.weight.lsb / 2


def build_topology(cfg: FixedStudyConfig) -> NetworkTopology:
    """The clash-free network of the study."""
    return design_clash_free(cfg.net, fan_out=cfg.fan_out, z=cfg.z, interleaver=cfg.interleaver,  # type: ignore[arg-type]
                             dither=cfg.dither, seed=cfg.seed)


def validate_study(cfg: FixedStudyConfig) -> NetworkTopology:
    """Check everything that does not need the data: the network, every format and the datapath widths
    (one dry training step per word length). Returns the topology; raises ``HardwareError``/``TopologyError``
    with a message naming the parameter."""
    if cfg.epochs < 1:
        raise HardwareError(f"epochs={cfg.epochs} must be >= 1")
    if cfg.batch_size < 1:
        raise HardwareError(f"batch_size={cfg.batch_size} must be >= 1")
    if cfg.lr_shift < 0:
        raise FixedPointError(f"lr_shift={cfg.lr_shift} must be >= 0 (learning rate 2**-lr_shift)")
    if not cfg.words() and not cfg.float_baseline:
        raise HardwareError("nothing to run: give at least one word length (word_bits, int_bits) or the float baseline")
    topo = build_topology(cfg)
    ws = initial_weights(topo, cfg.seed)
    x = np.zeros((cfg.batch_size, topo.sizes[0]))
    y = np.zeros(cfg.batch_size, dtype=np.int64)
    for word in cfg.words():
        try:
            f = study_formats(cfg, word)
            net = fixed_from_float(topo, ws, None, f)
            train_step_fixed(net, x, y, lr_shift=cfg.lr_shift, rng=np.random.default_rng(0))
        except FixedPointError as e:
            raise FixedPointError(f"word_bits={word[0]}, int_bits={word[1]}: {e}") from None
    return topo
