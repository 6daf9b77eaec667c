"""Recipes of the hardware model (seeds 000, 001): fixed-point vs float training, and table rows.

The fixed-point study trains one clash-free pre-defined sparse MLP several times on the same data, from
the same initial weights, in the same sample order and with the same power-of-two learning rate:

* once in float64 (:func:`~sparseforge.hardware.train_step_float`, no rounding anywhere), and
* once per word format in bit-accurate fixed point (:func:`~sparseforge.hardware.train_step_fixed`):
  weights, activations, pre-activations and deltas in ``FixedPoint(word_bits, int_bits)`` (1 sign bit,
  ``int_bits`` integer bits, the rest fraction) for every ``word_bits`` x ``int_bits`` of the sweep, 8-bit
  unsigned inputs, ROM nonlinearities, the update an arithmetic shift by ``lr_shift``.

The sweep over both shows the two ways fixed point breaks down: too few fraction bits (an update smaller
than half a weight LSB rounds to nothing, so learning freezes) and too few integer bits (a saturated
pre-activation keeps a sigmoid output at ``sigmoid(-2**int_bits)`` instead of letting it approach 0, so
the cross-entropy error ``a - y`` of every wrong output never vanishes and keeps pushing its weights
towards saturation; with 2 integer bits that is ``0.018`` per output per step).

Both arithmetics see the same 8-bit input words (MNIST pixels are 8-bit already; the hardware's input
memory holds them as ``FixedPoint(8, 0, unsigned)``), so the difference between the runs is the datapath's
word length and nothing else. The initial weights are drawn once in float64 (normal, std
``sqrt(2 / (d_in + d_out))`` per junction, biases 0) and rounded to each word format.

Network. The default is the FPGA's ``N = (1024, 64, 32)``, ``d_out = (4, 16)``, ``z = (128, 32)`` (the
configuration :func:`~sparseforge.hardware.plan_pipeline` reproduces the RTL's 36 clocks for): 28x28
images are zero-padded to 32x32 (1024 inputs, as the hardware's input memory is organised); labels use the
first ``n_classes`` of the 32 outputs, the other outputs are trained towards 0 and ignored by the argmax.
Any ``net`` works whose first layer is the flattened image (or a zero-padded square) and whose last layer
has at least ``n_classes`` outputs.

Resumable: the run directory is a :class:`~sparseforge.runs.RunStore` tied to the settings of
``_RUN_KEYS`` (others are refused naming the fields; word lengths, epochs and the float twin may change);
each arithmetic is a sub-run (``float``, ``w10_i2``, ...) with a checksummed ``checkpoint.pt`` written
atomically after every epoch (state and history in one file; the previous one kept) and ``result.json``
when it is done; a rerun skips finished sub-runs, continues partial ones, and extends them when
``epochs`` grows.
Library code: nothing here prints; progress goes to the ``notify`` callback.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from .. import io
from ..hardware import (
    FixedFormats,
    FixedMLP,
    FixedPoint,
    FixedPointError,
    FloatMLP,
    HardwareError,
    PipelineReport,
    SweepPoint,
    fixed_from_float,
    forward_fixed,
    forward_float,
    junction_model,
    train_step_fixed,
    train_step_float,
)
from ..runs import RunStore, canonical
from ..topology import NetworkTopology
from ..topology.clash_free import design_clash_free
from ..train.checkpoint import load_checkpoint, save_checkpoint

__all__ = [
    "FixedStudyConfig",
    "clash_rows",
    "hardware_inputs",
    "initial_weights",
    "load_study_data",
    "load_trained_fixed",
    "plan_rows",
    "range_drift",
    "run_fixed_study",
    "study_formats",
    "sweep_rows",
    "validate_study",
]


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class FixedStudyConfig:
    """Settings of the fixed-point vs float study (defaults: the FPGA network, a few minutes on 1 core).

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

    net: tuple[int, ...] = (1024, 64, 32)
    fan_out: tuple[int, ...] = (4, 16)
    z: tuple[int, ...] = (128, 32)
    interleaver: int = 1
    dither: bool = False
    seed: int = 0
    dataset: str = "mnist"
    data_root: str | None = None
    limit: int | None = 10000
    test_limit: int | None = None
    epochs: int = 3
    batch_size: int = 1
    lr_shift: int = 3
    word_bits: tuple[int, ...] = (8, 10, 12, 16)
    int_bits: tuple[int, ...] = (2, 3)
    input_bits: int = 8
    rounding: Literal["nearest", "stochastic"] = "nearest"
    hidden: Literal["sigmoid", "relu"] = "sigmoid"
    float_baseline: bool = True

    def words(self) -> list[tuple[int, int]]:
        """The fixed-point runs: ``(word_bits, int_bits)`` for every combination, by int bits then length."""
        return [(int(w), int(i)) for i in self.int_bits for w in self.word_bits]

    def label(self, word: tuple[int, int] | None) -> str:
        """Sub-run name: ``float`` or ``w{word_bits:02d}_i{int_bits}`` (``_sr`` when stochastic)."""
        if word is None:
            return "float"
        return f"w{word[0]:02d}_i{word[1]}" + ("_sr" if self.rounding == "stochastic" else "")


