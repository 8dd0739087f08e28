""":func:`fit`, the training loop: epochs of mini-batch descent, evaluation, early stopping
and checkpoints."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import numpy as np
import optax

from jaxbp import parallel
from jaxbp._compile import check_compiler_options
from jaxbp._core import (Layer, Loss, Params, PRNGKey, brief, check_state_threaded, has_state,
                         init_layer_state)
from jaxbp._validate import int_at_least, non_negative, require_optimizer
from jaxbp.gradients import backprop, check_net_and_loss
from jaxbp.train import runs
from jaxbp.train.diverge import diverged, epoch_start
from jaxbp.train.epoch import EpochConfig, epoch_config, epoch_options, epoch_program
from jaxbp.train.metrics import (Accuracy, accuracy_fn, as_inputs, check_values, check_xy,
                                 metrics_of)
from jaxbp.train.progress import progress_bar
from jaxbp.train.state import FitResult, TrainState, copy_tree, init_state
from jaxbp.train.stopping import Best, after_epoch, monitored


class _Plan(NamedTuple):
    """fit's arguments, checked: what stays fixed for the whole run."""

    cfg: EpochConfig
    epochs: int
    accuracy: Accuracy | None
    compiler_options: Any
    patience: int | None
    min_delta: float
    checkpoint_dir: Any
    keep: int
    resume_from: Path | None


def _plan(net, loss, optimizer, *, epochs, batch_size, grad, l1, l2, regularize, patience,
          min_delta, accuracy, shuffle, devices, checkpoint_dir, resume, keep_checkpoints,
          compiler_options, state) -> _Plan:
    check_net_and_loss(net, loss, "fit")
    require_optimizer("fit", optimizer)
    epochs = int_at_least("fit", "epochs", epochs, 0, "epochs=100")
    batch_size = int_at_least("fit", "batch_size", batch_size, 1, "batch_size=32")
    if patience is not None:
        patience = int_at_least("fit", "patience", patience, 1, "patience=10")
    acc = accuracy_fn(loss, accuracy)
    options = check_compiler_options("fit", compiler_options)
    if checkpoint_dir is not None:
        keep_checkpoints = int_at_least("fit", "keep_checkpoints", keep_checkpoints, 1,
                                        "keep_checkpoints=2")
    found = runs.to_resume(checkpoint_dir, resume)
    if found is not None and state is not None:
        raise ValueError("fit: pass either state= or resume=True with a checkpoint, not both; "
                         "the checkpoint already holds the state to continue from.")
    mesh = None if devices is None else parallel.make_mesh(devices)
    check_state_threaded("fit", net)
    if has_state(net) and mesh is not None and batch_size % mesh.size:
        raise ValueError(
            f"fit: batch_size={batch_size} does not split evenly over {mesh.size} devices, and "
            f"{brief(net.name)} has batch statistics, which padding rows would change. Fix: a "
            f"batch_size that is a multiple of {mesh.size}, e.g. "
            f"batch_size={batch_size - batch_size % mesh.size or mesh.size}.")
    cfg = epoch_config("fit", net, loss, optimizer, grad=grad, l1=l1, l2=l2,
                       regularize=regularize, batch_size=batch_size, shuffle=shuffle, mesh=mesh)
    min_delta = non_negative("fit", "min_delta", min_delta, "min_delta=1e-4")
    return _Plan(cfg, epochs, acc, options, patience, min_delta, checkpoint_dir,
                 keep_checkpoints, found)


