"""Training: a ``jit``-compiled step, epochs as one compiled ``lax.scan``, and :func:`fit`.

One optimisation step, for either gradient source (``backprop`` or ``autodiff``) and any optax
optimizer (hand-written ones from :mod:`jaxbp.optim` included)::

    J, dJ/dtheta = grad(net, loss, l1=, l2=)(theta, x_batch, y_batch, key=key)
    u, opt_state = optimizer.update(dJ/dtheta, opt_state, theta)
    theta <- theta + u

:func:`fit` runs whole epochs: it shuffles the ``n`` training examples from a key, cuts them into
``ceil(n / batch_size)`` mini-batches and scans the step over them inside one compiled function.
The last batch, when ragged, is padded to ``batch_size`` with copies of real rows and *masked*:
every example ``i`` of a batch carries a weight ``w_i = m_i / n_b`` (``m_i`` = 1 for a real row,
0 for padding; ``n_b`` the real rows in that batch), and the loss is ``sum_i w_i l_i`` with
``l_i`` the loss of example ``i`` alone. That is exactly the batch mean over the real rows, and
the gradient of a padded row is exactly zero — so a padded batch gives the same numbers as the
unpadded one, while every batch has one shape and nothing recompiles.

The training state is one ``NamedTuple`` (:class:`TrainState`); the history is a plain dict of
lists, one entry per epoch; epochs are counted as totals, so ``fit(..., state=s, epochs=10)``
continues a run that stopped at epoch ``s.epoch`` up to epoch 10.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import checkpoint, parallel
from jaxbp._compile import Jitted, auto_options, check_compiler_options, platform_of
from jaxbp._core import Array, Layer, Loss, Params, PRNGKey
from jaxbp._validate import non_negative
from jaxbp.gradients import backprop, check_net_and_loss, gradient_source
from jaxbp.losses import weighted
from jaxbp.optim import apply_updates

Accuracy = Callable[[Array, Array], Array]  # (y_pred, y_true) -> per-example 0/1, shape (batch,)


class TrainState(NamedTuple):
    """Everything :func:`fit` carries from one epoch to the next.

    Attributes:
      params: the network parameters.
      opt_state: the optimizer's state.
      step: optimisation steps taken so far (int32 scalar).
      epoch: epochs completed so far (int32 scalar); :func:`fit` trains up to its ``epochs``.
      key: the PRNG key the next epoch splits into its shuffle and per-step (dropout) keys.
    """

    params: Params
    opt_state: Any
    step: Array
    epoch: Array
    key: PRNGKey


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the trained parameters (the best epoch's when early stopping is on).
      opt_state: the optimizer state that goes with ``params``.
      history: ``{"epoch": [...], "train_loss": [...], ...}``, one entry per epoch run.
      state: the final :class:`TrainState` (to continue training or to checkpoint).
      best_epoch: the epoch whose parameters were restored, or ``None`` without ``patience``.
    """

    params: Params
    opt_state: Any
    history: dict[str, list]
    state: TrainState
    best_epoch: int | None


# --------------------------------------------------------------------------------------
# Argument checks


def _check_optimizer(optimizer) -> None:
    if not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(
            f"optimizer={optimizer!r:.80} is not an optax GradientTransformation (an object with "
            f"init and update). Fix: call the factory, e.g. bp.optim.adam(1e-3) or "
            f"optax.adam(1e-3).")


def _check_int(arg: str, value, *, low: int, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{arg}={value!r} must be an int >= {low}. Fix: e.g. {example}.")
    return int(value)


def _check_xy(what: str, x, y) -> tuple[Array, Array]:
    if not hasattr(x, "shape") or not hasattr(y, "shape"):
        raise TypeError(f"{what}: x and y must be arrays with a leading batch axis, got "
                        f"{type(x).__name__} and {type(y).__name__}. Fix: pass np.asarray(...).")
    if len(x.shape) < 1 or len(y.shape) < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{what}: x has shape {tuple(x.shape)} and y has shape "
                         f"{tuple(y.shape)}; both need the same non-zero number of examples "
                         f"on axis 0. Fix: pass matching inputs and targets.")
    return x, y


