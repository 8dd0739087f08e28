"""The bundled data sets: seeded, correctly shaped, split without overlap, standardised."""

import sys

import numpy as np
import pytest

from jaxbp import data


def test_xor_truth_table():
    x, y = data.xor()
    assert x.shape == (4, 2) and y.shape == (4, 1)
    np.testing.assert_array_equal(y[:, 0], np.logical_xor(x[:, 0], x[:, 1]))


@pytest.mark.parametrize("make", [data.spirals, data.moons])
def test_generators_are_seeded_and_balanced(make):
    x, y = make(101, seed=3)
    assert x.shape == (100, 2) and y.shape == (100,) and y.dtype == np.int32
    assert np.sum(y == 0) == np.sum(y == 1) == 50
    x2, _y2 = make(101, seed=3)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, make(101, seed=4)[0])


def test_spirals_follow_their_formula_without_noise():
    x, y = data.spirals(200, noise=0.0, turns=1.5, seed=0)
    r = np.hypot(x[:, 0], x[:, 1])
    angle = 2 * np.pi * 1.5 * r + np.pi * y
    np.testing.assert_allclose(x, np.stack([r * np.cos(angle), r * np.sin(angle)], 1), atol=1e-12)


def test_moons_lie_on_their_half_circles_without_noise():
    x, y = data.moons(100, noise=0.0)
    centre = np.where(y[:, None] == 0, [0.0, 0.0], [1.0, 0.5])
    np.testing.assert_allclose(np.hypot(*(x - centre).T), 1.0, atol=1e-12)


def test_split_is_seeded_disjoint_and_complete():
    x = np.arange(100, dtype=np.float64).reshape(100, 1)
    y = np.arange(100)
    train, val, test = data.split(x, y, val=0.2, test=0.1, seed=5)
    assert (len(train.x), len(val.x), len(test.x)) == (70, 20, 10)
    ids = np.concatenate([train.y, val.y, test.y])
    assert sorted(ids.tolist()) == list(range(100))
    np.testing.assert_array_equal(train.x[:, 0], train.y)  # rows stay paired
    again = data.split(x, y, val=0.2, test=0.1, seed=5)
    np.testing.assert_array_equal(again[0].y, train.y)
    assert not np.array_equal(data.split(x, y, val=0.2, test=0.1, seed=6)[0].y, train.y)


def test_standardize_uses_training_statistics():
    rng = np.random.default_rng(0)
    train = data.Split(rng.normal(3.0, 2.0, (200, 3)), np.zeros(200))
    train.x[:, 2] = 7.0  # a constant feature is centred, not divided by zero
    other = data.Split(train.x[:5] + 1.0, np.zeros(5))
    s_train, s_other = data.standardize(train, other)
    np.testing.assert_allclose(s_train.x[:, :2].mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(s_train.x[:, :2].std(0), 1.0, atol=1e-12)
    np.testing.assert_array_equal(s_train.x[:, 2], 0.0)
    np.testing.assert_allclose(s_other.x[:, :2], s_train.x[:5, :2] + 1.0 / train.x[:, :2].std(0))


def test_load_digits():
    ds = data.load("digits", seed=0)
    assert ds.num_classes == 10 and ds.train.x.shape[1] == 64
    assert len(ds.train.x) + len(ds.val.x) + len(ds.test.x) == 1797
    assert set(np.unique(ds.test.y)) <= set(range(10))


def test_load_generated_and_xor():
    ds = data.load("spirals", seed=1, n=200)
    assert (len(ds.train.x), len(ds.val.x), len(ds.test.x)) == (140, 30, 30)
    assert ds.val is not None and ds.num_classes == 2
    xor = data.load("xor")
    assert xor.val is None and xor.test is None and xor.train.x.shape == (4, 2)


def test_digits_without_scikit_learn_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxbp\[digits\]'"):
        data.digits()


@pytest.mark.parametrize("call, match", [
    (lambda: data.load("mnist"), r"name='mnist' is not a data set; expected one of"),
    (lambda: data.spirals(1), r"spirals: n=1 must be an int >= 2"),
    (lambda: data.moons(100, noise=-1), r"moons: noise=-1 must be a number >= 0"),
    (lambda: data.spirals(100, noise="lots"), r"spirals: noise='lots' must be a number >= 0"),
    (lambda: data.split(np.zeros((10, 1)), np.zeros(9)), r"x has 10 examples but y has 9"),
    (lambda: data.split(np.zeros((10, 1)), np.zeros(10), val=1.5), r"val=1.5 must be a fraction"),
    (lambda: data.split(np.zeros((3, 1)), np.zeros(3), val=0.5, test=0.5),
     r"leave no training examples"),
    (lambda: data.load("digits", n=10), r"digits is a fixed data set"),
])
def test_bad_arguments_are_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