def _start(plan: _Plan, params, key, state, history) -> tuple[TrainState, dict, Best | None]:
    """The state, history and early-stopping book-keeping (``None`` without patience) that
    the first epoch starts from: fresh, given, or restored from the checkpoint to resume."""
    if state is None:
        if key is None:
            raise TypeError("fit: key is required to start training (it seeds shuffling and "
                            "dropout). Fix: key=jax.random.key(0), or key=0.")
        if isinstance(key, (int, np.integer)):
            key = jax.random.key(int(key))
        state = init_state(params, plan.cfg.optimizer, key,
                           init_layer_state(plan.cfg.net, params))
    elif state.layer_state is None and has_state(plan.cfg.net):  # e.g. from train.init_state
        state = state._replace(layer_state=init_layer_state(plan.cfg.net, state.params))
    saved = None
    if plan.resume_from is not None:  # the fresh state is the template the checkpoint must fit
        state, history, saved = runs.restore(plan.resume_from, state)
    best = (saved or Best()) if plan.patience is not None else None
    return copy_tree(state), {k: list(v) for k, v in (history or {}).items()}, best


def check_full_batch(where: str, net: Layer, examples: int, batch_size: int) -> None:
    """A network with state trains on full batches only: at least one must fit the data."""
    if has_state(net) and examples < batch_size:
        raise ValueError(
            f"{where}: batch_size={batch_size} exceeds the {examples} training examples, and "
            f"{brief(net.name)} has batch statistics, so it trains on full batches only. Fix: "
            f"batch_size={examples} or smaller.")


def checked_data(where: str, net: Layer, params, x, y, validation):
    """``(x, y, validation)`` checked (shapes, and values once, on the host) and cast to the
    dtype of ``params``; ``validation`` is ``None`` or a pair ``(x_val, y_val)``."""
    x, y = check_xy(where, x, y)
    check_values(where, net, params, x, y)  # once per data set, on the host
    x, y = as_inputs(params, x, y)
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError(f"{where}: validation must be a pair (x_val, y_val) or None, got "
                            f"{type(validation).__name__}. Fix: validation=(x_val, y_val).")
        validation = check_xy(f"{where} validation", *validation)
        check_values(f"{where} validation", net, params, *validation)
        validation = as_inputs(params, *validation)
    return x, y, validation


def _data(plan: _Plan, state: TrainState, x, y, validation):
    """The state and the training data checked, cast to the parameters' dtype and placed on
    the devices, and the data to evaluate: ``[("train", (x, y)), ("val", validation)]``."""
    x, y, validation = checked_data("fit", plan.cfg.net, state.params, x, y, validation)
    check_full_batch("fit", plan.cfg.net, x.shape[0], plan.cfg.batch_size)
    state = _place(plan, state)
    if plan.cfg.mesh is not None:  # every device holds the data; each step shards its batch
        x, y, validation = parallel.put((x, y, validation), parallel.replicated(plan.cfg.mesh))
    splits = [("train", (x, y))] + ([("val", validation)] if validation is not None else [])
    return state, x, y, splits


def _place(plan: _Plan, state: TrainState) -> TrainState:
    """``state`` on the devices that train: replicated over the mesh, if any."""
    if plan.cfg.mesh is None:
        return state
    return parallel.put(state, parallel.replicated(plan.cfg.mesh))


def _rebuilt_start(plan: _Plan, epoch: int, saved, state: TrainState, run_epoch, x, y,
                   origin) -> TrainState:
    """The state epoch ``epoch`` started from (donated to it), on the training devices: from
    the checkpoint ``saved`` if that is epoch ``epoch - 1``'s, else ``origin()`` (the state
    this call started from) run forward (see :func:`jaxbp.train.diverge.epoch_start`)."""
    return _place(plan, epoch_start(epoch, saved, state, lambda: _place(plan, origin()),
                                    lambda s: run_epoch(s, x, y, cfg=plan.cfg)[0]))


def _record(epoch: int, state: TrainState, objective, splits, plan: _Plan, t0: float) -> dict:
    """One epoch's history entry: metrics in evaluation mode, mean objective, seconds so far."""
    record = {"epoch": epoch, **metrics_of(state.params, splits, net=plan.cfg.net,
                                           loss=plan.cfg.loss, accuracy=plan.accuracy,
                                           layer_state=state.layer_state)}
    record["objective"] = float(objective)
    record["seconds"] = time.perf_counter() - t0
    return record