def _as_inputs(params, x, y) -> tuple[Array, Array]:
    """Floating data in the parameters' float dtype; integer labels as int32."""
    floats = [leaf.dtype for leaf in jax.tree_util.tree_leaves(params)
              if jnp.issubdtype(leaf.dtype, jnp.floating)]
    dtype = jnp.result_type(*floats) if floats else jnp.result_type(float)

    def cast(a):
        a = jnp.asarray(a)
        if jnp.issubdtype(a.dtype, jnp.floating):
            return a.astype(dtype)
        if jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_:
            return a.astype(jnp.int32)
        return a

    return cast(x), cast(y)


# --------------------------------------------------------------------------------------
# Masked (per-example weighted) loss and accuracy


masked = weighted  # ragged batches: padded rows get weight exactly 0


@functools.lru_cache(maxsize=None)  # one function per loss, so compiled evaluations are shared
def accuracy_for(loss: Loss) -> Accuracy:
    """The usual classification accuracy for ``loss``, per example (1.0 correct, 0.0 not).

    Integer labels ``(batch,)`` or one-hot targets with several outputs: ``argmax`` matches.
    One output (binary): the prediction is positive when above 0 for logits
    (``sigmoid_binary_cross_entropy``), above 0.5 for probabilities (anything else).
    """
    threshold = 0.0 if loss.name == "sigmoid_binary_cross_entropy" else 0.5

    def accuracy(y_pred, y_true):
        if y_true.ndim == 1 and jnp.issubdtype(y_true.dtype, jnp.integer):
            hit = jnp.argmax(y_pred, axis=-1) == y_true
        elif y_pred.shape[-1] > 1:
            hit = jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)
            hit = jnp.all(hit.reshape(hit.shape[0], -1), axis=1)
        else:
            hit = (y_pred > threshold) == (y_true > 0.5)
            hit = jnp.all(hit.reshape(hit.shape[0], -1), axis=1)
        return hit.astype(jnp.result_type(float))

    return accuracy


def _accuracy_fn(loss: Loss, accuracy) -> Accuracy | None:
    if accuracy is None:
        return None
    if isinstance(accuracy, str):
        if accuracy != "auto":
            raise ValueError(f"accuracy={accuracy!r}: expected 'auto', None or a callable "
                             f"(y_pred, y_true) -> per-example 0/1 of shape (batch,).")
        return accuracy_for(loss)
    if not callable(accuracy):
        raise TypeError(f"accuracy={accuracy!r} must be 'auto', None or a callable "
                        f"(y_pred, y_true) -> per-example 0/1 of shape (batch,).")
    return accuracy


# --------------------------------------------------------------------------------------
# The step