# Fields a sub-run's result depends on, other than its word length; a run directory keeps them fixed.
_RUN_KEYS = ("net", "fan_out", "z", "interleaver", "dither", "seed", "dataset", "limit", "test_limit",
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


# ------------------------------------------------------------------------------------------------ data
def hardware_inputs(x, n_inputs: int, input_format: FixedPoint) -> np.ndarray:
    """Images ``[n, *shape]`` in [0, 1] as the hardware's input words: flattened (zero-padded to a centred
    square when ``n_inputs`` is a larger square than the image) and quantized to ``input_format``.
    Returns float64 ``[n, n_inputs]`` holding exactly representable values."""
    x = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)
    n = x.shape[0]
    per = int(np.prod(x.shape[1:]))
    if per == n_inputs:
        flat = x.reshape(n, per)
    else:
        img = x.reshape(n, *x.shape[-2:]) if x.ndim >= 3 and int(np.prod(x.shape[1:-2])) == 1 else None
        side = int(round(np.sqrt(n_inputs)))
        if img is None or side * side != n_inputs or side < max(img.shape[1:]):
            raise HardwareError(
                f"net[0]={n_inputs} does not fit samples of shape {tuple(x.shape[1:])}: use {per} (flattened) or a "
                "square at least as large as the image (zero-padded, e.g. 1024 = 32x32 for 28x28 MNIST)"
            )
        h, w = img.shape[1:]
        top, left = (side - h) // 2, (side - w) // 2
        flat = np.zeros((n, side, side))
        flat[:, top : top + h, left : left + w] = img
        flat = flat.reshape(n, n_inputs)
    return input_format.quantize(flat)