def fit(net: Layer, loss: Loss, optimizer: optax.GradientTransformation, params: Params, x, y,
        *, key: PRNGKey | int | None = None, epochs: int, batch_size: int = 32, grad=backprop,
        l1: float = 0.0, l2: float = 0.0, regularize=None, validation=None,
        patience: int | None = None, min_delta: float = 0.0, accuracy="auto",
        shuffle: bool = True, progress: bool | None = None, stream=None,
        callback: Callable[[TrainState, dict], None] | None = None,
        state: TrainState | None = None, history: dict | None = None,
        devices=None, checkpoint_dir=None, resume: bool = False,
        keep_checkpoints: int = 2, compiler_options=None) -> FitResult:
    """Trains ``net`` by mini-batch descent, one compiled ``lax.scan`` per epoch.

    Each epoch splits ``state.key`` into a shuffle key and one key per step (for dropout), runs
    every mini-batch (the ragged last one padded and masked, see :mod:`jaxbp.train`), then
    evaluates the whole training set and ``validation`` in evaluation mode (``key=None``).

    A network with state (``batch_norm``) starts from :func:`jaxbp.init_layer_state`, carries
    its state in ``TrainState.layer_state`` (updated by every step, used in evaluation,
    checkpointed) and returns it as ``FitResult.layer_state``. Its epochs use full batches
    only: the ``len(x) % batch_size`` examples the shuffle puts last sit that epoch out, as
    padded rows would enter the batch statistics (with ``shuffle=False`` the same last
    examples every epoch: choose a ``batch_size`` that divides ``len(x)`` to train on all).

    Args:
      net, loss, optimizer: the network, the loss and any optax optimizer.
      params: initial parameters (ignored when ``state`` is given).
      x, y: training inputs and targets, leading axis the examples.
      key: PRNG key (or an int seed) for shuffling and dropout; required unless ``state`` is
        given (whose own key then continues).
      epochs: train until this many epochs are done in total (counting ``state.epoch``).
      batch_size: examples per step.
      grad: ``bp.backprop`` (hand-derived) or ``bp.autodiff``, or its name.
      l1, l2, regularize: weight penalties, as in ``bp.backprop``.
      validation: ``(x_val, y_val)`` evaluated after every epoch, or ``None``.
      patience: stop after this many epochs without improvement of the monitored loss
        (``val_loss`` with validation, else ``train_loss``) by more than ``min_delta``, and
        restore the best parameters; ``None`` trains all ``epochs`` and keeps the last ones.
      accuracy: ``"auto"`` (see :func:`accuracy_for`), ``None`` or a callable
        ``(y_pred, y_true) -> per-example 0/1``.
      shuffle: reshuffle every epoch (else keep the order of ``x``).
      progress: a progress bar on ``stream`` (default stderr); ``None`` shows it only when
        ``stream`` is a terminal.
      callback: ``callback(state, record)`` after every epoch; ``record`` is that epoch's
        history entry. ``state``'s arrays are donated to the next epoch: save or copy them
        inside the callback, do not keep references.
      state, history: continue from a :class:`TrainState` and its history. (Early stopping's
        patience count starts afresh in every call.) A state without ``layer_state`` (e.g.
        from :func:`init_state`) for a network with state starts it at
        :func:`jaxbp.init_layer_state`.
      devices: data parallelism: ``None`` (one device, the default), a device count ``n`` (the
        first ``n`` of ``jax.devices()``), a list of devices or a ``Mesh``. Each mini-batch is
        sharded over them (padded with zero-weight rows to a multiple of ``n``), parameters and
        optimizer state are replicated; results equal one device's up to the order of
        floating-point additions. See ``docs/scale.md``.
      checkpoint_dir: save the :class:`TrainState` and history after every epoch to
        ``checkpoint_dir/checkpoint_<epoch>.npz`` (atomically; the newest ``keep_checkpoints``
        are kept). A directory that already holds checkpoints needs ``resume=True``.
        :func:`load_run` reads such a run back.
      resume: continue from the newest checkpoint in ``checkpoint_dir`` (its state, history
        and early-stopping progress; ``params`` and ``key`` then only serve as the template
        that checks it fits), up to ``epochs`` in total; with no checkpoint there yet, start
        afresh. Bit-identical to an uninterrupted run on the same devices.
      keep_checkpoints: how many checkpoints ``checkpoint_dir`` keeps.
      compiler_options: XLA options for the compiled epoch, as in :func:`make_train_step`
        (``"auto"`` decides from the epoch's cost before its first run).

    Raises:
      TrainingDiverged: the loss, a gradient or a parameter turned non-finite (nan or inf); the
        message names the epoch, the step and the first parameter leaf that did, and its
        ``.result`` holds the last finite parameters. No checkpoint of non-finite values is
        written. (Checked once per epoch; to find the step, the epoch is run again from its
        start state, which was donated: read back from ``checkpoint_dir`` when that holds
        it, else rebuilt by running this call's earlier epochs again. See
        ``docs/training.md``.)

    Returns:
      A :class:`FitResult` ``(params, opt_state, history, state, best_epoch, layer_state)``.
      ``history`` has
      ``epoch``, ``seconds``, ``objective`` (mean mini-batch objective, penalties and dropout
      included), ``train_loss``, ``train_accuracy`` and ``val_loss``, ``val_accuracy``.
    """
    plan = _plan(net, loss, optimizer, epochs=epochs, batch_size=batch_size, grad=grad, l1=l1,
                 l2=l2, regularize=regularize, patience=patience, min_delta=min_delta,
                 accuracy=accuracy, shuffle=shuffle, devices=devices,
                 checkpoint_dir=checkpoint_dir, resume=resume,
                 keep_checkpoints=keep_checkpoints, compiler_options=compiler_options,
                 state=state)
    if plan.epochs == 0 and state is None and plan.resume_from is None:
        raise ValueError("fit: epochs=0 trains nothing on a fresh run (epochs counts the "
                         "total, state.epoch included). Fix: e.g. epochs=100.")
    given = state
    state, history, best = _start(plan, params, key, state, history)
    state, x, y, splits = _data(plan, state, x, y, validation)
    monitor = monitored(validation)
    start = int(state.epoch)
    bar = progress_bar(progress, stream, plan.epochs, start)
    run_epoch, t0 = None, time.perf_counter()
    saved = plan.resume_from  # a checkpoint of the state the next epoch starts from, if any
    for epoch in range(start + 1, plan.epochs + 1):
        if run_epoch is None:
            run_epoch = epoch_program(epoch_options(plan.compiler_options, state, x, y, plan.cfg))
        state, objective = run_epoch(state, x, y, cfg=plan.cfg)  # the old state is donated
        if not math.isfinite(float(objective)):  # nan too if the state ended non-finite
            if bar is not None:
                bar.close()
            begin = _rebuilt_start(plan, epoch, saved, state, run_epoch, x, y,
                                   lambda: _start(plan, params, key, given, None)[0])
            raise diverged(begin, x, y, plan.cfg, epoch, history)
        record = _record(epoch, state, objective, splits, plan, t0)
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(epoch, record)
        if best is not None:
            best = after_epoch(best, record[monitor], epoch, state, plan.min_delta)
        if plan.checkpoint_dir is not None:
            saved = runs.save(plan.checkpoint_dir, state, history, best, plan.keep)
        if callback is not None:
            callback(state, record)
        if best is not None and plan.patience is not None and best.wait >= plan.patience:
            break
    if bar is not None:
        bar.close()
    if best is not None and best.epoch is not None:
        return FitResult(best.params, best.opt_state, history, state, best.epoch,
                         best.layer_state)
    return FitResult(state.params, state.opt_state, history, state, None, state.layer_state)


__all__ = ["checked_data", "fit"]
