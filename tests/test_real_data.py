"""Fashion-MNIST (Debian's dataset-fashion-mnist, or a folder of its idx files) and MNIST-1D
(the mnist1d package's generator): official splits, views, subsets and clear errors."""

import gzip

import numpy as np
import pytest

from genlab import datasets, real_data
from genlab.errors import DataError

SHAPES = {"fashion_mnist": (784,), "fashion_mnist_images": (1, 28, 28), "fashion_mnist_rows": (28, 28),
          "mnist1d": (40,), "mnist1d_rows": (40, 1), "mnist1d_images": (1, 1, 40)}
SIZES = {"fashion": (60000, 10000), "mnist1d": (4000, 1000)}


@pytest.mark.parametrize("name", datasets.REAL)
def test_real_sets_keep_their_official_split_and_views(name):
    data = datasets.load(name)
    n_train, n_test = SIZES["mnist1d" if name.startswith("mnist1d") else "fashion"]
    assert (len(data.y_train), len(data.y_test)) == (n_train, n_test)
    assert data.sample_shape == SHAPES[name] and data.n_classes == 10 and len(data.classes) == 10
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert abs(float(data.X_train.mean())) < 1e-4 and float(data.X_train.std()) == pytest.approx(1, rel=1e-4)
    assert np.array_equal(np.bincount(data.y_test, minlength=10) > 0, np.ones(10, bool))
    assert data.sequence == name.endswith("_rows") and data.image == name.endswith("_images")


def test_views_are_the_same_pixels():
    flat, images, rows = (datasets.load(n, n_samples=60) for n in datasets.REAL[:3])
    assert np.array_equal(flat.X_train, images.X_train.reshape(len(images.X_train), -1))
    assert np.array_equal(images.X_train[:, 0], rows.X_train)
    assert flat.classes[9] == "Ankle boot"
    m1, m1rows, m1images = datasets.load("mnist1d"), datasets.load("mnist1d_rows"), datasets.load("mnist1d_images")
    assert np.array_equal(m1.X_train, m1rows.X_train[:, :, 0]) and np.array_equal(m1.y_test, m1rows.y_test)
    assert np.array_equal(m1.X_train, m1images.X_train[:, 0, 0])


def test_mnist1d_is_the_generators_default_set():
    from mnist1d.data import get_dataset_args, make_dataset

    raw = make_dataset(get_dataset_args())  # seed 42: the set the paper's baselines used
    data = datasets.load("mnist1d")
    assert np.array_equal(data.y_train, raw["y"]) and np.array_equal(data.y_test, raw["y_test"])
    x = np.asarray(raw["x"], np.float64)
    np.testing.assert_allclose(data.X_train, (x - x.mean()) / x.std(), atol=1e-5)


def test_subsets_are_seeded_and_sized():
    a, b, c = (datasets.load("fashion_mnist", n_samples=120, seed=s) for s in (0, 0, 1))
    assert (len(a.y_train), len(a.y_test)) == (120, 20)
    assert np.array_equal(a.X_train, b.X_train) and not np.array_equal(a.X_train, c.X_train)
    assert len(datasets.load("mnist1d", n_samples=10**6).y_train) == 4000  # at most the whole set
    with pytest.raises(DataError, match="n_samples is a whole number of at least 10"):
        datasets.load("mnist1d", n_samples=3)
    with pytest.raises(DataError, match="keeps its official train/test split"):
        datasets.load("fashion_mnist", test_size=0.5)
    with pytest.raises(DataError, match="path applies to fashion_mnist"):
        datasets.load("digits", path="/tmp")


def _write_idx(path, array, code=0x08, gz=False):
    header = bytes([0, 0, code, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    raw = header + array.astype(real_data.IDX_TYPES[code]).tobytes()
    (gzip.open if gz else open)(path, "wb").write(raw)


def _fake_folder(folder, gz):
    rng = np.random.default_rng(0)
    for part, n in (("train", 30), ("test", 12)):
        images, labels = real_data.FASHION_FILES[part]
        suffix = ".gz" if gz else ""
        _write_idx(folder / f"{images}{suffix}", rng.integers(0, 256, (n, 28, 28)), gz=gz)
        _write_idx(folder / f"{labels}{suffix}", np.arange(n) % 10, gz=gz)


@pytest.mark.parametrize("gz", [False, True])
def test_a_folder_of_idx_files_overrides_debians(tmp_path, monkeypatch, gz):
    _fake_folder(tmp_path, gz)
    data = datasets.load("fashion_mnist_images", path=tmp_path)
    assert (len(data.y_train), len(data.y_test)) == (30, 12) and list(data.y_test[:3]) == [0, 1, 2]
    monkeypatch.setenv(real_data.FASHION_ENV, str(tmp_path))
    assert len(datasets.load("fashion_mnist").y_train) == 30


def test_missing_or_broken_files_name_the_package_and_the_override(tmp_path, monkeypatch):
    monkeypatch.setenv(real_data.FASHION_ENV, str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*GENLAB_FASHION_MNIST"):
        datasets.load("fashion_mnist")
    _fake_folder(tmp_path, False)
    name = real_data.FASHION_FILES["test"][0]
    (tmp_path / name).write_bytes((tmp_path / name).read_bytes()[:-5])
    with pytest.raises(DataError, match="cut short"):
        datasets.load("fashion_mnist", path=tmp_path)
    (tmp_path / name).write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="is not an idx file"):
        datasets.load("fashion_mnist", path=tmp_path)
    _write_idx(tmp_path / name, np.zeros((12, 5, 5)))
    with pytest.raises(DataError, match="not Fashion-MNIST's"):
        datasets.load("fashion_mnist", path=tmp_path)
    with pytest.raises(DataError, match="generated by the mnist1d package"):
        datasets.load("mnist1d", path=tmp_path)