@dataclass(frozen=True, eq=False)
class StudyData:
    """Training and test inputs (hardware input words, float64) and labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def load_study_data(cfg: FixedStudyConfig) -> StudyData:
    """The first ``limit`` samples of the loader's seeded shuffle of the training set and the first
    ``test_limit`` of a seeded permutation of the test set (a smaller limit gives a subset of a larger
    one), as hardware input words."""
    from ..data import load_dataset

    d = load_dataset(cfg.dataset, root=cfg.data_root, seed=cfg.seed, val_size=0)
    if cfg.net[-1] < d.n_classes:
        raise HardwareError(f"net[-1]={cfg.net[-1]} outputs cannot encode {d.n_classes} classes of {d.name}")
    fmt = FixedPoint(cfg.input_bits, 0, signed=False)
    n_tr = len(d.train) if cfg.limit is None else min(cfg.limit, len(d.train))
    te = np.arange(len(d.test))
    if cfg.test_limit is not None and cfg.test_limit < len(te):
        te = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(7,))).permutation(te)[: cfg.test_limit]
    return StudyData(
        hardware_inputs(d.train.x[:n_tr], cfg.net[0], fmt), d.train.y[:n_tr].numpy().astype(np.int64),
        hardware_inputs(d.test.x[te], cfg.net[0], fmt), d.test.y[te].numpy().astype(np.int64), d.n_classes,
    )


# ---------------------------------------------------------------------------------------------- models
def initial_weights(topo: NetworkTopology, seed: int) -> list[np.ndarray]:
    """Float64 initial weights ``[n_out, d_max]`` per junction (0 in padding slots): normal with std
    ``sqrt(2 / (d_in + d_out))`` (Glorot for the junction's degrees), from ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    out = []
    for p in topo.patterns:
        _, valid = p.padded_ell()
        std = np.sqrt(2.0 / (float(p.in_degrees.mean()) + float(p.out_degrees.mean())))
        out.append(rng.normal(0.0, std, size=valid.shape) * valid)
    return out


def _float_net(fixed: FixedMLP, weights: Sequence[np.ndarray], hidden: str) -> FloatMLP:
    return FloatMLP(fixed.plans, tuple(np.asarray(w, dtype=np.float64) for w in weights),
                    tuple(np.zeros(p.pattern.n_out) for p in fixed.plans), hidden)  # type: ignore[arg-type]


def _predict(net: FixedMLP | FloatMLP, x: np.ndarray, n_classes: int, rng, chunk: int = 1000) -> np.ndarray:
    """Class decisions: argmax over the first ``n_classes`` outputs (ties: the lowest class, like a
    comparator chain); fixed point compares the output codes."""
    out = []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        o = forward_fixed(net, xb, rng=rng).acts[-1] if isinstance(net, FixedMLP) else forward_float(net, xb)[0][-1]
        out.append(np.argmax(o[:, :n_classes], axis=1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


CHECKPOINT = "checkpoint.pt"


def _run_settings(cfg: FixedStudyConfig) -> dict:
    """The settings every sub-run's result depends on (``run.json`` of the study)."""
    return {k: v for k, v in canonical(cfg).items() if k in _RUN_KEYS}


def _save_checkpoint(path: Path, net: FixedMLP | FloatMLP, history: list[dict], settings: dict) -> None:
    arrays = {f"w{j}": w for j, w in enumerate(net.weights)}
    arrays.update({f"b{j}": b for j, b in enumerate(net.biases)})
    save_checkpoint(path, {"arrays": arrays, "history": history}, settings=settings)


def _load_checkpoint(path: Path, like: FixedMLP | FloatMLP,
                     settings: dict | None = None) -> tuple[FixedMLP | FloatMLP, list[dict]] | None:
    """The network (shaped like ``like``) and history of the newest good checkpoint, None if there is none;
    with ``settings`` the checkpoint must have been made under them."""
    loaded = load_checkpoint(path, settings=settings, check_settings=settings is not None)
    if loaded is None:
        return None
    z, J = loaded.payload["arrays"], len(like.weights)
    ws = tuple(z[f"w{j}"] for j in range(J))
    bs = tuple(z[f"b{j}"] for j in range(J))
    return dataclasses.replace(like, weights=ws, biases=bs), loaded.payload["history"]


# ------------------------------------------------------------------------------------------------ runs
def _train_run(
    cfg: FixedStudyConfig,
    word: tuple[int, int] | None,
    topo: NetworkTopology,
    data: StudyData,
    sub: Path,
    notify: Callable[[str, dict], None] | None,
) -> list[dict]:
    """Train one arithmetic (resuming), return its history: one row per epoch, epoch 0 = the initial net."""
    label = cfg.label(word)
    result = sub / "result.json"
    if result.exists():
        done = json.loads(result.read_text())["history"]
        if len(done) > cfg.epochs:
            return done[: cfg.epochs + 1]
    ws = initial_weights(topo, cfg.seed)
    if word is None:
        fmt_net = fixed_from_float(topo, ws, None, FixedFormats(hidden=cfg.hidden))
        net: FixedMLP | FloatMLP = _float_net(fmt_net, ws, cfg.hidden)
        formats = None
    else:
        formats = study_formats(cfg, word)
        net = fixed_from_float(topo, ws, None, formats)
    ckpt, ck_settings = sub / CHECKPOINT, {"run": _run_settings(cfg), "label": label}
    history: list[dict] = []
    loaded = _load_checkpoint(ckpt, net, ck_settings)
    if loaded is not None:
        net, history = loaded
    eval_rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(3,)))
    lr = 2.0 ** -cfg.lr_shift
    edges = [int(p.valid.sum()) for p in net.plans]
    base = dict(label=label, arithmetic="float" if word is None else "fixed", word_bits=None if word is None else word[0],
                int_bits=None if formats is None else formats.weight.int_bits,
                frac_bits=None if formats is None else formats.weight.frac_bits,
                rounding=None if formats is None else cfg.rounding, lr_shift=cfg.lr_shift)

    def evaluate(epoch: int, **extra) -> dict:
        pred = _predict(net, data.x_test, data.n_classes, eval_rng)
        return dict(base, epoch=epoch, test_acc=float(np.mean(pred == data.y_test)) if len(pred) else float("nan"),
                    **extra)

    if not history:
        history.append(evaluate(0, train_loss=None, saturated=0, weights_changed=None, epoch_time_s=0.0))
        _save_checkpoint(ckpt, net, history, ck_settings)
    n, B = len(data.y_train), cfg.batch_size
    for epoch in range(len(history), cfg.epochs + 1):
        order = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(1, epoch))).permutation(n)
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(2, epoch)))
        before = net.weights
        t0 = time.perf_counter()
        loss = 0.0
        sat = 0
        for i in range(0, n, B):
            idx = order[i : i + B]
            if word is None:
                net, st = train_step_float(net, data.x_train[idx], data.y_train[idx], lr=lr)  # type: ignore[arg-type]
            else:
                net, st = train_step_fixed(net, data.x_train[idx], data.y_train[idx], lr_shift=cfg.lr_shift,  # type: ignore[arg-type]
                                           rng=rng)
            loss += st.loss * st.batch
            sat += st.saturated
        dt = time.perf_counter() - t0
        changed = sum(int(np.count_nonzero((a != b) & p.valid)) for a, b, p in zip(before, net.weights, net.plans))
        row = evaluate(epoch, train_loss=loss / max(n, 1), saturated=sat, weights_changed=changed / sum(edges),
                       epoch_time_s=dt)
        history.append(row)
        _save_checkpoint(ckpt, net, history, ck_settings)
        if notify:
            notify(label, row)
    io.write_json(result, {"label": label, "word": word, "config": dataclasses.asdict(cfg),
                           "history": history})
    return history


