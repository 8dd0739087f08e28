"""Early stopping's book-keeping: the best epoch so far and the epochs waited since."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from jaxbp._core import Params
from jaxbp.train.state import TrainState, copy_tree


class Best(NamedTuple):
    """The best epoch of a run with ``patience``, and how long it has waited for a better one.

    Attributes:
      value: the monitored loss at the best epoch (``inf`` before the first epoch).
      epoch: the best epoch, or ``None`` before the first epoch.
      params, opt_state: copies of the state at the best epoch (``None`` before it).
      wait: epochs since the best one.
      layer_state: a copy of the network's layer state at the best epoch (``None`` without).
    """

    value: float = math.inf
    epoch: int | None = None
    params: Params | None = None
    opt_state: Any = None
    wait: int = 0
    layer_state: Any = None


def monitored(validation) -> str:
    """The history entry early stopping watches: ``val_loss`` with validation data."""
    return "val_loss" if validation is not None else "train_loss"


def after_epoch(best: Best, value: float, epoch: int, state: TrainState,
                min_delta: float) -> Best:
    """``best`` once ``epoch`` ended with monitored ``value`` and ``state``: an improvement by
    more than ``min_delta`` becomes the best epoch (its state copied, as the next epoch
    donates ``state``), anything else waits one epoch more."""
    if value < best.value - min_delta:
        return Best(value, epoch, copy_tree(state.params), copy_tree(state.opt_state), 0,
                    copy_tree(state.layer_state))
    return best._replace(wait=best.wait + 1)


__all__ = ["Best", "after_epoch", "monitored"]