def _update_fn(grad_fn, optimizer):
    def update(params, opt_state, x, y, key):
        value, grads = grad_fn(params, x, y, key=key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return apply_updates(params, updates), opt_state, value

    return update


def _checked_update(where, net, loss, optimizer, grad, l1, l2, regularize, compiler_options):
    """The update function of a step and the checked ``compiler_options``."""
    _check_optimizer(optimizer)
    options = check_compiler_options(where, compiler_options)
    grad_fn = gradient_source(grad)(net, loss, l1=l1, l2=l2, regularize=regularize)
    return _update_fn(grad_fn, optimizer), options


def make_train_step(net: Layer, loss: Loss, optimizer: optax.GradientTransformation,
                    grad=backprop, *, l1: float = 0.0, l2: float = 0.0, regularize=None,
                    donate: bool = False, compiler_options=None):
    """One ``jit``-compiled optimisation step.

    Args:
      net: the network.
      loss: the loss (mean over the batch).
      optimizer: any ``optax.GradientTransformation`` — hand-written (``bp.optim.adam(1e-3)``)
        or optax's (``optax.adam(1e-3)``).
      grad: the gradient source, ``bp.backprop`` (hand-derived) or ``bp.autodiff`` (``jax.grad``),
        or its name.
      l1, l2: penalties ``l1 sum|w| + (l2/2) sum w^2`` on the weights (see ``bp.backprop``).
      regularize: which leaves are penalised (see ``bp.backprop``).
      donate: donate ``params`` and ``opt_state`` to the step, so XLA updates them in place;
        the arrays passed in are then invalid after the call (use the returned ones).
      compiler_options: XLA options: ``None`` (XLA's defaults), ``"auto"`` (per-step speed for
        long runs: a tiny program on CPU is compiled without matmul-library calls and threads,
        up to ~2.5x faster steps for up to ~0.25 s more compilation; decided at the first call)
        or a dict for ``jax.jit``. See ``docs/training.md``.

    Returns:
      ``step(params, opt_state, x, y, key=None) -> (params, opt_state, metrics)`` with
      ``metrics = {"loss": J}``, the objective (loss plus penalties) at the parameters passed in.
      ``key`` feeds stochastic layers (dropout); ``None`` runs them in evaluation mode.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1))
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> opt = bp.optim.momentum(0.1)
      >>> step = bp.make_train_step(net, bp.mse(), opt)
      >>> params, opt_state, metrics = step(params, opt.init(params), jnp.ones((8, 2)),
      ...                                   jnp.zeros((8, 1)))
    """
    update, options = _checked_update("make_train_step", net, loss, optimizer, grad, l1, l2,
                                      regularize, compiler_options)

    def step(params, opt_state, x, y, key=None):
        params, opt_state, value = update(params, opt_state, x, y, key)
        return params, opt_state, {"loss": value}

    return Jitted(step, options, donate_argnums=(0, 1) if donate else ())


def make_train_epoch(net: Layer, loss: Loss, optimizer: optax.GradientTransformation,
                     grad=backprop, *, l1: float = 0.0, l2: float = 0.0, regularize=None,
                     donate: bool = False, compiler_options=None):
    """A whole epoch over batches you made, as one ``jit``-compiled ``lax.scan`` of the step.

    The same update as :func:`make_train_step`, applied to ``xs[0], xs[1], ...`` in order, with
    no Python between the steps. (:func:`fit` does this too, and also shuffles, pads a ragged
    last batch and evaluates; use this when the batches are already cut.)

    Args:
      net, loss, optimizer, grad, l1, l2, regularize, donate, compiler_options: as in
        :func:`make_train_step`.

    Returns:
      ``epoch(params, opt_state, xs, ys, key=None) -> (params, opt_state, metrics)``:
      ``xs: (steps, batch, ...)`` and ``ys: (steps, batch, ...)`` (or any pytrees with that
      leading axis); ``metrics = {"loss": (steps,)}``, each step's objective at the parameters
      it started from. ``key`` is split into one key per step (for dropout); ``None`` runs
      stochastic layers in evaluation mode.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1))
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> opt = bp.optim.sgd(0.1)
      >>> epoch = bp.make_train_epoch(net, bp.mse(), opt)
      >>> params, opt_state, metrics = epoch(params, opt.init(params), jnp.ones((5, 8, 2)),
      ...                                    jnp.zeros((5, 8, 1)))
      >>> metrics["loss"].shape
      (5,)
    """
    update, options = _checked_update("make_train_epoch", net, loss, optimizer, grad, l1, l2,
                                      regularize, compiler_options)

    def epoch(params, opt_state, xs, ys, key=None):
        steps = _steps_of(xs, ys)
        keys = None if key is None else jax.random.split(key, steps)

        def body(carry, batch):
            x, y, k = batch
            params, opt_state, value = update(*carry, x, y, k)
            return (params, opt_state), value

        (params, opt_state), values = jax.lax.scan(body, (params, opt_state), (xs, ys, keys),
                                                   length=steps)
        return params, opt_state, {"loss": values}

    return Jitted(epoch, options, donate_argnums=(0, 1) if donate else ())


def _steps_of(xs, ys) -> int:
    """The common leading axis of every leaf of ``xs`` and ``ys`` (at least 1), or an error."""
    sizes = {}
    for name, tree in (("xs", xs), ("ys", ys)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            shape = np.shape(leaf)
            sizes[name + jax.tree_util.keystr(path)] = shape[0] if shape else None
    found = set(sizes.values())
    if len(found) != 1 or None in found or 0 in found:
        shown = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(
            f"make_train_epoch: xs and ys must share a leading axis of steps (at least 1), got "
            f"leading sizes {{{shown}}}. Fix: stack the batches, e.g. xs = x.reshape(steps, "
            f"batch, *x.shape[1:]) and ys = y.reshape(steps, batch, *y.shape[1:]).")
    return found.pop()


# --------------------------------------------------------------------------------------
# Epochs


class _Config(NamedTuple):
    """The static part of an epoch: hashable, so equal configs share one compiled epoch."""

    net: Layer
    loss: Loss
    optimizer: Any
    grad: Callable
    l1: float
    l2: float
    regularize: Any
    batch_size: int
    shuffle: bool
    mesh: Any = None  # a jax.sharding.Mesh for data parallelism, or None for one device


def epoch_batches(key: PRNGKey, n: int, batch_size: int, *, shuffle: bool = True):
    """The order of one epoch: ``(index, mask)``, both ``(num_batches, batch_size)``.

    ``index`` is a permutation of ``range(n)`` (identity without ``shuffle``), padded with
    index 0 to ``num_batches * batch_size``; ``mask`` is ``True`` on real rows.
    """
    num_batches = -(-n // batch_size)
    order = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
    pad = num_batches * batch_size - n
    index = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
    mask = jnp.arange(num_batches * batch_size) < n
    return index.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)


def init_state(params: Params, optimizer, key: PRNGKey) -> TrainState:
    """A fresh :class:`TrainState`: epoch and step 0, ``optimizer.init(params)``."""
    zero = jnp.zeros([], jnp.int32)
    # jit: one compilation for the whole state, rather than one eager op per leaf shape.
    return TrainState(params, jax.jit(optimizer.init)(params), zero, zero, key)


# fit donates its state to each epoch; it must never donate buffers the caller still holds.
# (One jitted copy per state structure, rather than an eager copy, i.e. a compile, per leaf.)
_copy = jax.jit(functools.partial(jax.tree_util.tree_map, jnp.copy))


def _epoch(state: TrainState, x: Array, y: Array, cfg: _Config):
    index, mask = epoch_batches(jax.random.fold_in(state.key, 0), x.shape[0], cfg.batch_size,
                                shuffle=cfg.shuffle)
    if cfg.mesh is not None:  # equal rows per device: extra rows carry weight exactly zero
        extra = -index.shape[1] % cfg.mesh.size
        index, mask = (jnp.pad(a, ((0, 0), (0, extra))) for a in (index, mask))
    key, k_steps = jax.random.split(jax.random.fold_in(state.key, 1))
    keys = jax.random.split(k_steps, index.shape[0])
    real = jnp.sum(mask, axis=1)
    dtype = jnp.result_type(*[a.dtype for a in jax.tree_util.tree_leaves(state.params)] or [float])
    weights = mask.astype(dtype) / real.astype(dtype).reshape(-1, 1)

    grad_fn = cfg.grad(cfg.net, masked(cfg.loss), l1=cfg.l1, l2=cfg.l2,
                       regularize=cfg.regularize)
    update = _update_fn(grad_fn, cfg.optimizer)

    def body(carry, batch):
        params, opt_state = carry
        i, w, k = batch
        xb, yb = jnp.take(x, i, axis=0), jnp.take(y, i, axis=0)
        if cfg.mesh is not None:  # data parallel: rows sharded, parameters replicated
            xb, yb, w = parallel.constrain((xb, yb, w), parallel.batch_sharding(cfg.mesh))
        params, opt_state, value = update(params, opt_state, xb, (yb, w), k)
        if cfg.mesh is not None:
            params, opt_state = parallel.constrain((params, opt_state),
                                                   parallel.replicated(cfg.mesh))
        return (params, opt_state), value

    (params, opt_state), values = jax.lax.scan(
        body, (state.params, state.opt_state), (index, weights, keys))
    objective = jnp.sum(values * real.astype(values.dtype)) / x.shape[0]
    new = TrainState(params, opt_state, state.step + index.shape[0], state.epoch + 1, key)
    return new, objective


@functools.lru_cache(maxsize=None)
def _epoch_program(options: tuple) -> Callable:
    """The jitted epoch compiled with ``dict(options)`` (one jit, hence one cache, per options)."""
    return jax.jit(_epoch, static_argnames=("cfg",), donate_argnames=("state",),
                   compiler_options=dict(options) or None)


_AUTO_OPTIONS: dict = {}  # (cfg, input types) -> options "auto" chose for fit's epoch


def _epoch_options(spec, state: TrainState, x, y, cfg: _Config) -> tuple:
    """``fit``'s ``compiler_options`` as a hashable tuple; ``"auto"`` is decided once per model,
    optimizer and input shapes from the lowered epoch (see ``jaxbp._compile``)."""
    if spec is None:
        return ()
    if spec != "auto":
        options = tuple(sorted(spec.items()))
        try:
            hash(options)
        except TypeError:
            raise TypeError(f"fit: compiler_options={spec!r:.80} has a value that is not "
                            f"hashable; XLA options take numbers, strings or bools.") from None
        return options
    leaves, tree = jax.tree_util.tree_flatten((state, x, y))
    key = (cfg, tree, tuple((np.shape(a), str(getattr(a, "dtype", type(a)))) for a in leaves))
    if key not in _AUTO_OPTIONS:
        lowered = _epoch_program(()).lower(state, x, y, cfg=cfg)
        if len(_AUTO_OPTIONS) >= 64:
            _AUTO_OPTIONS.pop(next(iter(_AUTO_OPTIONS)))
        _AUTO_OPTIONS[key] = tuple(sorted(auto_options(lowered, platform_of(x)).items()))
    return _AUTO_OPTIONS[key]


def _evaluate_impl(params, x, y, net, loss, accuracy):
    y_pred, _ = net.forward(params, x)
    out = {"loss": loss.value(y_pred, y)}
    if accuracy is not None:
        out["accuracy"] = jnp.mean(accuracy(y_pred, y))
    return out


_evaluate = jax.jit(_evaluate_impl, static_argnames=("net", "loss", "accuracy"))


def evaluate(net: Layer, loss: Loss, params: Params, x, y, *, accuracy="auto") -> dict:
    """Loss (without penalties) and accuracy of ``params`` on ``(x, y)``, in evaluation mode.

    Returns:
      ``{"loss": float, "accuracy": float}`` (no ``"accuracy"`` when ``accuracy=None``).
    """
    x, y = _as_inputs(params, *_check_xy("evaluate", x, y))
    out = _evaluate(params, x, y, net=net, loss=loss, accuracy=_accuracy_fn(loss, accuracy))
    return {k: float(out[k]) for k in ("loss", "accuracy") if k in out}


# --------------------------------------------------------------------------------------
# Progress bar


class _Progress:
    """One line on a terminal, redrawn in place each epoch: ``epoch 3/10 [###---] loss ...``."""

    def __init__(self, total: int, stream, width: int = 24, every: float = 0.1):
        self.total, self.stream, self.width, self.every = total, stream, width, every
        self.start = self.last = time.perf_counter()

    def update(self, epoch: int, record: dict) -> None:
        now = time.perf_counter()
        if now - self.last < self.every and epoch < self.total:
            return  # a fast loop would spend its time redrawing the terminal
        self.last = now
        filled = int(self.width * epoch / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        shown = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                         if k not in ("epoch", "seconds", "objective"))
        self.stream.write(f"\repoch {epoch}/{self.total} [{bar}] "
                          f"{now - self.start:.1f}s {shown}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


# --------------------------------------------------------------------------------------
# Checkpoints of a run: the TrainState as arrays, the history (and early-stopping book-keeping)
# as JSON metadata. See jaxbp/checkpoint.py for the format and its guarantees.


def _checkpoint_to_resume(checkpoint_dir, resume, state, keep):
    """Checks the checkpoint arguments; returns the checkpoint to resume from, or ``None``."""
    if resume and checkpoint_dir is None:
        raise ValueError("fit: resume=True needs checkpoint_dir=, the directory of the run to "
                         "continue. Fix: fit(..., checkpoint_dir='runs/x', resume=True).")
    if checkpoint_dir is None:
        return None
    _check_int("keep_checkpoints", keep, low=1, example="keep_checkpoints=2")
    found = checkpoint.latest(checkpoint_dir)
    if found is not None and not resume:
        raise ValueError(
            f"fit: checkpoint_dir={str(checkpoint_dir)!r} already holds {found.name}; pass "
            f"resume=True to continue that run, or choose an empty directory for a new one.")
    if found is not None and state is not None:
        raise ValueError("fit: pass either state= or resume=True with a checkpoint, not both; "
                         "the checkpoint already holds the state to continue from.")
    return found


def _save(directory, state, history, best, wait, keep) -> None:
    if jax.process_index() != 0:  # one writer; data-parallel state is replicated everywhere
        return
    tree, meta = {"state": state}, {"history": history}
    if best is not None and best[1] is not None:
        tree["best"] = {"params": best[2], "opt_state": best[3]}
        meta.update(best_value=best[0], best_epoch=best[1], wait=wait)
    checkpoint.save_step(directory, int(state.epoch), tree, metadata=meta, keep=keep)


def _restore(path, template: TrainState, patience):
    manifest = checkpoint.read_manifest(path)
    meta = manifest["metadata"]
    tree = {"state": template}
    if "best_epoch" in meta:
        tree["best"] = {"params": template.params, "opt_state": template.opt_state}
    tree, meta = checkpoint.load(path, tree)
    saved = {"history": meta["history"]}
    if "best" in tree and patience is not None:
        saved["best"] = (meta["best_value"], meta["best_epoch"], tree["best"]["params"],
                         tree["best"]["opt_state"])
        saved["wait"] = meta["wait"]
    return tree["state"], saved


# --------------------------------------------------------------------------------------
# fit


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
    every mini-batch (the ragged last one padded and masked, see the module docstring), then
    evaluates the whole training set and ``validation`` in evaluation mode (``key=None``).

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
        patience count starts afresh in every call.)
      devices: data parallelism: ``None`` (one device, the default), a device count ``n`` (the
        first ``n`` of ``jax.devices()``), a list of devices or a ``Mesh``. Each mini-batch is
        sharded over them (padded with zero-weight rows to a multiple of ``n``), parameters and
        optimizer state are replicated; results equal one device's up to the order of
        floating-point additions. See ``docs/scale.md``.
      checkpoint_dir: save the :class:`TrainState` and history after every epoch to
        ``checkpoint_dir/checkpoint_<epoch>.npz`` (atomically; the newest ``keep_checkpoints``
        are kept). A directory that already holds checkpoints needs ``resume=True``.
      resume: continue from the newest checkpoint in ``checkpoint_dir`` (its state, history
        and early-stopping progress; ``params`` and ``key`` then only serve as the template
        that checks it fits),
        up to ``epochs`` in total; with no checkpoint there yet, start afresh. Bit-identical to
        an uninterrupted run on the same devices.
      keep_checkpoints: how many checkpoints ``checkpoint_dir`` keeps.
      compiler_options: XLA options for the compiled epoch, as in :func:`make_train_step`
        (``"auto"`` decides from the epoch's cost before its first run).

    Returns:
      A :class:`FitResult` ``(params, opt_state, history, state, best_epoch)``. ``history`` has
      ``epoch``, ``seconds``, ``objective`` (mean mini-batch objective, penalties and dropout
      included), ``train_loss``, ``train_accuracy`` and ``val_loss``, ``val_accuracy``.
    """
    check_net_and_loss(net, loss, "fit")
    _check_optimizer(optimizer)
    epochs = _check_int("epochs", epochs, low=0, example="epochs=100")
    batch_size = _check_int("batch_size", batch_size, low=1, example="batch_size=32")
    if patience is not None:
        patience = _check_int("patience", patience, low=1, example="patience=10")
    acc = _accuracy_fn(loss, accuracy)
    options_spec = check_compiler_options("fit", compiler_options)
    found = _checkpoint_to_resume(checkpoint_dir, resume, state, keep_checkpoints)
    mesh = None if devices is None else parallel.make_mesh(devices)
    cfg = _Config(net, loss, optimizer, gradient_source(grad), non_negative("fit", "l1", l1, "l1=1e-4"),
                  non_negative("fit", "l2", l2, "l2=1e-4"), regularize, batch_size, bool(shuffle), mesh)
    try:
        hash(cfg)
    except TypeError:
        raise TypeError(f"fit: regularize={regularize!r:.80} is not hashable; pass None, a "
                        f"function leaf -> bool, or a pytree of bools built from tuples and "
                        f"NamedTuples (not lists or dicts).") from None

    if state is None:
        if key is None:
            raise TypeError("fit: key is required to start training (it seeds shuffling and "
                            "dropout). Fix: key=jax.random.key(0), or key=0.")
        if isinstance(key, (int, np.integer)):
            key = jax.random.key(int(key))
        state = init_state(params, optimizer, key)
    saved = {}
    if found is not None:  # the fresh state is the template the checkpoint must fit
        state, saved = _restore(found, state, patience)
        history = saved["history"]
    state = _copy(state)
    x, y = _as_inputs(state.params, *_check_xy("fit", x, y))
    if validation is not None:
        if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
            raise TypeError(f"fit: validation must be a pair (x_val, y_val) or None, got "
                            f"{type(validation).__name__}. Fix: validation=(x_val, y_val).")
        validation = _as_inputs(state.params, *_check_xy("fit validation", *validation))
    if mesh is not None:  # every device holds the data; each step shards its batch
        state, x, y, validation = parallel.put((state, x, y, validation),
                                               parallel.replicated(mesh))

    history = {k: list(v) for k, v in (history or {}).items()}
    stream = sys.stderr if stream is None else stream
    if progress is None:
        progress = bool(getattr(stream, "isatty", lambda: False)())
    start_epoch = int(state.epoch)
    bar = _Progress(epochs, stream) if progress and start_epoch < epochs else None

    monitor = "val_loss" if validation is not None else "train_loss"
    best = (math.inf, None, None, None)  # value, epoch, params, opt_state
    wait = 0
    if "best" in saved:
        best, wait = saved["best"], saved["wait"]
    run_epoch = None
    t0 = time.perf_counter()
    for epoch in range(start_epoch + 1, epochs + 1):
        if run_epoch is None:
            run_epoch = _epoch_program(_epoch_options(options_spec, state, x, y, cfg))
        state, objective = run_epoch(state, x, y, cfg=cfg)
        record = {"epoch": epoch}
        for prefix, (xs, ys) in [("train", (x, y))] + (
                [("val", validation)] if validation is not None else []):
            out = _evaluate(state.params, xs, ys, net=net, loss=loss, accuracy=acc)
            for k in ("loss", "accuracy"):
                if k in out:
                    record[f"{prefix}_{k}"] = float(out[k])
        record["objective"] = float(objective)
        record["seconds"] = time.perf_counter() - t0
        for k, v in record.items():
            history.setdefault(k, []).append(v)
        if bar is not None:
            bar.update(epoch, record)
        if patience is not None:
            if record[monitor] < best[0] - min_delta:
                best, wait = (record[monitor], epoch, _copy(state.params),
                              _copy(state.opt_state)), 0
            else:
                wait += 1
        if checkpoint_dir is not None:
            _save(checkpoint_dir, state, history, best if patience is not None else None, wait,
                  keep_checkpoints)
        if callback is not None:
            callback(state, record)
        if patience is not None and wait >= patience:
            break
    if bar is not None:
        bar.close()

    if patience is not None and best[1] is not None:
        return FitResult(best[2], best[3], history, state, best[1])
    return FitResult(state.params, state.opt_state, history, state, None)


__all__ = [
    "FitResult",
    "TrainState",
    "accuracy_for",
    "epoch_batches",
    "evaluate",
    "fit",
    "init_state",
    "make_train_epoch",
    "make_train_step",
    "masked",
]