def run_fixed_study(
    cfg: FixedStudyConfig,
    run_dir: str | Path,
    *,
    data: StudyData | None = None,
    notify: Callable[[str, dict], None] | None = None,
    overwrite: bool = False,
) -> dict[str, list[dict]]:
    """Train the float twin and every word length (resuming), write ``epochs.csv``, ``summary.csv``,
    ``fixed_vs_float.png`` and ``report.md`` in ``run_dir``.

    A ``run_dir`` holding a study of other settings (those of ``_RUN_KEYS``) is refused naming the fields,
    unless ``overwrite`` (then cleared); word lengths, epochs and the float twin may change on a rerun.

    Returns ``{"epochs": rows, "summary": rows}``: per (run, epoch) ``label, arithmetic, word_bits,
    int_bits, frac_bits, epoch, test_acc, train_loss, saturated, weights_changed, epoch_time_s``; per run
    the final ``test_acc``, ``vs_float`` (difference of fractions) and the last epoch's diagnostics.
    """
    run_dir = Path(run_dir)
    topo = validate_study(cfg)
    with RunStore(run_dir, _run_settings(cfg), command="hw fixed", overwrite=overwrite):
        io.write_json(run_dir / "config.json", cfg)  # the full config, for load_trained_fixed and export
        data = data or load_study_data(cfg)
        runs: list[tuple[int, int] | None] = ([None] if cfg.float_baseline else []) + cfg.words()
        epochs_rows: list[dict] = []
        for word in runs:
            epochs_rows += _train_run(cfg, word, topo, data, run_dir / cfg.label(word), notify)
        summary = _summary(epochs_rows, cfg)
        _write_outputs(epochs_rows, summary, run_dir, cfg, topo, data)
    return {"epochs": epochs_rows, "summary": summary}


def _summary(rows: list[dict], cfg: FixedStudyConfig) -> list[dict]:
    last: dict[str, dict] = {}
    for r in rows:
        last[r["label"]] = r
    flt = last.get("float")
    out = []
    for label, r in last.items():
        out.append(dict(
            label=label, arithmetic=r["arithmetic"], word_bits=r["word_bits"], int_bits=r["int_bits"],
            frac_bits=r["frac_bits"], lsb=None if r["frac_bits"] is None else 2.0 ** -r["frac_bits"],
            epochs=r["epoch"], test_acc=r["test_acc"],
            vs_float=None if flt is None else r["test_acc"] - flt["test_acc"],
            saturated_last_epoch=r["saturated"], weights_changed_last_epoch=r["weights_changed"],
            range_drift=None if r["word_bits"] is None else range_drift(cfg, (r["word_bits"], r["int_bits"])),
            train_time_s=sum(x["epoch_time_s"] for x in rows if x["label"] == label),
        ))
    return out


