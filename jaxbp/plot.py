"""Training curves and 2-D decision boundaries as a PNG (matplotlib, an optional extra).

matplotlib is imported only when a plot is drawn, with the non-interactive ``Agg`` backend, so
``import jaxbp`` never needs it; without it, :func:`require_matplotlib` raises an ``ImportError``
that says how to install it (``pip install 'jaxbp[plot]'``).
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from jaxbp._files import atomic_write, unwritable


def require_matplotlib():
    """Returns ``matplotlib.pyplot`` (Agg backend), or raises an ImportError saying how to fix it."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError(
            "plotting needs matplotlib, which is not installed. "
            "Fix: pip install 'jaxbp[plot]' (or pip install matplotlib).") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_path(path) -> str:
    """``path`` as a string, checked before any work is done: it ends in ``.png`` and its folder
    exists and accepts new files; else a ValueError that names the path and the fix."""
    path = os.fspath(path)
    if not path.lower().endswith(".png"):
        raise ValueError(f"plot: path={path!r} must end in .png (the image is written as PNG). "
                         f"Fix: e.g. curves.png.")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"plot: the folder of path={path!r} does not exist ({parent}). "
                         f"Fix: create it first or choose another path.")
    problem = unwritable(parent)
    if problem:
        raise ValueError(f"plot: path={path!r} cannot be written: {problem}. Fix: choose a "
                         f"writable folder, e.g. path='curves.png'.")
    return path


def save_training_plot(path, history: dict, *, x: np.ndarray | None = None,
                       y: np.ndarray | None = None,
                       predict: Callable[[np.ndarray], np.ndarray] | None = None,
                       title: str = "") -> str:
    """Writes loss and accuracy curves, plus a decision boundary for 2-D inputs, to ``path``.

    The file appears atomically: the figure goes to a temporary file in the same folder, which
    is then renamed over ``path``, so a reader never sees a half-written image; its mode is the
    one a plain ``open`` gives (``0o666 & ~umask``).

    Args:
      path: where to write, ending in ``.png``.
      history: :func:`jaxbp.fit`'s history (``train_loss``, ``val_loss``, ``*_accuracy``).
      x, y: 2-D training inputs ``(n, 2)`` and class labels ``(n,)`` (or ``(n, 1)``) to draw.
      predict: maps points ``(m, 2)`` to the probability of class 1, ``(m,)``; with ``x`` it
        draws the decision boundary (the 0.5 contour) over the data's range.
      title: a title for the figure.

    Returns:
      ``path``.
    """
    path = check_path(path)
    plt = require_matplotlib()
    boundary = x is not None and predict is not None and np.ndim(x) == 2 and np.shape(x)[1] == 2
    panels = 2 + int(boundary)
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4))
    epochs = history.get("epoch", list(range(1, len(history.get("train_loss", [])) + 1)))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split in ("train", "val"):
            values = history.get(f"{split}_{metric}")
            if values:
                ax.plot(epochs, values, label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        if metric == "loss" and min(history.get("train_loss") or [1.0]) > 0:
            ax.set_yscale("log")
        if ax.get_lines():
            ax.legend()
        ax.grid(alpha=0.3)
    if boundary:
        ax = axes[2]
        x = np.asarray(x)
        lo, hi = x.min(axis=0), x.max(axis=0)
        margin = 0.1 * (hi - lo) + 1e-3
        g0, g1 = np.meshgrid(np.linspace(lo[0] - margin[0], hi[0] + margin[0], 200),
                             np.linspace(lo[1] - margin[1], hi[1] + margin[1], 200))
        prob = np.asarray(predict(np.stack([g0.ravel(), g1.ravel()], axis=1))).reshape(g0.shape)
        ax.contourf(g0, g1, prob, levels=np.linspace(0.0, 1.0, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(g0, g1, prob, levels=[0.5], colors="k", linewidths=1.0)
        labels = None if y is None else np.asarray(y).reshape(len(x), -1)[:, 0]
        ax.scatter(x[:, 0], x[:, 1], c=labels, cmap="RdBu_r", edgecolors="k", s=14)
        ax.set_title("decision boundary")
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100), suffix=".png")
    finally:
        plt.close(fig)
    return path


__all__ = ["check_path", "require_matplotlib", "save_training_plot"]
