"""What a training run carries from one epoch to the next, and what :func:`fit` returns."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxbp._core import Array, Params, PRNGKey


class TrainState(NamedTuple):
    """Everything :func:`fit` carries from one epoch to the next.

    Attributes:
      params: the network parameters.
      opt_state: the optimizer's state.
      step: optimisation steps taken so far (int32 scalar).
      epoch: epochs completed so far (int32 scalar); :func:`fit` trains up to its ``epochs``.
      key: the PRNG key the next epoch splits into its shuffle and per-step (dropout) keys.
      layer_state: the network's non-trainable state (batch norm's running statistics, see
        :func:`jaxbp.init_layer_state`), updated by every training step; ``None`` for a
        network without state.
    """

    params: Params
    opt_state: Any
    step: Array
    epoch: Array
    key: PRNGKey
    layer_state: Any = None


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the trained parameters (the best epoch's when early stopping is on).
      opt_state: the optimizer state that goes with ``params``.
      history: ``{"epoch": [...], "train_loss": [...], ...}``, one entry per epoch run.
      state: the final :class:`TrainState` (to continue training or to checkpoint).
      best_epoch: the epoch whose parameters were restored, or ``None`` without ``patience``.
      layer_state: the network's state that goes with ``params`` (batch norm's running
        statistics; evaluate with it), or ``None`` for a network without state.
    """

    params: Params
    opt_state: Any
    history: dict[str, list]
    state: TrainState
    best_epoch: int | None
    layer_state: Any = None


def init_state(params: Params, optimizer, key: PRNGKey, layer_state: Any = None) -> TrainState:
    """A fresh :class:`TrainState`: epoch and step 0, ``optimizer.init(params)``, and the
    network's initial ``layer_state`` (``None`` without state)."""
    zero = jnp.zeros([], jnp.int32)
    # jit: one compilation for the whole state, rather than one eager op per leaf shape.
    return TrainState(params, jax.jit(optimizer.init)(params), zero, zero, key, layer_state)


# fit donates its state to each epoch; it must never donate buffers the caller still holds.
# (One jitted copy per state structure, rather than an eager copy, i.e. a compile, per leaf.)
copy_tree = jax.jit(functools.partial(jax.tree_util.tree_map, jnp.copy))


__all__ = ["FitResult", "TrainState", "copy_tree", "init_state"]
