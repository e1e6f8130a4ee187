"""Real datasets, offline: Fashion-MNIST from Debian's `dataset-fashion-mnist` package (its idx
files) and MNIST-1D from the `mnist1d` package's generator (never its download function).

Each set keeps its official train/test split (Fashion-MNIST 60,000 / 10,000; MNIST-1D 4,000 /
1,000, as generated with the package's default arguments, seed 42, the set its paper reports
on). `n_samples` draws a seeded subset of the training set (and a sixth as many test samples)
for fast runs. Pixels and signal values are standardised with one mean and std of the training
set (per-pixel scaling would blow up the rarely lit border pixels).
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DataError

FASHION_PACKAGE = "dataset-fashion-mnist"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_ENV = "GENLAB_FASHION_MNIST"  # a folder holding the four idx files (gzipped or not)
FASHION_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                 "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
MNIST1D_SEED = 42  # the generator's default: the set the MNIST-1D paper's baselines were measured on
MNIST1D_CLASSES = tuple(str(i) for i in range(10))
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Source:
    """One real dataset's arrays before standardisation: (X_train, y_train, X_test, y_test) in
    the sample shape `view` gives them, and the class names."""

    read: Callable[[Path | None], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    view: Callable[[np.ndarray], np.ndarray]
    classes: tuple[str, ...]


def read_idx(path: Path) -> np.ndarray:
    """The array an idx file holds (LeCun's format: two zero bytes, a type code, the number of
    dimensions, each dimension as a big-endian uint32, then the values); gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_TYPES:
        raise DataError(f"{path} is not an idx file (its first bytes are {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw[4:header], ">u4")) if len(raw) >= header else ()
    dtype = np.dtype(IDX_TYPES[raw[2]])
    if len(shape) != ndim or len(raw) - header != dtype.itemsize * int(np.prod(shape)):
        raise DataError(f"{path} is cut short or padded: its header says shape {shape} of {dtype}, "
                        f"but it holds {len(raw) - header} bytes of values")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def fashion_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the Fashion-MNIST idx files are: `path`, else $GENLAB_FASHION_MNIST, else Debian's
    folder; DataError naming the package and the override when they are not there."""
    folder = Path(path) if path is not None else Path(os.environ[FASHION_ENV]) if os.environ.get(FASHION_ENV) \
        else FASHION_DIR
    missing = [name for pair in FASHION_FILES.values() for name in pair if _idx_file(folder, name) is None]
    if missing:
        raise DataError(
            f"Fashion-MNIST's idx files are not in {folder} (missing {', '.join(missing)}): install Debian's "
            f"package (sudo apt-get install {FASHION_PACKAGE}), or point genlab at a folder holding them with "
            f"load(..., path=FOLDER) or the environment variable {FASHION_ENV}")
    return folder


def _idx_file(folder: Path, name: str) -> Path | None:
    return next((p for p in (folder / f"{name}.gz", folder / name) if p.is_file()), None)


def read_fashion(path: str | os.PathLike | None = None):
    """Fashion-MNIST's official split as (X_train, y_train, X_test, y_test): images 28 x 28, uint8
    (read once per folder and process; the arrays are read-only)."""
    return _read_fashion(fashion_dir(path).resolve())


@functools.lru_cache(maxsize=2)
def _read_fashion(folder: Path):
    arrays = []
    for part, (images, labels) in FASHION_FILES.items():
        X, y = read_idx(_idx_file(folder, images)), read_idx(_idx_file(folder, labels))
        if X.ndim != 3 or X.shape[1:] != (28, 28) or y.shape != (len(X),) or y.max(initial=0) > 9:
            raise DataError(f"{folder}'s {part} files hold images {X.shape} and labels {y.shape}, not Fashion-MNIST's "
                            "28 x 28 images with one label 0..9 each")
        arrays += [X, y.astype(np.int64)]
    for a in arrays:
        a.flags.writeable = False
    return tuple(arrays)


def read_mnist1d(path: str | os.PathLike | None = None):
    """MNIST-1D's default set as (X_train, y_train, X_test, y_test), made by its generator: 40
    values a sample. `path` is not read (the set is computed, not stored)."""
    if path is not None:
        raise DataError("MNIST-1D is generated by the mnist1d package, not read from files: leave out path")
    return _generate_mnist1d()


@functools.lru_cache(maxsize=1)
def _generate_mnist1d():
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise DataError("MNIST-1D needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    args.seed = MNIST1D_SEED
    data = make_dataset(args)
    arrays = (np.asarray(data["x"]), np.asarray(data["y"], np.int64), np.asarray(data["x_test"]),
              np.asarray(data["y_test"], np.int64))
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(len(X), -1)


SOURCES = {
    "fashion_mnist": Source(read_fashion, _flat, FASHION_CLASSES),                               # 784 features
    "fashion_mnist_images": Source(read_fashion, lambda X: X[:, None], FASHION_CLASSES),         # 1 x 28 x 28
    "fashion_mnist_rows": Source(read_fashion, lambda X: X, FASHION_CLASSES),                    # 28 steps of 28
    "mnist1d": Source(read_mnist1d, _flat, MNIST1D_CLASSES),                                     # 40 features
    "mnist1d_rows": Source(read_mnist1d, lambda X: X[:, :, None], MNIST1D_CLASSES),              # 40 steps of 1
    "mnist1d_images": Source(read_mnist1d, lambda X: X[:, None, None, :], MNIST1D_CLASSES),      # 1 x 1 x 40
}


def subset(n: int, n_samples: int | None, rng: np.random.Generator) -> np.ndarray:
    """The rows of a seeded subset of n_samples (all n, in order, when None)."""
    if n_samples is None:
        return np.arange(n)
    return np.sort(rng.permutation(n)[:min(n_samples, n)])


def load(name: str, seed: int = 0, n_samples: int | None = None, path=None) -> tuple:
    """The official split of `name` (see SOURCES), standardised with the training set's mean and
    std, as (X_train, y_train, X_test, y_test, classes), which datasets.load makes a Dataset of;
    n_samples: a seeded subset of that many training samples and a sixth as many test ones."""
    if n_samples is not None and (isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer))
                                  or n_samples < 10):
        raise DataError(f"n_samples is a whole number of at least 10, got {n_samples!r}")
    source = SOURCES[name]
    X_train, y_train, X_test, y_test = source.read(path)
    rng = np.random.default_rng(seed)
    train, test = subset(len(y_train), n_samples, rng), subset(len(y_test), None if n_samples is None
                                                              else max(n_samples // 6, 10), rng)
    X_train, X_test = (source.view(X.astype(np.float64)) for X in (X_train[train], X_test[test]))
    mean, std = X_train.mean(), X_train.std() or 1.0
    scale = lambda X: ((X - mean) / std).astype(np.float32)
    return scale(X_train), y_train[train], scale(X_test), y_test[test], source.classes
