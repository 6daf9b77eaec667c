"""CIFAR-10 and CIFAR-100 from the standard "python version" pickle batches, read offline.

No copy of CIFAR is bundled or downloaded: give ``root`` (the CLI's ``--data-root``), a directory that
holds (or whose subdirectory ``cifar-10-batches-py`` / ``cifar-100-python`` holds) the files of
https://www.cs.toronto.edu/~kriz/cifar.html:

* CIFAR-10: ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a pickled dict with
  ``b"data"`` uint8 ``[n, 3072]`` (1024 red, then green, then blue values of a 32x32 image, row-major) and
  ``b"labels"`` (n ints in 0..9).
* CIFAR-100: ``train`` and ``test`` with ``b"data"`` and ``b"fine_labels"`` (0..99; ``label="coarse"`` uses
  ``b"coarse_labels"``, 0..19).

The pickles are read with an unpickler that only admits numpy arrays and plain containers, so a tampered
file cannot run code. Samples: x float32 ``[n, 3, 32, 32]`` in [0, 1] (pixel / 255), y int64 ``[n]``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from .base import DatasetUnavailable, DataSplits, register, split_arrays

__all__ = ["load_cifar10", "load_cifar100", "read_batch"]

CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
DEFAULT_VAL_SIZE = 5000
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        return super().find_class(module, name)


def read_batch(path: str | os.PathLike) -> dict:
    """One CIFAR pickle batch as a dict with ``str`` keys (``data``, ``labels`` / ``fine_labels``, ...)."""
    try:
        with open(path, "rb") as f:
            raw = _ArraysOnly(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: not a CIFAR python-pickle batch ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not a CIFAR python-pickle batch (a {type(raw).__name__}, not a dict)")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _find(root: str | os.PathLike | None, sub: str, names: tuple[str, ...], what: str) -> Path:
    hint = (f"{what} is not bundled and cannot be downloaded here: give --data-root (root=) a directory with "
            f"the python-version batches ({', '.join(names)}), e.g. the '{sub}' folder of "
            f"https://www.cs.toronto.edu/~kriz/{sub.replace('-batches-py', '').replace('-python', '')}-python.tar.gz")
    if root is None:
        raise DatasetUnavailable(hint)
    for cand in (Path(root), Path(root) / sub):
        if all((cand / n).is_file() for n in names):
            return cand
    raise DatasetUnavailable(f"{root}: missing {what} files; " + hint)


def _arrays(batch: dict, key: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or key not in batch:
        raise ValueError(f"{path}: a CIFAR batch needs 'data' and '{key}', found {sorted(batch)}")
    x = np.asarray(batch["data"])
    y = np.asarray(batch[key], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
        raise ValueError(f"{path}: expected uint8 data [n, 3072] and n labels, got {x.dtype} {x.shape} and {len(y)}")
    return x, y


def _load(files_train, file_test, directory: Path, key: str):
    parts = [_arrays(read_batch(directory / f), key, directory / f) for f in files_train]
    x_test, y_test = _arrays(read_batch(directory / file_test), key, directory / file_test)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test


@register("cifar10")
def load_cifar10(*, root: str | os.PathLike | None = None, val_size: int | float | None = None,
                 seed: int = 0, limit: int | None = None) -> DataSplits:
    """CIFAR-10: 45000 train / 5000 val (seeded subset of the 50000) / 10000 test by default."""
    d = _find(root, CIFAR10_DIR, (*CIFAR10_TRAIN, "test_batch"), "CIFAR-10")
    arrays = _load(CIFAR10_TRAIN, "test_batch", d, "labels")
    return split_arrays("cifar10", *arrays, n_classes=10, sample_shape=(3, 32, 32), max_value=255.0,
                        val_size=DEFAULT_VAL_SIZE if val_size is None else val_size, seed=seed, limit=limit)


@register("cifar100")
def load_cifar100(*, root: str | os.PathLike | None = None, val_size: int | float | None = None,
                  seed: int = 0, limit: int | None = None, label: str = "fine") -> DataSplits:
    """CIFAR-100 with the 100 fine labels (``label="coarse"``: the 20 superclasses); splits as CIFAR-10."""
    if label not in ("fine", "coarse"):
        raise ValueError(f"label={label!r} must be 'fine' or 'coarse'")
    d = _find(root, CIFAR100_DIR, ("train", "test"), "CIFAR-100")
    arrays = _load(("train",), "test", d, f"{label}_labels")
    return split_arrays("cifar100", *arrays, n_classes=100 if label == "fine" else 20, sample_shape=(3, 32, 32),
                        max_value=255.0, val_size=DEFAULT_VAL_SIZE if val_size is None else val_size, seed=seed,
                        limit=limit)
