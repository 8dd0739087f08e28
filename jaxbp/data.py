"""Small data sets that need no network: XOR, two spirals, moons and scikit-learn's digits.

Everything is NumPy (float64 inputs, int32 class labels, except XOR's float targets for a
sigmoid + MSE network) and seeded: the same ``seed`` gives the same examples and the same
train/validation/test split. :func:`load` returns a :class:`Dataset` whose inputs are
standardised with the *training* split's mean and standard deviation.

Examples:
  >>> import jaxbp as bp
  >>> ds = bp.data.load("moons", seed=0)
  >>> ds.train.x.shape[1], ds.num_classes
  (2, 2)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxbp._validate import int_at_least, number_in, one_of


class Split(NamedTuple):
    """One split of a data set: inputs ``x: (n, ...)`` and targets ``y: (n,)`` or ``(n, k)``."""

    x: np.ndarray
    y: np.ndarray


class Dataset(NamedTuple):
    """A data set split three ways (``val``/``test`` are ``None`` where there are none).

    Attributes:
      name: ``"xor"``, ``"spirals"``, ``"moons"`` or ``"digits"``.
      train, val, test: the splits.
      num_classes: the number of classes.
    """

    name: str
    train: Split
    val: Split | None
    test: Split | None
    num_classes: int


def _two_classes(fname: str, n, noise, seed) -> tuple[int, float, np.random.Generator]:
    """The checked arguments of a two-class generator: points per class, noise and the RNG."""
    n = int_at_least(fname, "n", n, 2, f"{fname}(n=400)")
    noise = number_in(fname, "noise", noise, low=0.0, expected="a number >= 0",
                      example="noise=0.1")
    return n // 2, noise, np.random.default_rng(seed)


def xor() -> tuple[np.ndarray, np.ndarray]:
    """The four XOR examples: ``x: (4, 2)`` in {0, 1}, ``y: (4, 1)`` float, ``y = x_1 xor x_2``."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float64)
    return x, np.array([[0], [1], [1], [0]], np.float64)


