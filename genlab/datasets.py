"""Datasets that need no download, and the checks every batch passes before training.

`load(name)` returns a standardised, stratified train/test split. The tabular sets ship with
scikit-learn; the 2-D sets are generated (moons, circles, the TensorFlow Playground's spirals
and xor), so a classroom without a network connection has them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import checks
from .errors import DataError

# What `genlab train` and `genlab demo` run when not told: about STEPS training steps (a small set
# takes many epochs, digits about 47), and a growth budget of 32 groups but where a smaller set
# over-grows with it. Measured: each built-in set's network grown from one group then comes within
# about 2% (one or two test samples) of the plain 64-32 chain (README, "Run it").
STEPS = 2000
MAX_GROUPS = {"iris": 16}


def default_epochs(data: "Dataset", batch_size: int = 32) -> int:
    """Epochs of about STEPS training steps on `data`'s training set."""
    per_epoch = -(-len(data.y_train) // batch_size)
    return max(1, -(-STEPS // per_epoch))


SEED_MAX = 2**32 - 1  # scikit-learn's splits take no larger seed
TABULAR = ("digits", "iris", "wine", "breast_cancer")
GENERATED = ("moons", "circles", "spirals", "xor")
SEQUENCES = ("digits_rows", "adding")  # X of shape (samples, steps, features): for recurrent networks
IMAGES = ("digits_images",)  # X of shape (samples, channels, height, width): for conv groups
# real data with an official split (genlab.real_data): Fashion-MNIST (Debian's dataset-fashion-mnist)
# flat, as images and as rows; MNIST-1D (the mnist1d package's generator) flat, as a sequence and a 1 x 40 image
REAL = ("fashion_mnist", "fashion_mnist_images", "fashion_mnist_rows", "mnist1d", "mnist1d_rows", "mnist1d_images")
NAMES = TABULAR + GENERATED + SEQUENCES + IMAGES + REAL


@dataclass
class Dataset:
    """A train/test split; features standardised with the training set's mean and std."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: tuple = ()  # the label each class index stands for, where the data named them

    @property
    def n_features(self) -> int:
        return self.X_train.shape[-1]

    @property
    def sequence(self) -> bool:
        """Whether each sample is a sequence (X of shape samples x steps x features)."""
        return self.X_train.ndim == 3

    @property
    def image(self) -> bool:
        """Whether each sample is an image (X of shape samples x channels x height x width)."""
        return self.X_train.ndim == 4

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of one sample: Network(input_shape=data.sample_shape) reads it."""
        return tuple(self.X_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_train, self.y_train

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        return self.X_test, self.y_test

    def __repr__(self) -> str:
        shape = f"{self.n_features} features" if self.X_train.ndim == 2 else \
            f"samples of shape {'x'.join(map(str, self.sample_shape))}"
        return (f"Dataset({self.name!r}: {len(self.y_train)} train + {len(self.y_test)} test samples, "
                f"{shape}, {self.n_classes} classes)")


def from_arrays(X, y, name: str = "your data", seed: int = 0, test_size: float = 0.25) -> Dataset:
    """Your own data as a Dataset: X (samples x features, numbers; or samples x steps x features,
    or samples x channels x height x width), y (one label per sample: class indices, or any
    labels, which become indices in sorted order, kept in `classes`); split (stratified where
    every class has two samples or more) and standardised like load()'s."""
    y = np.asarray(y)
    if y.ndim == 1 and y.dtype.kind not in "biuf":
        classes, y = np.unique(y.astype(str), return_inverse=True)
    else:
        classes = ()
    shaped = np.ndim(X) in (3, 4)
    X, y = check_data(X, y, input_shape=np.shape(X)[1:] if shaped else None)
    if not len(classes) and y.min() < 0:
        raise DataError(f"label {y.min()} is negative: class indices start at 0 (or pass names)")
    if not len(classes) and len(np.unique(y)) < y.max() + 1:
        classes, y = np.unique(y, return_inverse=True)  # indices with gaps: renumbered
        classes = classes.astype(str)
    if len(np.unique(y)) < 2:
        raise DataError("y holds one class only: a classifier needs two or more")
    return _split(name, X, y, seed, test_size, tuple(str(c) for c in classes))


def from_frame(frame, label: str, name: str = "your data", seed: int = 0, test_size: float = 0.25) -> Dataset:
    """A pandas DataFrame as a Dataset: the column `label` holds the classes, every other column
    is a feature (numbers only; encode categories first)."""
    if not hasattr(frame, "columns") or label not in frame.columns:
        raise DataError(f"no column {label!r} in the frame (columns: {', '.join(map(str, getattr(frame, 'columns', [])))})")
    features = frame.drop(columns=[label])
    text = [c for c in features.columns if features[c].dtype.kind not in "biuf"]
    if text:
        raise DataError(f"feature column(s) {', '.join(map(str, text))} hold no numbers; encode them first")
    return from_arrays(features.to_numpy(), frame[label].to_numpy(), name=name, seed=seed, test_size=test_size)


def _split(name: str, X: np.ndarray, y: np.ndarray, seed: int, test_size: float, classes: tuple = ()) -> Dataset:
    """A train/test split drawn with seed (stratified where it can be), standardised with the
    training part's mean and std."""
    from sklearn.model_selection import train_test_split

    stratify = y if np.bincount(y).min() >= 2 else None
    X_train, X_test, y_train, y_test = train_test_split(
        np.asarray(X, np.float64), np.asarray(y, np.int64), test_size=test_size, random_state=seed, stratify=stratify)
    # per feature (over samples, and steps for sequences); per channel for images
    axes = (0, 2, 3) if X_train.ndim == 4 else tuple(range(X_train.ndim - 1))
    keep = (lambda a: a[None, :, None, None]) if X_train.ndim == 4 else (lambda a: a)
    mean, std = X_train.mean(axis=axes), X_train.std(axis=axes)
    std[std == 0] = 1.0  # constant features (digits' border pixels) stay at zero
    mean, std = keep(mean), keep(std)
    scale = lambda a: ((a - mean) / std).astype(np.float32)
    return Dataset(name, scale(X_train), y_train, scale(X_test), y_test, classes)


def load(name: str, seed: int = 0, test_size: float | None = None, n_samples: int | None = None,
         noise: float | None = None, steps: int = 30, path=None) -> Dataset:
    """Load `name` (see NAMES) as a standardised train/test split drawn with `seed`
    (test_size: the test share, 0.25 when not given).

    n_samples (default 600) and noise apply to the generated 2-D sets; n_samples (default 2000)
    and steps to "adding".
    Real data (REAL) keeps its official split (test_size does not apply): "fashion_mnist" (784
    features), "fashion_mnist_images" (1 x 28 x 28), "fashion_mnist_rows" (28 steps of 28), read
    from Debian's dataset-fashion-mnist or from `path` / $GENLAB_FASHION_MNIST (a folder of its
    idx files); "mnist1d" (40 features), "mnist1d_rows" (40 steps of 1) and "mnist1d_images" (a
    1 x 40 image of one channel: conv groups over it are 1-D convolutions), generated by the
    mnist1d package. There n_samples draws a seeded subset of the training set (and a sixth as
    many test samples).
    Sequences: "digits_rows" is each digit as 8 steps (or tokens) of 8 pixels (its rows), shape
    (N, 8, 8); "digits_images" is each digit as an image of one channel, shape (N, 1, 8, 8);
    "adding" is the adding problem as a classification: each step holds a value in [0, 1) and a
    marker, two steps are marked, the class says whether the two marked values add up to more
    than 1 (shape (N, steps, 2)).
    """
    seed = checks.integer(seed, "seed", 0, SEED_MAX)
    if name in REAL:
        if test_size is not None:
            raise DataError(f"{name} keeps its official train/test split: leave out test_size")
        from . import real_data

        return Dataset(name, *real_data.load(name, seed=seed, n_samples=n_samples, path=path))
    if path is not None:
        raise DataError(f"{name} is not read from files: path applies to {', '.join(REAL[:3])} only")
    test_size = 0.25 if test_size is None else test_size
    classes = ()
    if name in TABULAR:
        import sklearn.datasets as skd
        bunch = getattr(skd, f"load_{name}")()
        X, y, classes = bunch.data, bunch.target, tuple(str(c) for c in bunch.target_names)
    elif name in ("digits_rows", "digits_images"):
        import sklearn.datasets as skd
        X, y = skd.load_digits(return_X_y=True)
        X = X.reshape(-1, 8, 8) if name == "digits_rows" else X.reshape(-1, 1, 8, 8)
    elif name == "adding":
        X, y = adding(n_samples or 2000, steps, np.random.default_rng(seed))
    elif name in GENERATED:
        X, y = _generate(name, n_samples or 600, noise, np.random.default_rng(seed))
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)}")
    return _split(name, X, np.asarray(y, np.int64), seed, test_size, classes)


def adding(n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem (Hochreiter and Schmidhuber), as two classes: X[:, t] = (value, marker),
    one marked step in each half of the sequence; y = 1 where the marked values sum above 1."""
    if not isinstance(steps, int) or steps < 2:
        raise DataError(f"the adding problem needs at least 2 steps, got {steps!r}")
    X = np.zeros((n, steps, 2))
    X[:, :, 0] = rng.random((n, steps))
    half = steps // 2
    first, second = rng.integers(0, half, n), rng.integers(half, steps, n)
    X[np.arange(n), first, 1] = X[np.arange(n), second, 1] = 1.0
    total = X[np.arange(n), first, 0] + X[np.arange(n), second, 0]
    return X, (total > 1.0).astype(np.int64)


def _generate(name: str, n: int, noise: float | None, rng: np.random.Generator):
    if name == "moons":
        from sklearn.datasets import make_moons
        return make_moons(n, noise=0.2 if noise is None else noise, random_state=int(rng.integers(2**31)))
    if name == "circles":
        from sklearn.datasets import make_circles
        return make_circles(n, noise=0.1 if noise is None else noise, factor=0.5,
                            random_state=int(rng.integers(2**31)))
    noise = 0.5 if noise is None else noise
    if name == "spirals":  # the TensorFlow Playground's formula: two arms, radius 0..5
        half = n // 2
        i = np.arange(half)
        r = i / half * 5
        arms = []
        for label, delta in ((0, 0.0), (1, np.pi)):
            t = 1.75 * i / half * 2 * np.pi + delta
            xy = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
            arms.append((xy + rng.uniform(-1, 1, xy.shape) * noise, np.full(half, label)))
        return np.concatenate([a[0] for a in arms]), np.concatenate([a[1] for a in arms])
    # xor, as in the Playground: points in [-5, 5]^2 kept 0.3 away from the axes
    xy = rng.uniform(-5, 5, (n, 2))
    xy += np.where(xy > 0, 0.3, -0.3)
    y = (xy[:, 0] * xy[:, 1] >= 0).astype(np.int64)
    return xy + rng.uniform(-1, 1, xy.shape) * noise, y


def _first(mask: np.ndarray, sequence: bool) -> tuple[tuple, str]:
    """The index of the first True entry of a mask over X, and where that is in words."""
    where = tuple(int(i) for i in np.argwhere(mask)[0])
    return where, (f"row {where[0]}, step {where[1]}, feature {where[2]}" if sequence else
                   f"row {where[0]}, column {where[1]}" if len(where) == 2 else f"sample {where[0]}, position {where[1:]}")


def check_data(X, y=None, n_inputs: int | None = None, n_outputs: int | None = None, sequence: bool = False,
               every_step: bool = False, input_shape: tuple | None = None, dtype=None):
    """Return X as float and y as int64 arrays, or raise DataError saying what is wrong.

    Checks: X is a non-empty 2-D array of finite numbers (that dtype holds, where given) with n_inputs columns (with sequence,
    a 3-D array: samples x steps x n_inputs, at least one step; with input_shape, samples x
    input_shape: images or token sequences); y is 1-D, as long as X, holds
    whole numbers in 0..n_outputs-1 (with every_step, y is samples x steps: a label per step).
    """
    try:
        X = np.asarray(X)
    except (ValueError, TypeError) as e:  # ragged lists
        raise DataError(f"X cannot be read as an array: {e}") from None
    if X.dtype.kind not in "biuf":
        raise DataError(f"X must hold numbers, got dtype {X.dtype}")
    if input_shape is not None:
        if X.shape[1:] != tuple(input_shape) or X.shape[0] == 0:
            raise DataError(f"the network reads samples of shape {tuple(input_shape)}: X must be samples x "
                            f"{' x '.join(map(str, input_shape))}, got shape {X.shape}")
    elif sequence and X.ndim != 3:
        raise DataError(f"a recurrent network reads sequences: X must be 3-D (samples x steps x features), "
                        f"got shape {X.shape}")
    elif not sequence and X.ndim != 2:
        raise DataError(f"X must be 2-D (samples x features), got shape {X.shape}")
    if X.shape[0] == 0 or (sequence and X.shape[1] == 0):
        raise DataError("X is empty: no samples" if X.shape[0] == 0 else "the sequences have no steps")
    if input_shape is None and n_inputs is not None and X.shape[-1] != n_inputs:
        raise DataError(f"X has {X.shape[-1]} features but the network's input group has width {n_inputs}")
    bad = ~np.isfinite(X)
    if bad.any():
        where, at = _first(bad, sequence)
        raise DataError(f"X holds {int(bad.sum())} NaN or infinite value(s), the first at {at} ({X[where]})")
    beyond = checks.beyond_range(X, dtype) if dtype is not None else None
    if beyond is not None:
        where, at = _first(beyond, sequence)
        raise DataError(f"X holds {int(beyond.sum())} value(s) beyond what {np.dtype(dtype).name} holds "
                        f"(+-{np.finfo(dtype).max:.3g}), the first at {at} ({X[where]:.3g}); scale the data down")
    X = X.astype(np.float64) if X.dtype.kind != "f" else X
    if y is None:
        return X
    y = np.asarray(y)
    if every_step and y.shape != X.shape[:2]:
        raise DataError(f"with every_step, y holds a label per sample and step: shape {X.shape[:2]}, got {y.shape}")
    if not every_step and y.ndim != 1:
        raise DataError(f"y must be 1-D (one label per sample), got shape {y.shape}")
    if len(y) != len(X):
        raise DataError(f"X has {len(X)} samples but y has {len(y)} labels")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError("labels must be whole numbers (class indices)")
    elif y.dtype.kind not in "biu":
        raise DataError(f"labels must be integers (class indices), got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n_outputs is not None:
        out = (y < 0) | (y >= n_outputs)
        if out.any():
            raise DataError(f"label {y[out][0]} is outside 0..{n_outputs - 1} (the output group has "
                            f"{n_outputs} classes); {int(out.sum())} label(s) out of range")
    return X, y
