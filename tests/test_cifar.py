"""CIFAR-10/100 loaders on small batch files written here in the standard python-pickle format."""

import os
import pickle

import numpy as np
import pytest

from sparseforge.data import DatasetUnavailable, load_dataset
from sparseforge.data.cifar import read_batch


def _write(path, data, labels, key=b"labels", extra=None):
    d = {b"batch_label": b"test", key: labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}
    d.update(extra or {})
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def _cifar10(root, n=6):
    rng = np.random.default_rng(0)
    d = root / "cifar-10-batches-py"
    d.mkdir()
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, size=n)]
        _write(d / name, x, y)
        batches[name] = (x, y)
    return batches


def test_cifar10_pixels_channels_and_labels_match_the_raw_batches(tmp_path):
    raw = _cifar10(tmp_path)
    s = load_dataset("cifar10", root=tmp_path, val_size=3, seed=0)
    assert s.sample_shape == (3, 32, 32) and s.n_classes == 10
    assert (len(s.train), len(s.val), len(s.test)) == (27, 3, 6)
    x_test, y_test = raw["test_batch"]
    assert s.test.y.tolist() == y_test  # the test split keeps file order
    # channel c, row h, column w is data[c * 1024 + h * 32 + w] / 255 (red plane, then green, then blue)
    for i, (c, h, w) in enumerate([(0, 0, 0), (1, 5, 7), (2, 31, 31), (0, 31, 0)]):
        assert s.test.x[i, c, h, w].item() == pytest.approx(x_test[i, c * 1024 + h * 32 + w] / 255)
    # every training image is one of the 30 raw training images, with its label
    train = {bytes(x.tobytes()): y for b in range(1, 6) for x, y in zip(*raw[f"data_batch_{b}"])}
    for xs, ys in ((s.train.x, s.train.y), (s.val.x, s.val.y)):
        for x, y in zip(xs, ys):
            key = np.round(x.numpy().reshape(-1) * 255).astype(np.uint8).tobytes()
            assert train[key] == int(y)


def test_cifar100_fine_and_coarse_labels(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 8), ("test", 4)):
        fine = [int(v) for v in rng.integers(0, 100, size=n)]
        _write(d / name, rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), fine, key=b"fine_labels",
               extra={b"coarse_labels": [f // 5 for f in fine]})
        if name == "test":
            test_fine = fine
    fine = load_dataset("cifar100", root=d, val_size=2)  # the folder itself works too
    coarse = load_dataset("cifar100", root=tmp_path, val_size=2, label="coarse")
    assert fine.n_classes == 100 and coarse.n_classes == 20
    assert fine.test.y.tolist() == test_fine and coarse.test.y.tolist() == [f // 5 for f in test_fine]


def test_missing_files_say_what_to_get(tmp_path):
    with pytest.raises(DatasetUnavailable, match=r"CIFAR-10 is not bundled.*data_batch_1.*cifar-10-python.tar.gz"):
        load_dataset("cifar10")
    _cifar10(tmp_path)
    os.remove(tmp_path / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(DatasetUnavailable, match="missing CIFAR-10 files"):
        load_dataset("cifar10", root=tmp_path)


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "data_batch_1"
    with open(path, "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(ValueError, match="refusing to load .*system"):
        read_batch(path)


def test_wrong_shapes_are_named(tmp_path):
    _cifar10(tmp_path)
    _write(tmp_path / "cifar-10-batches-py" / "test_batch", np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(ValueError, match=r"test_batch: expected uint8 data \[n, 3072\].*\(2, 100\)"):
        load_dataset("cifar10", root=tmp_path, val_size=1)
