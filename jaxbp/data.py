"""Small data sets that need no network: XOR, two spirals, moons, scikit-learn's digits, a
digit-sorting sequence task and character-level text from any file.

Everything is NumPy (float64 inputs, int32 class labels, except XOR's float targets for a
sigmoid + MSE network) and seeded: the same ``seed`` gives the same examples and the same
train/validation/test split. :func:`load` returns a :class:`Dataset` whose inputs are
standardised with the *training* split's mean and standard deviation (the sequence tasks'
integer tokens are not rescaled). The sequence tasks give token ids ``x: (n, T)`` and
next-token targets ``y: (n, T)``, ``-1`` where a position has no target
(``jaxbp.token_cross_entropy`` leaves it out).

Examples:
  >>> import jaxbp as bp
  >>> ds = bp.data.load("moons", seed=0)
  >>> ds.train.x.shape[1], ds.num_classes
  (2, 2)
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np

from jaxbp._validate import int_at_least, number_in, one_of


class Split(NamedTuple):
    """One split of a data set: inputs ``x: (n, ...)`` and targets ``y: (n,)`` or ``(n, k)``."""

    x: np.ndarray
    y: np.ndarray


class Dataset(NamedTuple):
    """A data set split three ways (``val``/``test`` are ``None`` where there are none).

    Attributes:
      name: ``"xor"``, ``"spirals"``, ``"moons"``, ``"digits"``, ``"sort"`` or a text's name.
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


#: The sorting task's separator token; digits are the tokens 0-9.
SORT_SEPARATOR = 10
#: The sorting task's vocabulary size: the ten digits and the separator.
SORT_VOCAB = 11


def sort_digits(n: int = 12000, *, length: int = 8, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray]:
    """Sorting digit strings as next-token prediction, solvable by a causal model.

    Each example is the sequence ``d_1 .. d_L  SEP  s_1 .. s_L`` (``L = length`` random digits
    0-9, the separator token 10, the digits sorted ascending), cut for next-token prediction:
    ``x`` is its first ``2L`` tokens, ``y`` the ``2L`` tokens after each. The first ``L``
    positions (predicting the unsorted digits) have no target (``-1``); position ``L + i``
    (``x = SEP`` for ``i = 0``, else ``s_i``) must predict ``s_{i+1}``, which attention to the
    unsorted half determines: the smallest digit not yet emitted as often as it occurs there.
    Duplicated digit strings are dropped, so a split never holds one string twice.

    Returns:
      ``x: (m, 2L)`` and ``y: (m, 2L)`` int32, ``m <= n`` distinct strings (``m = n`` in
      practice: ``10^L`` strings exist).
    """
    n = int_at_least("sort_digits", "n", n, 1, "sort_digits(n=12000)")
    length = int_at_least("sort_digits", "length", length, 1, "sort_digits(length=8)")
    digits_ = np.random.default_rng(seed).integers(0, 10, (n, length))
    _, first = np.unique(digits_, axis=0, return_index=True)
    digits_ = digits_[np.sort(first)]
    sep = np.full((len(digits_), 1), SORT_SEPARATOR)
    seq = np.concatenate([digits_, sep, np.sort(digits_, axis=1)], axis=1).astype(np.int32)
    y = seq[:, 1:].copy()
    y[:, :length] = -1
    return seq[:, :-1], y