def load_trained_fixed(sub_run: str | Path) -> tuple[FixedMLP, FixedStudyConfig, tuple[int, ...]]:
    """The trained fixed-point network of a study sub-run (e.g. ``runs/hw_fixed/w10_i2``), its study
    config and its ``z`` (for :func:`~sparseforge.hardware.export_network`)."""
    sub = Path(sub_run)
    cfg_path, ckpt = sub.parent / "config.json", sub / CHECKPOINT
    if not cfg_path.exists() or not ckpt.exists():
        raise HardwareError(f"{sub} is not a sub-run of a fixed-point study (needs {cfg_path} and {ckpt})")
    raw = json.loads(cfg_path.read_text())
    kw = {f.name: raw[f.name] for f in dataclasses.fields(FixedStudyConfig) if f.name in raw}
    for k in ("net", "fan_out", "z", "word_bits", "int_bits"):
        kw[k] = tuple(kw[k]) if isinstance(kw[k], (list, tuple)) else (kw[k],)
    cfg = FixedStudyConfig(**kw)
    result = sub / "result.json"
    word = json.loads(result.read_text()).get("word") if result.exists() else None
    if word is None:
        m = re.fullmatch(r"w(\d+)_i(\d+)(_sr)?", sub.name)
        if m is None:
            raise HardwareError(f"{sub}: not a fixed-point sub-run (the float run has no hardware words)")
        word = (int(m.group(1)), int(m.group(2)))
    topo = build_topology(cfg)
    net = fixed_from_float(topo, initial_weights(topo, cfg.seed), None, study_formats(cfg, tuple(word)))
    net, _ = _load_checkpoint(ckpt, net)  # type: ignore[misc]  (the file exists: checked above)
    return net, cfg, cfg.z  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------- outputs
def _write_outputs(rows: list[dict], summary: list[dict], run_dir: Path, cfg: FixedStudyConfig,
                   topo: NetworkTopology, data: StudyData) -> None:
    io.write_csv(run_dir / "epochs.csv", rows)
    io.write_csv(run_dir / "summary.csv", summary)
    _plot(rows, summary, run_dir / "fixed_vs_float.png", cfg)
    io.write_text(run_dir / "report.md", _report(rows, summary, cfg, topo, data))


def _plot(rows: list[dict], summary: list[dict], path: Path, cfg: FixedStudyConfig) -> Path:
    from ..runs.plots import save_figure, subplots

    fig, (ax1, ax2) = subplots(1, 2, figsize=(11, 4))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for label in labels:
        rs = [r for r in rows if r["label"] == label]
        style = dict(c="k", ls="--", lw=2) if label == "float" else {}
        ax1.plot([r["epoch"] for r in rs], [100 * r["test_acc"] for r in rs], marker="o", label=label, **style)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("per epoch")
    ax1.grid(True, alpha=0.3)
    ax1.xaxis.get_major_locator().set_params(integer=True)
    ax1.legend(fontsize=8, loc="center right")
    fx = [s for s in summary if s["arithmetic"] == "fixed"]
    for ib in sorted({s["int_bits"] for s in fx}):
        grp = sorted((s for s in fx if s["int_bits"] == ib), key=lambda s: s["word_bits"])
        ax2.plot([s["word_bits"] for s in grp], [100 * s["test_acc"] for s in grp], marker="o",
                 label=f"fixed point, {ib} integer bits")
    if fx:
        ax2.set_xticks(sorted({s["word_bits"] for s in fx}))
    flt = next((s for s in summary if s["label"] == "float"), None)
    if flt:
        ax2.axhline(100 * flt["test_acc"], c="k", ls="--", label="float64")
    ax2.set_xlabel("word length (bits, sign and integer bits included)")
    ax2.set_ylabel("final test accuracy (%)")
    ax2.set_title(f"after {cfg.epochs} epochs")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    fig.suptitle(f"{cfg.dataset}: N={tuple(cfg.net)}, d_out={tuple(cfg.fan_out)}, clash-free z={tuple(cfg.z)}, "
                 f"lr 2^-{cfg.lr_shift}, batch {cfg.batch_size}", fontsize=10)
    return save_figure(fig, path)


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}%"


