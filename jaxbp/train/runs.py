"""A run on disk: what ``fit(..., checkpoint_dir=)`` saves after every epoch, how it resumes,
and :func:`load_run`, which reads a run back without knowing the layout.

Layout (see :mod:`jaxbp.checkpoint` for the file format and its guarantees): one
``checkpoint_<epoch>.npz`` per epoch (the newest ``keep`` are kept) holding the tree
``{"state": TrainState}`` — plus ``{"best": {"params", "opt_state"}}`` when early stopping has
a best epoch, and ``"layer_state"`` (in both) for a network with state — with the metadata
``{"history": ..., "best_value", "best_epoch", "wait"}``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxbp import checkpoint
from jaxbp._files import unwritable
from jaxbp._core import Params, PRNGKey
from jaxbp.train.state import FitResult, TrainState, init_state
from jaxbp.train.stopping import Best


class Spelling(NamedTuple):
    """How the caller spells the checkpoint arguments, so the resume checks speak its language."""

    where: str  # the prefix of each message, e.g. "fit: "
    resume: str  # the resume argument, e.g. "resume=True"
    directory: str  # the directory argument, e.g. "checkpoint_dir="
    shown: str  # a given directory, e.g. "checkpoint_dir={!r}" (formatted with the path)
    example: str  # a call that resumes


FIT = Spelling("fit: ", "resume=True", "checkpoint_dir=", "checkpoint_dir={!r}",
               "fit(..., checkpoint_dir='runs/x', resume=True)")


def to_resume(directory, resume: bool, spelling: Spelling = FIT) -> Path | None:
    """The checkpoint a run continues from: the newest *valid* one in ``directory`` with
    ``resume``, ``None`` for a fresh run (also with ``resume`` when there is none yet).

    Refuses ``resume`` without a directory, a directory where no file can be created (before
    any training), and a directory that already holds a run without ``resume`` (rather than
    mixing two runs). A damaged newest checkpoint (truncated, corrupted) is skipped with a
    :class:`~jaxbp.checkpoint.DamagedCheckpointWarning` naming it, for the newest older one
    that reads back whole; when every one is damaged, a ``CheckpointDamaged`` error says so.
    """
    if resume and directory is None:
        raise ValueError(f"{spelling.where}{spelling.resume} needs {spelling.directory}, the "
                         f"directory of the run to continue. Fix: {spelling.example}.")
    if directory is None:
        return None
    problem = unwritable(directory)
    if problem:
        raise ValueError(f"{spelling.where}{spelling.shown.format(str(directory))} cannot be "
                         f"written: {problem}. Fix: choose a writable directory for the "
                         f"checkpoints, e.g. {spelling.shown.format('runs/x')}.")
    found = checkpoint.checkpoints(directory)
    if found and not resume:
        raise ValueError(
            f"{spelling.where}{spelling.shown.format(str(directory))} already holds "
            f"{found[0].name}; pass {spelling.resume} to continue that run, or choose an empty "
            f"directory for a new one. Fix: e.g. {spelling.example}.")
    damaged = []
    for path in found:
        try:
            checkpoint.verify(path)
        except checkpoint.CheckpointDamaged as e:
            damaged.append(str(e))
            continue
        for reason in damaged:
            warnings.warn(checkpoint.DamagedCheckpointWarning(
                f"{spelling.where}skipping a damaged checkpoint: {reason} Resuming from "
                f"{path.name}, the newest valid one."), stacklevel=3)
        return path
    if damaged:
        raise checkpoint.CheckpointDamaged(
            f"{spelling.where}no valid checkpoint to resume in "
            f"{spelling.shown.format(str(directory))}: all {len(found)} are damaged (the newest: "
            f"{damaged[0]}) Fix: delete the damaged checkpoint files to start afresh, or "
            f"choose another directory.")
    return None


def saved_history(path: str | os.PathLike) -> dict:
    """The history the checkpoint at ``path`` holds, read from its manifest alone."""
    return checkpoint.read_manifest(path)["metadata"]["history"]


def saved_epoch(path: str | os.PathLike) -> int:
    """The last epoch the checkpoint at ``path`` holds, read from its manifest alone."""
    return saved_history(path)["epoch"][-1]


def save(directory, state: TrainState, history: dict, best: Best | None,
         keep: int) -> Path | None:
    """Saves ``state``, ``history`` and early stopping's ``best`` as the state's epoch; the
    file written (``None`` on processes other than the first, which write nothing)."""
    if jax.process_index() != 0:  # one writer; data-parallel state is replicated everywhere
        return None
    for path, leaf in jax.tree_util.tree_leaves_with_path((state.params, state.opt_state)):
        value = np.asarray(jax.device_get(leaf)) if hasattr(leaf, "dtype") else None
        if value is not None and np.issubdtype(value.dtype, np.inexact) \
                and not np.all(np.isfinite(value)):  # fit stops before; never save garbage
            raise ValueError(f"runs.save: {jax.tree_util.keystr(path)} of epoch "
                             f"{int(state.epoch)} is not finite; a checkpoint never holds nan "
                             f"or inf. Fix: a smaller learning rate.")
    meta: dict[str, Any] = {"history": history}
    if best is not None and best.epoch is None:
        best = None  # early stopping before its first epoch: nothing to keep yet
    tree = _tree(state, best)
    if best is not None:
        meta.update(best_value=best.value, best_epoch=best.epoch, wait=best.wait)
    return checkpoint.save_step(directory, int(state.epoch), tree, metadata=meta, keep=keep)


class _Saved(NamedTuple):
    """The five fields of a :class:`TrainState` as a checkpoint holds them (named
    ``TrainState`` in the file, as before layer state existed); a network's layer state is
    saved beside it, under ``"layer_state"``, only when it has one."""

    params: Params
    opt_state: Any
    step: Any
    epoch: Any
    key: Any


_Saved.__name__ = _Saved.__qualname__ = "TrainState"  # the name the file's structure shows


def _tree(state: TrainState, best: Best | None) -> dict[str, Any]:
    """What a checkpoint of ``state`` (and the best epoch, if given) holds: a run of a
    network without state is written exactly as before layer state existed."""
    tree: dict[str, Any] = {"state": _Saved(*state[:5])}
    if best is not None:
        tree["best"] = {"params": best.params, "opt_state": best.opt_state}
    if state.layer_state is not None:
        tree["layer_state"] = state.layer_state
        if best is not None:
            tree["best"]["layer_state"] = best.layer_state
    return tree


def restore(path, template: TrainState) -> tuple[TrainState, dict, Best | None]:
    """The state, history and early-stopping progress (``None`` if none was saved) at
    ``path``, read into the structure of ``template``."""
    meta = checkpoint.read_manifest(path)["metadata"]
    best_template = Best(params=template.params, opt_state=template.opt_state, epoch=0,
                         layer_state=template.layer_state)
    tree, meta = checkpoint.load(path, _tree(template, best_template if "best_epoch" in meta
                                             else None))
    saved = tree["state"]
    state = TrainState(saved.params, saved.opt_state, saved.step, saved.epoch, saved.key,
                       tree.get("layer_state"))
    best = None
    if "best" in tree:
        best = Best(meta["best_value"], meta["best_epoch"], tree["best"]["params"],
                    tree["best"]["opt_state"], meta["wait"], tree["best"].get("layer_state"))
    return state, meta["history"], best


def load_run(directory: str | os.PathLike, params: Params, optimizer, *,
             key: PRNGKey | int = 0, layer_state: Any = None) -> FitResult:
    """The run that ``fit(..., checkpoint_dir=directory)`` saved, as the :class:`FitResult` that
    fit returns after the newest saved epoch.

    Args:
      directory: a ``checkpoint_dir`` of :func:`fit` (its newest checkpoint is read), or one
        checkpoint file in it.
      params, optimizer: a template of the saved state: parameters of the same network (e.g.
        freshly initialised) and the same optimizer; a run that does not fit them is refused,
        naming the first leaf that differs.
      key: a key (or int seed) of the same kind as the run's; only its kind matters.
      layer_state: for a network with state (batch norm), a template of it,
        ``bp.init_layer_state(net, params)``; ``None`` for a network without.

    Returns:
      ``FitResult(params, opt_state, history, state, best_epoch, layer_state)``: with early
      stopping the best epoch's parameters, optimizer state and layer state, else the last
      epoch's. To continue the run, call ``fit(..., checkpoint_dir=directory, resume=True)``.

    Raises:
      FileNotFoundError: ``directory`` holds no checkpoint.
      jaxbp.checkpoint.CheckpointError: the checkpoint does not fit the template.

    Examples:
      >>> import tempfile, jax, numpy as np, jaxbp as bp
      >>> from jaxbp.train import load_run
      >>> net, opt = bp.serial(bp.dense(1)), bp.optim.sgd(0.1)
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> x, y = np.ones((8, 2)), np.zeros((8, 1))
      >>> with tempfile.TemporaryDirectory() as run_dir:
      ...     _ = bp.fit(net, bp.mse(), opt, params, x, y, key=0, epochs=3, progress=False,
      ...                checkpoint_dir=run_dir)
      ...     run = load_run(run_dir, params, opt)
      >>> int(run.state.epoch), run.history["epoch"], run.best_epoch
      (3, [1, 2, 3], None)
    """
    path = Path(directory)
    found = path if path.is_file() else checkpoint.latest(path)
    if found is None:
        raise FileNotFoundError(
            f"load_run: {str(directory)!r} holds no checkpoint (checkpoint_<epoch>.npz). Fix: "
            f"pass the checkpoint_dir= of a fit that has finished at least one epoch.")
    if not isinstance(key, jax.Array):
        key = jax.random.key(int(key))
    if layer_state is None and "layer_state" in checkpoint.read_manifest(found)["treedef"]:
        raise checkpoint.CheckpointMismatch(
            f"load_run: {str(found)!r} is a run of a network with state (batch norm's running "
            f"statistics), but layer_state was not given. Fix: load_run(..., "
            f"layer_state=bp.init_layer_state(net, params)).")
    state, history, best = restore(found, init_state(params, optimizer, key, layer_state))
    if best is None:
        return FitResult(state.params, state.opt_state, history, state, None, state.layer_state)
    return FitResult(best.params, best.opt_state, history, state, best.epoch, best.layer_state)


__all__ = ["FIT", "Spelling", "load_run", "restore", "save", "saved_epoch", "saved_history",
           "to_resume"]
