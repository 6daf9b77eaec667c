"""The fixed-point study's data: images as the hardware's input words (flattened or zero-padded to a
square, quantized), the first ``limit`` training and ``test_limit`` test samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...hardware import FixedPoint, HardwareError
from .schema import FixedStudyConfig


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
    from ...data import load_dataset

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
