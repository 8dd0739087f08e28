"""Divergence: what :func:`fit` does when the loss or a gradient turns non-finite.

The compiled epoch itself is unchanged but for one finiteness reduction over the parameters and
optimizer state at its end (a non-finite step leaves them non-finite for the rest of the
epoch: every update is added to them); with the mean objective, read on the host once per
epoch, that is the whole check, and the epoch still donates its state. Only an epoch that ends
non-finite costs more: its start state, donated, is rebuilt (:func:`epoch_start`: the
checkpoint of the epoch before, or the state fit started from, run forward again through the
same compiled epochs, which is bit-identical) and run again by a guarded program
(``epoch.replay_program``) that stops updating at the first non-finite step and says which:
this module turns its answer into a :class:`TrainingDiverged` naming the epoch, the step and
the first parameter leaf that went non-finite, and carrying the last finite parameters.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

import jax
import numpy as np

from jaxbp._core import has_state
from jaxbp.checkpoint import CheckpointError
from jaxbp.train import runs
from jaxbp.train.epoch import EpochConfig, replay_program
from jaxbp.train.state import FitResult, TrainState


class TrainingDiverged(FloatingPointError):
    """The loss or a gradient turned non-finite (nan or inf) during :func:`fit`.

    Attributes:
      result: a :class:`FitResult` with the last finite parameters and optimizer state (those
        before the first non-finite step), the history of the epochs completed before, and
        ``state`` at that step, from which training could continue (e.g. with a smaller
        learning rate).
      epoch: the epoch that diverged (1-based); ``step``: its step (1-based) that did, or
        ``None`` if the replay found none; ``leaf``: what went non-finite first (``"the
        loss"``, ``"the gradient of params[0].w"``, ...).
    """

    def __init__(self, message: str, *, result: FitResult, epoch: int, step: int | None,
                 leaf: str):
        super().__init__(message)
        self.result, self.epoch, self.step, self.leaf = result, epoch, step, leaf


def _culprit(params, flags: np.ndarray) -> str:
    """What went non-finite first, read off the replay's flags (loss, grads, params, opt)."""
    names = [f"params{jax.tree_util.keystr(p)}"
             for p, _ in jax.tree_util.tree_leaves_with_path(params)]
    n = len(names)
    if not flags[0]:
        return "the loss"
    for i, name in enumerate(names):
        if not flags[1 + i]:
            return f"the gradient of {name}"
    for i, name in enumerate(names):
        if not flags[1 + n + i]:
            return f"{name} after the update (its gradient was finite)"
    return "the optimizer state or the layer state (running statistics)"


def epoch_start(epoch: int, saved: Path | None, template: TrainState,
                origin: Callable[[], TrainState],
                run_epoch: Callable[[TrainState], TrainState]) -> TrainState:
    """The state epoch ``epoch`` started from, which fit donated to it: read from ``saved``
    when that is the checkpoint of epoch ``epoch - 1`` (into the structure of ``template``),
    else ``origin()`` (a fresh copy of the state fit started from) advanced by ``run_epoch``
    to the end of epoch ``epoch - 1``: the same compiled epochs on the same inputs, hence the
    same state bit for bit on the same devices."""
    if saved is not None:
        try:
            if runs.saved_epoch(saved) == epoch - 1:
                return runs.restore(saved, template)[0]
        except (OSError, CheckpointError):  # removed or damaged since: run forward instead
            pass
    state = origin()
    for _ in range(int(state.epoch), epoch - 1):
        state = run_epoch(state)
    return state


def diverged(start: TrainState, x, y, cfg: EpochConfig, epoch: int, history: dict,
             where: str = "fit") -> TrainingDiverged:
    """The error for ``epoch``, which started from ``start`` and ended non-finite."""
    params, opt_state, layer_state, bad, flags = replay_program(start, x, y, cfg=cfg)
    bad, flags = int(bad), np.asarray(flags)
    steps = (x.shape[0] // cfg.batch_size if has_state(cfg.net)
             else -(-x.shape[0] // cfg.batch_size))
    if bad < 0:  # the replay (another compiled program) stayed finite: report the epoch
        step, what = None, "the loss or the parameters"
        state = start
        at = f"in epoch {epoch} (its replay found no single non-finite step)"
    else:
        step, what = bad + 1, _culprit(start.params, flags)
        state = TrainState(params, opt_state, start.step + bad, start.epoch, start.key,
                           layer_state)
        at = (f"in epoch {epoch} at step {step} of {steps} (step {int(start.step) + step} of "
              f"the run)")
    message = (f"{where}: training diverged {at}: {what} went non-finite (nan or inf). "
               f"Stopped; the exception's .result holds the last finite parameters (before "
               f"that step) and no checkpoint was written for this epoch. Fix: a smaller "
               f"learning rate (e.g. 10x smaller), standardised inputs, or gradient clipping "
               f"(optax.chain(optax.clip_by_global_norm(1.0), ...)).")
    result = FitResult(state.params, state.opt_state, history, state, None, state.layer_state)
    return TrainingDiverged(message, result=result, epoch=epoch, step=step, leaf=what)


__all__ = ["TrainingDiverged", "diverged", "epoch_start"]
