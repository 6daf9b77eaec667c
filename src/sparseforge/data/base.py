"""Dataset containers, the dataset registry and the shared split logic.

Every loader returns a :class:`DataSplits` of three :class:`ArrayDataset` splits held in
memory as tensors: ``x`` float32 ``[n, *sample_shape]`` with values in [0, 1], ``y`` int64
``[n]`` with class ids in ``[0, n_classes)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError, DataError

__all__ = [
    "ArrayDataset",
    "DataSplits",
    "DatasetUnavailable",
    "DATASETS",
    "load_dataset",
    "register",
    "split_arrays",
]


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """One split held in memory.

    ``x``: float32 ``[n, *sample_shape]``, values in [0, 1].
    ``y``: int64 ``[n]``, class ids.
    Indexing (``ds[i] -> (x[i], y[i])``) makes it usable as a ``torch.utils.data.Dataset``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.y.dtype != torch.int64:
            raise TypeError(f"expected x float32 and y int64, got {self.x.dtype} and {self.y.dtype}")
        if self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x {tuple(self.x.shape)} and y {tuple(self.y.shape)} disagree on n")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __repr__(self) -> str:
        """Shapes and dtypes, not the values (a split may hold 60000 images)."""
        return f"ArrayDataset(x={tuple(self.x.shape)} {self.x.dtype}, y={tuple(self.y.shape)} {self.y.dtype})"

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


@dataclass(frozen=True, eq=False)
class DataSplits:
    """Train/val/test splits of one dataset.

    ``sample_shape`` is the shape of one sample, e.g. ``(1, 28, 28)`` for MNIST images
    or ``(64,)`` for a Morse frame.
    """

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    n_classes: int
    sample_shape: tuple[int, ...]

    def __repr__(self) -> str:
        """A summary (name, split sizes, sample shape, classes), not the tensors."""
        return (f"DataSplits({self.name!r}, train={len(self.train)}, val={len(self.val)}, test={len(self.test)}, "
                f"sample_shape={self.sample_shape}, n_classes={self.n_classes})")

    @property
    def n_features(self) -> int:
        """Number of input values per sample: ``prod(sample_shape)``."""
        return math.prod(self.sample_shape)


class DatasetUnavailable(RuntimeError):
    """The dataset's files are not present; the message says how to get them."""


Loader = Callable[..., DataSplits]
DATASETS: dict[str, Loader] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator adding a loader to :data:`DATASETS` under ``name``."""

    def deco(fn: Loader) -> Loader:
        DATASETS[name] = fn
        return fn

    return deco


def load_dataset(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    val_size: int | float | None = None,
    seed: int = 0,
    limit: int | None = None,
    **options: object,
) -> DataSplits:
    """Load dataset ``name`` (one of :data:`DATASETS`) as train/val/test splits.

    root: where the files are (file-based datasets); None -> the dataset's default source.
    val_size: validation samples carved off the training set: an int count, a float
        fraction in [0, 1), or None for the dataset's default.
    seed: seeds every random choice (splits, shuffling, generation); same seed -> same data.
    limit: keep only the first ``limit`` samples of each split after shuffling with ``seed``.
    options: dataset-specific keyword options (see each loader).
    """
    known = ", ".join(sorted(DATASETS))
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string (one of {known}), got {name!r}")
    key = name.strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {known}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive int or None, got {limit!r}")
    return DATASETS[key](root=root, val_size=val_size, seed=seed, limit=limit, **options)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """Generator for stream ``stream`` of ``seed``; distinct streams are independent."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=stream))


def _n_val(val_size: int | float, n_train: int) -> int:
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise ConfigError(f"val_size must be an int, a float or None, got {val_size!r}")
    if isinstance(val_size, float):
        if not 0.0 <= val_size < 1.0:
            raise ConfigError(f"val_size as a fraction must be in [0, 1), got {val_size}")
        return int(round(val_size * n_train))
    if not 0 <= val_size < n_train:
        raise ConfigError(f"val_size must be in [0, {n_train}) samples, got {val_size}")
    return val_size


def split_arrays(
    name: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    n_classes: int,
    sample_shape: tuple[int, ...],
    max_value: float,
    val_size: int | float,
    seed: int,
    limit: int | None,
) -> DataSplits:
    """Build :class:`DataSplits` from raw numpy arrays.

    x_*: any numeric dtype, ``[n, ...]`` reshapeable to ``[n, *sample_shape]``; raw units.
    y_*: integer class ids ``[n]``.
    max_value: raw value mapped to 1.0 (x is divided by it, e.g. 255 for uint8 pixels).
    The validation split is a seeded random subset of the training set (the rest stays
    train, in shuffled order). ``limit`` keeps the first ``limit`` samples of each split
    after a seeded shuffle. Samples are converted to float32 only after selection.
    """
    n_val = _n_val(val_size, len(y_train))
    perm = _rng(seed, 0).permutation(len(y_train))
    parts = {"train": (x_train, y_train, perm[n_val:]), "val": (x_train, y_train, perm[:n_val])}
    parts["test"] = (x_test, y_test, np.arange(len(y_test)))
    splits = {}
    for i, (split, (x, y, idx)) in enumerate(parts.items()):
        if limit is not None:
            idx = _rng(seed, 1, i).permutation(idx)[:limit]
        xs = x[idx].astype(np.float32)
        xs /= np.float32(max_value)
        ys = torch.from_numpy(np.asarray(y[idx], dtype=np.int64))
        splits[split] = ArrayDataset(torch.from_numpy(xs.reshape(len(idx), *sample_shape)), ys)
    for split, ds in splits.items():
        if len(ds) and not (0 <= int(ds.y.min()) and int(ds.y.max()) < n_classes):
            raise DataError(f"{name}: {split} labels outside [0, {n_classes})")
    return DataSplits(name, splits["train"], splits["val"], splits["test"], n_classes, sample_shape)
