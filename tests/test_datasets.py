import numpy as np
import pytest

import genlab
from genlab import datasets

CLASSES = {"digits": 10, "iris": 3, "wine": 3, "breast_cancer": 2, "moons": 2, "circles": 2, "spirals": 2, "xor": 2,
           "digits_rows": 10, "adding": 2, "digits_images": 10}
FEATURES = {"digits": 64, "iris": 4, "wine": 13, "breast_cancer": 30, "digits_rows": 8, "digits_images": 8}


@pytest.mark.parametrize("name", [n for n in datasets.NAMES if n not in datasets.REAL])
def test_load_gives_a_standardised_stratified_split(name):
    data = datasets.load(name, seed=0)
    assert data.n_classes == CLASSES[name] and data.n_features == FEATURES.get(name, 2)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert len(data.y_test) == pytest.approx(0.25 * (len(data.y_train) + len(data.y_test)), abs=1)
    assert np.isfinite(data.X_train).all() and np.isfinite(data.X_test).all()
    # per feature, over samples (and steps of a sequence); per channel of an image
    axes = (0, 2, 3) if data.image else tuple(range(data.X_train.ndim - 1))
    varying = data.X_train.std(axis=axes) > 0
    np.testing.assert_allclose(data.X_train.mean(axis=axes), 0, atol=1e-5)
    np.testing.assert_allclose(data.X_train.std(axis=axes)[varying], 1, rtol=1e-4)
    assert data.sequence == (name in datasets.SEQUENCES) and data.image == (name in datasets.IMAGES)
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test, minlength=data.n_classes) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.05)
    again = datasets.load(name, seed=0)
    assert np.array_equal(again.X_train, data.X_train) and np.array_equal(again.y_test, data.y_test)
    assert not np.array_equal(datasets.load(name, seed=1).X_train, data.X_train)


def test_generated_sets_follow_their_formulas():
    spirals = datasets._generate("spirals", 200, 0.0, np.random.default_rng(0))[0]
    assert np.hypot(*spirals.T).max() == pytest.approx(5 * 99 / 100)  # radius i/n*5
    xy, y = datasets._generate("xor", 500, 0.0, np.random.default_rng(0))
    assert np.array_equal(y, (xy[:, 0] * xy[:, 1] >= 0)) and np.abs(xy).min() >= 0.3


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; choose one of digits"):
        datasets.load("mnist")


def test_sequence_datasets_have_their_shapes_and_meaning():
    rows = datasets.load("digits_rows")
    assert rows.X_train.shape[1:] == (8, 8) and rows.sequence
    flat = datasets.load("digits")
    assert len(rows.y_train) == len(flat.y_train)
    data = datasets.load("adding", steps=12, n_samples=400, seed=3)
    X = np.concatenate([data.X_train, data.X_test])
    assert X.shape == (400, 12, 2)
    raw = datasets.adding(300, 12, np.random.default_rng(0))[0]
    assert (raw[:, :, 1].sum(axis=1) == 2).all() and (raw[:, :6, 1].sum(axis=1) == 1).all()
    with pytest.raises(datasets.DataError, match="at least 2 steps"):
        datasets.load("adding", steps=1)


@pytest.mark.parametrize("seed, error", [(2**40, genlab.ArgumentError), (-1, genlab.ArgumentError),
                                         (1.5, genlab.ArgumentTypeError), (True, genlab.ArgumentTypeError)])
def test_a_seed_no_split_can_take_is_refused(seed, error):
    with pytest.raises(error, match="seed must be"):
        genlab.datasets.load("iris", seed=seed)