def spirals(n: int = 600, *, noise: float = 0.05, turns: float = 1.5,
            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals in the plane, ``n // 2`` points each (class 0, then class 1).

    Point ``i`` of class ``c`` sits at radius ``r = t`` and angle ``2 pi turns t + pi c``, for
    ``t`` uniform in ``[0.05, 1]``, plus Gaussian noise of standard deviation ``noise``.

    Returns:
      ``x: (2 (n // 2), 2)`` float64 and ``y: (2 (n // 2),)`` int32 labels.
    """
    half, noise, rng = _two_classes("spirals", n, noise, seed)
    xs, ys = [], []
    for c in (0, 1):
        t = rng.uniform(0.05, 1.0, half)
        angle = 2.0 * np.pi * turns * t + np.pi * c
        pts = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
        xs.append(pts + noise * rng.standard_normal(pts.shape))
        ys.append(np.full(half, c, np.int32))
    return np.concatenate(xs), np.concatenate(ys)


def moons(n: int = 600, *, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: class 0 on ``(cos a, sin a)``, class 1 on
    ``(1 - cos a, 1/2 - sin a)``, ``a`` uniform in ``[0, pi]``, plus Gaussian ``noise``.

    Returns:
      ``x: (2 (n // 2), 2)`` float64 and ``y: (2 (n // 2),)`` int32 labels.
    """
    half, noise, rng = _two_classes("moons", n, noise, seed)
    a0, a1 = rng.uniform(0.0, np.pi, half), rng.uniform(0.0, np.pi, half)
    x = np.concatenate([np.stack([np.cos(a0), np.sin(a0)], axis=1),
                        np.stack([1.0 - np.cos(a1), 0.5 - np.sin(a1)], axis=1)])
    x = x + noise * rng.standard_normal(x.shape)
    return x, np.concatenate([np.zeros(half, np.int32), np.ones(half, np.int32)])


def digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, no download).

    Returns:
      ``x: (1797, 64)`` float64 pixel intensities in ``[0, 16]`` and ``y: (1797,)`` int32.

    Raises:
      ImportError: scikit-learn is not installed (``pip install 'jaxbp[digits]'``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the digits data set needs scikit-learn, which is not installed. "
            "Fix: pip install 'jaxbp[digits]' (or pip install scikit-learn).") from None
    bunch = load_digits()
    return np.asarray(bunch.data, np.float64), np.asarray(bunch.target, np.int32)


def split(x: np.ndarray, y: np.ndarray, *, val: float = 0.15, test: float = 0.15,
          seed: int = 0) -> tuple[Split, Split, Split]:
    """Shuffles the examples with ``seed`` and cuts them into train, validation and test.

    Args:
      x, y: inputs and targets with the same leading length ``n``.
      val, test: fractions of ``n`` for validation and test (each ``round(fraction * n)``
        examples, at least one when the fraction is positive); the rest is training.
      seed: the shuffle's seed.
    """
    if len(x) != len(y):
        raise ValueError(f"split: x has {len(x)} examples but y has {len(y)}; they must match.")
    val, test = (number_in("split", arg, f, low=0.0, high=1.0, high_open=True,
                           expected="a fraction in [0, 1)", example=f"{arg}=0.15")
                 for arg, f in (("val", val), ("test", test)))
    n = len(x)
    n_val = max(1, round(val * n)) if val > 0 else 0
    n_test = max(1, round(test * n)) if test > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(f"split: val={val} and test={test} leave no training examples out of "
                         f"{n}. Fix: smaller fractions (val + test < 1) or more data.")
    order = np.random.default_rng(seed).permutation(n)
    i_test, i_val, i_train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return Split(x[i_train], y[i_train]), Split(x[i_val], y[i_val]), Split(x[i_test], y[i_test])


def standardize(train: Split, *others: Split | None) -> list[Split | None]:
    """Rescales inputs to zero mean and unit variance per feature, with the *training* statistics.

    ``x' = (x - mean_train) / std_train``; a feature constant on the training split (std 0,
    e.g. a digits corner pixel) is only centred. Returns ``[train, *others]`` rescaled.
    """
    mean = train.x.mean(axis=0)
    std = train.x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return [None if s is None else Split((s.x - mean) / std, s.y) for s in (train, *others)]


NAMES = ("xor", "spirals", "moons", "digits")


def load(name: str, *, seed: int = 0, n: int | None = None, noise: float | None = None,
         val: float = 0.15, test: float = 0.15) -> Dataset:
    """A named data set, split (seeded) and standardised; XOR is neither split nor rescaled.

    Args:
      name: one of ``"xor"``, ``"spirals"``, ``"moons"``, ``"digits"``.
      seed: seeds the generator (spirals, moons) and the split.
      n: examples to generate (spirals, moons; default 600).
      noise: noise level (spirals default 0.05, moons 0.1).
      val, test: split fractions (see :func:`split`).
    """
    one_of("load", "name", name, NAMES, "a data set", "load('spirals')")
    if name == "xor":
        return Dataset("xor", Split(*xor()), None, None, 2)
    if name == "digits":
        if n is not None or noise is not None:
            raise ValueError("load: digits is a fixed data set; n and noise do not apply. "
                             "Fix: drop n= and noise=.")
        x, y = digits()
    else:
        kwargs = {} if noise is None else {"noise": noise}
        x, y = (spirals if name == "spirals" else moons)(600 if n is None else n, seed=seed,
                                                          **kwargs)
    train, val_split, test_split = standardize(*split(x, y, val=val, test=test, seed=seed))
    num_classes = 10 if name == "digits" else 2
    return Dataset(name, train, val_split if len(val_split.x) else None,
                   test_split if len(test_split.x) else None, num_classes)


__all__ = ["Dataset", "NAMES", "Split", "digits", "load", "moons", "spirals", "split",
           "standardize", "xor"]