def read_text(path) -> str:
    """The text of the file ``path`` (UTF-8, undecodable bytes replaced), or a clear error:
    ``FileNotFoundError`` / ``IsADirectoryError`` / ``PermissionError`` naming it, ``ValueError``
    for an empty file."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"text: {str(path)!r} does not exist. Fix: pass the path of a "
                                f"text file, e.g. --file README.md.")
    if p.is_dir():
        raise IsADirectoryError(f"text: {str(path)!r} is a directory, not a text file. Fix: "
                                f"pass a file in it, e.g. --file {p / 'README.md'}.")
    try:
        text = p.read_bytes().decode("utf-8", errors="replace")
    except OSError as e:
        raise PermissionError(f"text: {str(path)!r} cannot be read ({e.strerror}). Fix: check "
                              f"its permissions, or pass another file.") from None
    if not text:
        raise ValueError(f"text: {str(path)!r} is empty; a language model needs text to learn "
                         f"from. Fix: pass a non-empty text file.")
    return text


def char_vocabulary(text: str) -> str:
    """The distinct characters of ``text``, sorted: character ``chars[i]`` is token ``i``."""
    return "".join(sorted(set(text)))


def encode(text: str, chars: str) -> np.ndarray:
    """``text`` as int32 token ids of ``chars`` (every character must be in ``chars``)."""
    index = {c: i for i, c in enumerate(chars)}
    missing = sorted(set(text) - set(index))
    if missing:
        raise ValueError(f"encode: characters {''.join(missing[:10])!r} are not in the "
                         f"vocabulary. Fix: build it from this text, char_vocabulary(text).")
    return np.fromiter((index[c] for c in text), np.int32, len(text))


def decode(ids, chars: str) -> str:
    """Token ids back to text."""
    return "".join(chars[int(i)] for i in np.asarray(ids).reshape(-1))


def text_windows(text: str, *, context: int = 64, chars: str | None = None, seed: int = 0,
                 val: float = 0.1, test: float = 0.1, name: str = "text") -> Dataset:
    """Character-level language modelling: ``text`` cut into disjoint windows of ``context + 1``
    characters, ``x`` a window's first ``context`` ids and ``y`` the ``context`` ids after each,
    split (seeded, by window) into train, validation and test.

    Returns:
      a :class:`Dataset` with ``x, y: (windows, context)`` int32 and ``num_classes`` the
      vocabulary size (``chars``, default :func:`char_vocabulary` of ``text``).

    Raises:
      ValueError: the text holds fewer than three windows (one for each split).
    """
    context = int_at_least("text_windows", "context", context, 1, "context=64")
    chars = char_vocabulary(text) if chars is None else chars
    ids = encode(text, chars)
    width = context + 1
    windows = len(ids) // width
    if windows < 3:
        shorter = len(ids) // 3 - 1
        raise ValueError(
            f"{name}: the text has {len(ids)} characters, but a training, a validation and a "
            f"test window of context + 1 = {width} characters need at least {3 * width}. Fix: "
            f"a longer text" + (f", or a shorter context (at most {shorter})." if shorter >= 1
                                else " (at least 6 characters)."))
    blocks = ids[:windows * width].reshape(windows, width)
    train, val_split, test_split = split(blocks[:, :-1], blocks[:, 1:], val=val, test=test,
                                         seed=seed)
    return Dataset(name, train, val_split if len(val_split.x) else None,
                   test_split if len(test_split.x) else None, len(chars))


#: The data sets :func:`load` knows by name (text from a file: :func:`read_text`, then
#: :func:`text_windows`).
NAMES = ("xor", "spirals", "moons", "digits", "sort")


def load(name: str, *, seed: int = 0, n: int | None = None, noise: float | None = None,
         val: float = 0.15, test: float = 0.15) -> Dataset:
    """A named data set, split (seeded) and standardised; XOR is neither split nor rescaled.

    Args:
      name: one of ``"xor"``, ``"spirals"``, ``"moons"``, ``"digits"``, ``"sort"``
        (:func:`sort_digits`, not rescaled).
      seed: seeds the generator (spirals, moons, sort) and the split.
      n: examples to generate (spirals, moons: default 600; sort: 12000).
      noise: noise level (spirals default 0.05, moons 0.1).
      val, test: split fractions (see :func:`split`).
    """
    one_of("load", "name", name, NAMES, "a data set", "load('spirals')")
    if name == "xor":
        return Dataset("xor", Split(*xor()), None, None, 2)
    if name == "sort":
        if noise is not None:
            raise ValueError("load: sort has no noise. Fix: drop noise=.")
        train, val_split, test_split = split(*sort_digits(12000 if n is None else n, seed=seed),
                                             val=val, test=test, seed=seed)
        return Dataset("sort", train, val_split, test_split, SORT_VOCAB)
    if name == "digits":
        if n is not None or noise is not None:
            raise ValueError("load: digits is a fixed data set; n and noise do not apply. "
                             "Fix: drop n= and noise=.")
        x, y = digits()
    else:
        kwargs = {} if noise is None else {"noise": noise}
        x, y = (spirals if name == "spirals" else moons)(600 if n is None else n, seed=seed,
                                                          **kwargs)
    # standardize returns None only for a None split, and split returns none
    train, val_split, test_split = (cast(Split, s) for s in
                                    standardize(*split(x, y, val=val, test=test, seed=seed)))
    num_classes = 10 if name == "digits" else 2
    return Dataset(name, train, val_split if len(val_split.x) else None,
                   test_split if len(test_split.x) else None, num_classes)


__all__ = ["Dataset", "NAMES", "SORT_SEPARATOR", "SORT_VOCAB", "Split", "char_vocabulary",
           "decode", "digits", "encode", "load", "moons", "read_text", "sort_digits", "spirals",
           "split", "standardize", "text_windows", "xor"]
