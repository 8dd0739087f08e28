"""Training: a ``jit``-compiled step, epochs as one compiled ``lax.scan``, and :func:`fit`.

One optimisation step, for either gradient source (``backprop`` or ``autodiff``) and any optax
optimizer (hand-written ones from :mod:`jaxbp.optim` included)::

    J, dJ/dtheta = grad(net, loss, l1=, l2=)(theta, x_batch, y_batch, key=key)
    u, opt_state = optimizer.update(dJ/dtheta, opt_state, theta)
    theta <- theta + u

:func:`fit` runs whole epochs: it shuffles the ``n`` training examples from a key, cuts them into
``ceil(n / batch_size)`` mini-batches and scans the step over them inside one compiled function.
The last batch, when ragged, is padded to ``batch_size`` with copies of real rows and *masked*
(``jaxbp.losses.weighted``): every example ``i`` of a batch carries a weight ``w_i = m_i / n_b``
(``m_i`` = 1 for a real row, 0 for padding; ``n_b`` the real rows in that batch), and the loss is
``sum_i w_i l_i`` with ``l_i`` the loss of example ``i`` alone. That is exactly the batch mean
over the real rows, and the gradient of a padded row is exactly zero — so a padded batch gives
the same numbers as the unpadded one, while every batch has one shape and nothing recompiles.
A network with state (``batch_norm``) is the exception: padded rows would enter its batch
statistics, so it trains on the ``floor(n / batch_size)`` full batches only, and the
``n mod batch_size`` examples the shuffle puts last sit that epoch out.

The training state is one ``NamedTuple`` (:class:`TrainState`); the history is a plain dict of
lists, one entry per epoch; epochs are counted as totals, so ``fit(..., state=s, epochs=10)``
continues a run that stopped at epoch ``s.epoch`` up to epoch 10. ``fit(...,
checkpoint_dir=)`` saves the run after every epoch; :func:`load_run` reads it back.

One job per module:

- ``state``: :class:`TrainState`, :class:`FitResult`, :func:`init_state`;
- ``step``: the update of one step and :func:`make_train_step`;
- ``epoch``: :func:`make_train_epoch`, fit's compiled epoch, :func:`epoch_batches`;
- ``metrics``: :func:`accuracy_for`, :func:`evaluate`, the checks and casts of the data;
- ``stopping``: early stopping's book-keeping; ``progress``: the progress bar;
- ``runs``: a run on disk (save, resume past damaged checkpoints, :func:`load_run`);
- ``diverge``: :class:`TrainingDiverged`, raised when a step turns non-finite;
  ``loop``: :func:`fit`;
- ``sweep``: :func:`sweep`, K settings (learning rates, seeds, L1/L2) as one ``vmap``-ed
  compiled epoch; ``lr_range``: :func:`find_learning_rate`, the learning-rate range test;
- ``log``: :class:`MetricsLog` (a ``fit`` callback writing one record per epoch to a JSON-lines
  or CSV file) and :func:`read_log`.
"""

from jaxbp.train.diverge import TrainingDiverged
from jaxbp.train.epoch import epoch_batches, make_train_epoch
from jaxbp.train.log import MetricsLog, read_log
from jaxbp.train.loop import fit
from jaxbp.train.lr_range import LearningRateTest, find_learning_rate
from jaxbp.train.metrics import accuracy_for, evaluate
from jaxbp.train.runs import load_run
from jaxbp.train.state import FitResult, TrainState, init_state
from jaxbp.train.step import make_train_step
from jaxbp.train.sweep import SweepResult, sweep

__all__ = [
    "FitResult",
    "LearningRateTest",
    "MetricsLog",
    "SweepResult",
    "TrainState",
    "TrainingDiverged",
    "accuracy_for",
    "epoch_batches",
    "evaluate",
    "find_learning_rate",
    "fit",
    "init_state",
    "load_run",
    "make_train_epoch",
    "make_train_step",
    "read_log",
    "sweep",
]

# doctest.testmod(jaxbp.train) runs the examples of the functions re-exported here.
__test__ = {name: globals()[name] for name in ("MetricsLog", "load_run", "make_train_epoch",
                                                   "make_train_step")}
