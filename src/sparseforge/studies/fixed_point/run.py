"""Running the fixed-point study: one sub-run
per arithmetic (float twin and every word format) through :func:`~sparseforge.hardware.train.train_epochs`,
resumable; and reading a trained sub-run back."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from ... import io
from ...config import parse
from ...runs import RunStore, canonical
from ...hardware import FixedFormats, FixedMLP, FloatMLP, HardwareError, fixed_from_float, initial_weights
from ...hardware.train import float_twin, load_checkpoint, train_epochs
from ...topology import NetworkTopology
from .data import StudyData, load_study_data
from .report import write_outputs
from .schema import build_topology, FixedStudyConfig, range_drift, RUN_KEYS, study_formats, validate_study


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
        net: FixedMLP | FloatMLP = float_twin(fmt_net, ws, cfg.hidden)
        formats = None
    else:
        formats = study_formats(cfg, word)
        net = fixed_from_float(topo, ws, None, formats)
    base = dict(label=label, arithmetic="float" if word is None else "fixed", word_bits=None if word is None else word[0],
                int_bits=None if formats is None else formats.weight.int_bits,
                frac_bits=None if formats is None else formats.weight.frac_bits,
                rounding=None if formats is None else cfg.rounding, lr_shift=cfg.lr_shift)
    history = train_epochs(net, data.x_train, data.y_train, data.x_test, data.y_test, n_classes=data.n_classes,
                           epochs=cfg.epochs, batch_size=cfg.batch_size, lr_shift=cfg.lr_shift, seed=cfg.seed,
                           checkpoint_path=sub / CHECKPOINT,
                           checkpoint_settings={"run": _run_settings(cfg), "label": label}, row=base,
                           notify=(lambda row: notify(label, row)) if notify else None)
    io.write_json(result, {"label": label, "word": word, "config": cfg.model_dump(mode="json"),
                           "history": history})
    return history


CHECKPOINT = "checkpoint.pt"


def _run_settings(cfg: FixedStudyConfig) -> dict:
    """The settings every sub-run's result depends on (``run.json`` of the study)."""
    return {k: v for k, v in canonical(cfg).items() if k in RUN_KEYS}


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

    A ``run_dir`` holding a study of other settings (those of ``RUN_KEYS``) is refused naming the fields,
    unless ``overwrite`` (then cleared); word lengths, epochs and the float twin may change on a rerun.

    Returns ``{"epochs": rows, "summary": rows}``: per (run, epoch) ``label, arithmetic, word_bits,
    int_bits, frac_bits, epoch, test_acc, train_loss, saturated, weights_changed, epoch_time_s``; per run
    the final ``test_acc``, ``vs_float`` (difference of fractions) and the last epoch's diagnostics.
    """
    run_dir = Path(run_dir)
    topo = validate_study(cfg)
    with RunStore(run_dir, _run_settings(cfg), command="hw fixed", overwrite=overwrite):
        io.write_json(run_dir / "config.json", cfg.model_dump(mode="json"))  # the full config, for load_trained_fixed
        data = data or load_study_data(cfg)
        runs: list[tuple[int, int] | None] = ([None] if cfg.float_baseline else []) + cfg.words()
        epochs_rows: list[dict] = []
        for word in runs:
            epochs_rows += _train_run(cfg, word, topo, data, run_dir / cfg.label(word), notify)
        summary = _summary(epochs_rows, cfg)
        write_outputs(epochs_rows, summary, run_dir, cfg, topo, data)
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
    cfg = parse(FixedStudyConfig, {k: v for k, v in raw.items() if k in FixedStudyConfig.model_fields},
                where=f"{cfg_path}: ")
    result = sub / "result.json"
    word = json.loads(result.read_text()).get("word") if result.exists() else None
    if word is None:
        m = re.fullmatch(r"w(\d+)_i(\d+)(_sr)?", sub.name)
        if m is None:
            raise HardwareError(f"{sub}: not a fixed-point sub-run (the float run has no hardware words)")
        word = (int(m.group(1)), int(m.group(2)))
    topo = build_topology(cfg)
    net = fixed_from_float(topo, initial_weights(topo, cfg.seed), None, study_formats(cfg, tuple(word)))
    net, _ = load_checkpoint(ckpt, net)  # type: ignore[misc]  (the file exists: checked above)
    return net, cfg, cfg.z  # type: ignore[return-value]