def _pivot(summary: list[dict], cfg: FixedStudyConfig) -> list[str]:
    """Final test accuracy: one row per word length, one column per integer-bit count (markdown lines)."""
    fx = [s for s in summary if s["arithmetic"] == "fixed"]
    flt = next((s for s in summary if s["label"] == "float"), None)
    if not fx:
        return []
    ibs = sorted({s["int_bits"] for s in fx})
    head = f"Final test accuracy after {cfg.epochs} epochs" + (
        f" (float64: {_pct(flt['test_acc'])}; in brackets the difference to float in points)" if flt else "") + ":"
    lines = [head, "", "| word bits | " + " | ".join(f"{ib} integer bits" for ib in ibs) + " |",
             "|---:|" + "---:|" * len(ibs)]
    for wb in sorted({s["word_bits"] for s in fx}):
        cells = []
        for ib in ibs:
            s = next((x for x in fx if x["word_bits"] == wb and x["int_bits"] == ib), None)
            if s is None:
                cells.append("")
            else:
                vs = f" ({100 * s['vs_float']:+.2f})" if s["vs_float"] is not None else ""
                cells.append(_pct(s["test_acc"]) + vs)
        lines.append(f"| {wb} | " + " | ".join(cells) + " |")
    return lines + [""]


def _report(rows: list[dict], summary: list[dict], cfg: FixedStudyConfig, topo: NetworkTopology,
            data: StudyData) -> str:
    epochs = sorted({r["epoch"] for r in rows})
    dens = ", ".join(f"{100 * p.density:.2f}%" for p in topo.patterns)
    lines = [
        f"# Fixed-point vs float training on {cfg.dataset}",
        "",
        f"Network N = {tuple(cfg.net)}, out-degrees {tuple(cfg.fan_out)} (junction densities {dens}; "
        f"{topo.edges:,} weights), clash-free for z = {tuple(cfg.z)} (interleaver {cfg.interleaver}, "
        f"seed {cfg.seed}). Inputs: {len(data.y_train):,} training and {len(data.y_test):,} test samples as "
        f"{cfg.input_bits}-bit unsigned words"
        + (", 28x28 images zero-padded to 32x32" if cfg.net[0] == 1024 else "") + f"; {data.n_classes} classes "
        f"on the first {data.n_classes} of {cfg.net[-1]} sigmoid outputs (cross-entropy cost), hidden "
        f"{cfg.hidden}.",
        "",
        f"Every run starts from the same float64 weights (rounded to its format), sees the same samples in the "
        f"same order ({cfg.epochs} epochs, batch {cfg.batch_size}{' = online, as the hardware' if cfg.batch_size == 1 else ''}) "
        f"and uses the same learning rate 2^-{cfg.lr_shift} (an arithmetic shift in fixed point). Fixed point: "
        "weights, activations, pre-activations and deltas in words of `word_bits` bits: a sign bit, `int_bits` "
        f"integer bits and the rest fraction bits; rounding {cfg.rounding}, saturating; sigmoid and its derivative "
        "from ROMs. The float run rounds nothing.",
        "",
        *_pivot(summary, cfg),
        "Test accuracy per epoch (epoch 0 = the initial weights):",
        "",
        "| run | frac bits | " + " | ".join(f"epoch {e}" for e in epochs) + " | vs float |",
        "|---|---:|" + "---:|" * len(epochs) + "---:|",
    ]
    by = {s["label"]: s for s in summary}
    for label in dict.fromkeys(r["label"] for r in rows):
        accs = {r["epoch"]: r["test_acc"] for r in rows if r["label"] == label}
        s = by[label]
        vs = "" if s["vs_float"] is None or label == "float" else f"{100 * s['vs_float']:+.2f}"
        lines.append(f"| {label} | {'' if s['frac_bits'] is None else s['frac_bits']} | "
                     + " | ".join(_pct(accs.get(e)) for e in epochs) + f" | {vs} |")
    lines += [
        "",
        "Diagnostics of the last epoch (`weights changed`: fraction of the weights whose value changed during "
        "the epoch; `saturated`: values clipped to the word range in that epoch):",
        "",
        "| run | train loss | weights changed | saturated | saturation drift (predicted) | s/epoch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in by:
        r = [x for x in rows if x["label"] == label][-1]
        loss = "" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        drift = by[label]["range_drift"]
        lines.append(f"| {label} | {loss} | {_pct(r['weights_changed'])} | {r['saturated']:,} | "
                     f"{'' if drift is None else ('yes' if drift else 'no')} | {r['epoch_time_s']:.1f} |")
    sat = ", ".join(f"{ib} integer bits: sigmoid(-{2 ** ib}) = {1 / (1 + np.exp(2.0 ** ib)):.2g}"
                    for ib in sorted(set(cfg.int_bits)))
    lines += [
        "",
        "Where fixed point breaks down:",
        "",
        "* Precision (fraction bits). An update smaller than half a weight LSB rounds to nothing with "
        f"round-to-nearest: with the learning rate 2^-{cfg.lr_shift} a weight moves only when "
        f"|sum of delta * activation| >= 2^({cfg.lr_shift} - 1 - frac_bits). Short words freeze most weights "
        "(`weights changed`); stochastic rounding (`--rounding stochastic`) keeps small updates alive on average.",
        "* Range (integer bits). A pre-activation saturates at -2^int_bits, so a wrong output's sigmoid cannot "
        f"fall below sigmoid(-2^int_bits) ({sat}). If that rounds to a non-zero activation code q, the "
        "cross-entropy error a - y of every wrong output never vanishes, and if the bias step it causes, "
        f"2^-{cfg.lr_shift} q, exceeds half a weight LSB, the weights into the outputs drift down to saturation "
        "in every step (a float network's outputs approach 0 and the push fades). `saturation drift` is this "
        "prediction from the formats alone: short words are protected by their coarse LSBs (the push rounds "
        "away), longer words with too few integer bits are not.",
        "",
        "![fixed vs float](fixed_vs_float.png)",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- CLI table rows
def plan_rows(report: PipelineReport, clock_hz: float) -> dict:
    """Rows for ``sparseforge hw plan``: ``junctions`` (one per junction) and ``summary`` (figures with
    units in the names) of a pipeline report at a clock of ``clock_hz`` Hz."""
    junctions = [
        dict(junction=t.junction, n_in=t.n_in, n_out=t.n_out, edges=t.edges, z=t.z, cycles=t.cycles,
             stall_cycles=t.stall_cycles, clocks_per_pass=t.clocks, multipliers=report.processes * t.z)
        for t in report.junctions
    ]
    summary = dict(
        report.summary(),
        clock_mhz=clock_hz / 1e6,
        block_cycle_clocks=report.block_clocks,
        latency_us=1e6 * report.latency_seconds(clock_hz),
        throughput_inputs_per_s=report.throughput(clock_hz),
        multipliers=report.multipliers,
        sequential_clocks_per_input=report.sequential_clocks_per_input,
        edge_serial_clocks_per_input=report.edge_serial_clocks_per_input,
    )
    return {"junctions": junctions, "summary": summary}


def clash_rows(topo: NetworkTopology, z: Sequence[int]) -> list[dict]:
    """Per junction of ``topo`` processed with parallelism ``z``: clashes (memory, cycle) pairs read more
    than once, the extra reads they need, and the stall cycles (the right layer held in ``z_{i+1}``
    memories, the output layer in ``z_J``), as in :func:`~sparseforge.hardware.pipeline_from_patterns`."""
    pats = list(topo.patterns)
    if len(z) != len(pats):
        raise HardwareError(f"z: N_net={list(topo.sizes)} has {len(pats)} junctions, got {len(z)} values {list(z)}")
    rows = []
    for i, p in enumerate(pats):
        rb = int(z[i + 1]) if i + 1 < len(pats) else int(z[i])
        m = junction_model(p, int(z[i]), right_banks=rb)
        cl = m.clashes
        rows.append(dict(
            junction=i + 1, n_in=p.n_in, n_out=p.n_out, edges=p.edges, z=m.z, cycles=m.cycles,
            clashes=len(cl), left_clashes=sum(c.side == "left" for c in cl),
            right_clashes=sum(c.side == "right" for c in cl), extra_reads=sum(c.extra_clocks for c in cl),
            stall_cycles=m.stall_cycles, clash_free=m.is_clash_free,
        ))
    return rows


def sweep_rows(points: Sequence[SweepPoint], clock_hz: float) -> list[dict]:
    """Rows for ``sparseforge hw sweep``: one per configuration, with throughput at ``clock_hz``."""
    return [
        dict(z=",".join(map(str, p.z)), block_cycles=p.block_cycles, clocks_per_input=p.clocks_per_input,
             throughput_inputs_per_s=clock_hz / p.clocks_per_input, memory_kbit=p.memory_bits / 1000,
             memories=p.memories, blocks=p.blocks, multipliers=p.multipliers, balanced=p.balanced)
        for p in points
    ]
