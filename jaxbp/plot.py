"""Training curves, 2-D decision boundaries, sweeps and learning-rate range tests as PNGs
(matplotlib, an optional extra).

matplotlib is imported only when a plot is drawn, with the non-interactive ``Agg`` backend, so
``import jaxbp`` never needs it; without it, :func:`require_matplotlib` raises an ``ImportError``
that says how to install it (``pip install 'jaxbp[plot]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from jaxbp._files import atomic_write, unwritable


def require_matplotlib():
    """Returns ``matplotlib.pyplot`` (Agg backend), or raises an ImportError saying how to fix
    it."""
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
        assert predict is not None  # boundary implies it; narrows the Optional for mypy
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
    return _save(path, fig, plt)


def matplotlib_colors():
    """``matplotlib.colors`` (after :func:`require_matplotlib`)."""
    import matplotlib.colors

    return matplotlib.colors


def _save(path: str, fig, plt) -> str:
    """Writes ``fig`` to ``path`` atomically (see :func:`save_training_plot`) and closes it."""
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100), suffix=".png")
    finally:
        plt.close(fig)
    return path


def _group(setting: dict, varying: set) -> str:
    """A sweep run's label: its settings that vary, but the learning rate (``"seed 1"``,
    ``"seed 1, l2=0.0001"``)."""
    return ", ".join(f"seed {v}" if k == "seed" else f"{k}={v:g}"
                     for k, v in setting.items() if k in varying and k != "learning_rate")


def _final_losses(ax, result, monitor: str, x_of) -> None:
    """Final ``monitor`` per run against ``x_of(k)``, one line per group; diverged runs as
    red crosses along the top edge."""
    varying = {k for k in result.settings[0]
               if len({s[k] for s in result.settings}) > 1}
    groups: dict = {}
    for k, setting in enumerate(result.settings):
        groups.setdefault(_group(setting, varying), []).append(k)
    for label, runs in groups.items():
        pts = [(x_of(k), result.histories[k][monitor][-1]) for k in runs
               if not result.diverged[k] and result.histories[k].get(monitor)]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=label or None)
    bad = [x_of(k) for k, d in enumerate(result.diverged) if d]
    if bad:
        ax.plot(bad, [1.0] * len(bad), "x", color="red", markersize=9, clip_on=False,
                transform=ax.get_xaxis_transform(), label="diverged")
    if result.best is not None:
        ax.plot([x_of(result.best)], [result.histories[result.best][monitor][-1]], "*",
                color="gold", markersize=14, markeredgecolor="k", label="best")


def save_sweep_plot(path, result, *, title: str = "") -> str:
    """Writes a sweep's plot to ``path`` (atomically, like :func:`save_training_plot`).

    Left: each run's final validation loss (training loss without validation) against its
    learning rate (log axis; the run index when no learning rate was swept), one line per seed
    (and penalty), diverged runs as red crosses along the top, the best run as a star.
    Right: the learning curves of that loss, coloured by learning rate.

    Args:
      path: where to write, ending in ``.png``.
      result: a :class:`jaxbp.SweepResult`.
      title: a title for the figure.

    Returns:
      ``path``.
    """
    path = check_path(path)
    plt = require_matplotlib()
    monitor = "val_loss" if any(h.get("val_loss") for h in result.histories) else "train_loss"
    swept = all("learning_rate" in s for s in result.settings)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    _final_losses(left, result, monitor,
                  (lambda k: result.settings[k]["learning_rate"]) if swept else (lambda k: k))
    left.set_xlabel("learning rate" if swept else "run")
    left.set_ylabel(f"final {monitor}")
    rates = [s.get("learning_rate", k + 1) for k, s in enumerate(result.settings)]
    norm = matplotlib_colors().LogNorm(min(rates), max(rates) * (1 + 1e-9))
    cmap = plt.get_cmap("viridis")
    for k, history in enumerate(result.histories):
        if history.get(monitor):
            right.plot(history["epoch"], history[monitor], color=cmap(norm(rates[k])),
                       alpha=0.8, linestyle="--" if result.diverged[k] else "-")
    if swept:
        fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=right,
                     label="learning rate")
    right.set_xlabel("epoch")
    right.set_ylabel(monitor)
    for ax, xlog in ((left, swept), (right, False)):
        if xlog:
            ax.set_xscale("log")
        if all(v > 0 for h in result.histories for v in h.get(monitor, [])):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if left.get_lines():
        left.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(path, fig, plt)


def save_lr_test_plot(path, test, *, title: str = "") -> str:
    """Writes the curve of ``test`` (a :class:`jaxbp.LearningRateTest`) to ``path``, ending in
    ``.png``, atomically, and returns ``path``: the loss of each step and its smoothed curve
    against the learning rate (log axis), the suggested range shaded, the suggested rate and
    the divergence point as vertical lines, under ``title``."""
    path = check_path(path)
    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = np.isfinite(test.losses)
    ax.plot(test.learning_rates[finite], test.losses[finite], color="0.7", label="loss per step")
    ax.plot(test.learning_rates, test.smoothed, color="C0", label="smoothed")
    if test.range is not None:
        ax.axvspan(*test.range, color="C2", alpha=0.15, label="suggested range")
    if test.suggested is not None:
        ax.axvline(test.suggested, color="C2", label=f"suggested {test.suggested:.3g}")
    if test.diverged_at is not None:
        ax.axvline(test.diverged_at, color="red", linestyle="--",
                   label=f"diverged at {test.diverged_at:.3g}")
    shown = test.smoothed[np.isfinite(test.smoothed)]
    if shown.size:  # the loss of the diverging steps would squash the interesting part
        ax.set_ylim(min(shown.min(), test.losses[finite].min()) * 0.9, shown.max() * 1.5)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _save(path, fig, plt)


__all__ = ["check_path", "require_matplotlib", "save_lr_test_plot", "save_sweep_plot",
           "save_training_plot"]
