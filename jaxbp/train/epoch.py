"""Whole epochs as one ``jit``-compiled ``lax.scan`` of the step: over batches you cut
(:func:`make_train_epoch`), and :func:`fit`'s epoch, which shuffles, pads and masks itself.

fit's epoch is compiled once per configuration (:class:`EpochConfig`, static and hashable) and
XLA options (:func:`epoch_program`); ``"auto"`` options are decided once per model and input
shapes (:func:`epoch_options`). The masking of a ragged last batch is described in
:mod:`jaxbp.train`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxbp import parallel
from jaxbp._compile import auto_options, platform_of
from jaxbp._core import Array, Layer, Loss, PRNGKey, has_state
from jaxbp._validate import non_negative
from jaxbp.gradients import backprop, gradient_source
from jaxbp.losses import weighted
from jaxbp.train.state import TrainState
from jaxbp.train.step import compiled_update, update_with_grads


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
      ``epoch(params, opt_state, xs, ys, key=None, state=None) -> (params, opt_state,
      metrics)``: ``xs: (steps, batch, ...)`` and ``ys: (steps, batch, ...)`` (or any pytrees
      with that leading axis); ``metrics = {"loss": (steps,)}``, each step's objective at the
      parameters it started from. ``key`` is split into one key per step (for dropout, and
      batch norm's training mode); ``None`` runs stochastic layers in evaluation mode. With
      ``state=`` (a network with state), ``(params, opt_state, metrics, state)``, the state
      carried through every step.

    Examples:
      Forty examples cut into five batches of eight, one compiled call for all five steps:

      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> x, y = jnp.ones((40, 2)), jnp.zeros((40, 1))
      >>> xs, ys = x.reshape(5, 8, 2), y.reshape(5, 8, 1)
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1))
      >>> epoch = bp.make_train_epoch(net, bp.mse(), bp.optim.sgd(0.1))
      >>> params = net.init(jax.random.key(0), (2,))[0]
      >>> params, opt_state, metrics = epoch(params, bp.optim.sgd(0.1).init(params), xs, ys)
      >>> metrics["loss"].shape
      (5,)
    """
    def program(update):
        def epoch(params, opt_state, xs, ys, key=None, state=None):
            steps = steps_of(xs, ys)
            keys = None if key is None else jax.random.split(key, steps)

            def body(carry, batch):
                (params, opt_state, layer_state), (x, y, k) = carry, batch
                params, opt_state, value, layer_state = update(params, opt_state, x, y, k,
                                                               layer_state)
                return (params, opt_state, layer_state), value

            (params, opt_state, new_state), values = jax.lax.scan(
                body, (params, opt_state, state), (xs, ys, keys), length=steps)
            if state is None:
                return params, opt_state, {"loss": values}
            return params, opt_state, {"loss": values}, new_state

        return epoch

    return compiled_update("make_train_epoch", program, net, loss, optimizer, grad, l1=l1,
                           l2=l2, regularize=regularize, donate=donate,
                           compiler_options=compiler_options)


def steps_of(xs, ys) -> int:
    """The common leading axis of every leaf of ``xs`` and ``ys`` (at least 1), or an error."""
    sizes = {}
    for name, tree in (("xs", xs), ("ys", ys)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            shape = np.shape(leaf)
            sizes[name + jax.tree_util.keystr(path)] = shape[0] if shape else None
    found = set(sizes.values())
    size = found.pop() if len(found) == 1 else None
    if not size:  # none, several, or a leading axis of 0
        shown = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(
            f"make_train_epoch: xs and ys must share a leading axis of steps (at least 1), got "
            f"leading sizes {{{shown}}}. Fix: stack the batches, e.g. xs = x.reshape(steps, "
            f"batch, *x.shape[1:]) and ys = y.reshape(steps, batch, *y.shape[1:]).")
    return size


# --------------------------------------------------------------------------------------
# fit's epoch


class EpochConfig(NamedTuple):
    """The static part of fit's epoch: hashable, so equal configs share one compiled epoch."""

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


def epoch_config(where: str, net: Layer, loss: Loss, optimizer, *, grad, l1, l2, regularize,
                 batch_size: int, shuffle: bool, mesh=None) -> EpochConfig:
    """An :class:`EpochConfig` from checked arguments (``grad`` a source or its name, ``l1``,
    ``l2`` non-negative numbers), or the error, named after ``where``, that says why it is
    not hashable (``regularize`` made of lists or dicts)."""
    cfg = EpochConfig(net, loss, optimizer, gradient_source(grad, where),
                      non_negative(where, "l1", l1, "l1=1e-4"),
                      non_negative(where, "l2", l2, "l2=1e-4"), regularize, batch_size,
                      bool(shuffle), mesh)
    try:
        hash(cfg)
    except TypeError:
        raise TypeError(f"{where}: regularize={regularize!r:.80} is not hashable; pass None, a "
                        f"function leaf -> bool, or a pytree of bools built from tuples and "
                        f"NamedTuples (not lists or dicts).") from None
    return cfg


def epoch_batches(key: PRNGKey, n: int, batch_size: int, *, shuffle: bool = True,
                  full_only: bool = False):
    """The order of one epoch: ``(index, mask)``, both ``(num_batches, batch_size)``.

    ``index`` is a permutation of ``range(n)`` (identity without ``shuffle``), padded with
    index 0 to ``num_batches * batch_size``; ``mask`` is ``True`` on real rows. With
    ``full_only`` (a network with batch statistics, which padded rows would corrupt) the
    ``n % batch_size`` examples the permutation puts last sit this epoch out instead.
    """
    num_batches = n // batch_size if full_only else -(-n // batch_size)
    order = jax.random.permutation(key, n) if shuffle else jnp.arange(n)
    if full_only:
        order = order[:num_batches * batch_size]
    pad = num_batches * batch_size - order.shape[0]
    index = jnp.concatenate([order, jnp.zeros((pad,), order.dtype)])
    mask = jnp.arange(num_batches * batch_size) < order.shape[0]
    return index.reshape(num_batches, batch_size), mask.reshape(num_batches, batch_size)


def _batches(state: TrainState, x: Array, cfg: EpochConfig):
    """The epoch's batches ``(index, weights, keys)``, real rows per batch and the next key."""
    index, mask = epoch_batches(jax.random.fold_in(state.key, 0), x.shape[0], cfg.batch_size,
                                shuffle=cfg.shuffle, full_only=has_state(cfg.net))
    if cfg.mesh is not None:  # equal rows per device: extra rows carry weight exactly zero
        extra = -index.shape[1] % cfg.mesh.size
        index, mask = (jnp.pad(a, ((0, 0), (0, extra))) for a in (index, mask))
    key, k_steps = jax.random.split(jax.random.fold_in(state.key, 1))
    keys = jax.random.split(k_steps, index.shape[0])
    real = jnp.sum(mask, axis=1)
    dtype = jnp.result_type(*[a.dtype for a in jax.tree_util.tree_leaves(state.params)] or [float])
    weights = mask.astype(dtype) / real.astype(dtype).reshape(-1, 1)
    return (index, weights, keys), real, key


def _step(x: Array, y: Array, cfg: EpochConfig):
    """One step on the batch ``(i, w, k)``: ``(params, opt_state, J, grads, layer_state)``
    after it (``layer_state`` ``None`` for a network without state)."""
    grad_fn = cfg.grad(cfg.net, weighted(cfg.loss), l1=cfg.l1, l2=cfg.l2,
                       regularize=cfg.regularize)
    update = update_with_grads(grad_fn, cfg.optimizer)

    def step(params, opt_state, layer_state, i, w, k):
        xb, yb = jnp.take(x, i, axis=0), jnp.take(y, i, axis=0)
        if cfg.mesh is not None:  # data parallel: rows sharded, parameters replicated
            xb, yb, w = parallel.constrain((xb, yb, w), parallel.batch_sharding(cfg.mesh))
        params, opt_state, value, grads, layer_state = update(params, opt_state, xb, (yb, w),
                                                              k, layer_state)
        if cfg.mesh is not None:
            params, opt_state, layer_state = parallel.constrain(
                (params, opt_state, layer_state), parallel.replicated(cfg.mesh))
        return params, opt_state, value, grads, layer_state

    return step


def finite(tree) -> Array:
    """``True`` (a bool scalar) when every floating leaf of ``tree`` is finite.

    Leaves of one shape (a parameter and its optimizer moments) are checked in one fused
    reduction: on CPU a third of the cost of one reduction per leaf (``docs/training.md``)."""
    by_shape: dict = {}
    for leaf in jax.tree_util.tree_leaves(tree):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            ok = jnp.isfinite(leaf)
            shape = jnp.shape(leaf)
            by_shape[shape] = ok if shape not in by_shape else by_shape[shape] & ok
    flags = [jnp.all(ok) for ok in by_shape.values()]
    return jnp.all(jnp.stack(flags)) if flags else jnp.asarray(True)


def scanned_epoch(state: TrainState, x: Array, y: Array, cfg: EpochConfig,
                  check: bool = True) -> tuple[TrainState, Array]:
    """fit's epoch, traceable: ``(state, x, y, cfg) -> (state after it, mean objective)``.

    Shuffles with ``fold_in(state.key, 0)``, takes the per-step keys and the next state's key
    from ``split(fold_in(state.key, 1))`` (:func:`epoch_batches`), scans the step over the
    padded, masked batches. With ``check`` the objective is nan unless the parameters and
    optimizer state ended finite. :func:`epoch_program` jits it; ``bp.sweep`` ``vmap``s it
    (with a per-run optimizer and penalties in ``cfg``, traced: only its fields are read).
    """
    batches, real, key = _batches(state, x, cfg)
    step = _step(x, y, cfg)

    def body(carry, batch):
        params, opt_state, value, _, layer_state = step(*carry, *batch)
        return (params, opt_state, layer_state), value

    (params, opt_state, layer_state), values = jax.lax.scan(
        body, (state.params, state.opt_state, state.layer_state), batches)
    used = x.shape[0] - (x.shape[0] % cfg.batch_size if has_state(cfg.net) else 0)
    objective = jnp.sum(values * real.astype(values.dtype)) / used
    new = TrainState(params, opt_state, state.step + real.shape[0], state.epoch + 1, key,
                     layer_state)
    if not check:
        return new, objective
    # Divergence check: once per epoch, not per step (a non-finite step leaves its parameters
    # non-finite for the rest of the epoch: every update is added to them), folded into the
    # objective fit reads anyway: nan unless the parameters, optimizer state and layer state
    # are finite. fit rebuilds such an epoch's start state and replays it (jaxbp.train.diverge).
    return new, jnp.where(finite((params, opt_state, layer_state)), objective, jnp.nan)


def _replay(state: TrainState, x: Array, y: Array, cfg: EpochConfig):
    """:func:`scanned_epoch` again, stopping at its first non-finite step: ``(params,
    opt_state, layer_state, bad, flags)`` with the state before step ``bad`` (``-1``: none was
    non-finite) and ``flags = [loss finite, each gradient leaf finite..., each updated
    parameter leaf finite..., optimizer and layer state finite]`` at that step. Run only after an
    epoch diverged."""
    batches, real, _ = _batches(state, x, cfg)
    step = _step(x, y, cfg)
    n_leaves = len(jax.tree_util.tree_leaves(state.params))

    def body(carry, batch):
        params, opt_state, layer_state, bad, flags = carry
        t, batch = batch[0], batch[1:]
        new_params, new_opt, value, grads, new_layer = step(params, opt_state, layer_state,
                                                            *batch)
        now = jnp.stack([jnp.isfinite(value)]
                        + [finite(g) for g in jax.tree_util.tree_leaves(grads)]
                        + [finite(p) for p in jax.tree_util.tree_leaves(new_params)]
                        + [finite((new_opt, new_layer))])
        first = (bad < 0) & ~jnp.all(now)
        bad, flags = jnp.where(first, t, bad), jnp.where(first, now, flags)
        params, opt_state, layer_state = jax.tree_util.tree_map(
            lambda n, o: jnp.where(bad < 0, n, o), (new_params, new_opt, new_layer),
            (params, opt_state, layer_state))
        return (params, opt_state, layer_state, bad, flags), None

    start = (state.params, state.opt_state, state.layer_state, jnp.asarray(-1, jnp.int32),
             jnp.ones((2 + 2 * n_leaves,), bool))
    steps = jnp.arange(real.shape[0], dtype=jnp.int32)
    return jax.lax.scan(body, start, (steps, *batches))[0]


replay_program = jax.jit(_replay, static_argnames=("cfg",))


@functools.cache
def epoch_program(options: tuple, check: bool = True) -> jax.stages.Wrapped:
    """fit's jitted epoch, ``(state, x, y, cfg=) -> (state, objective)``, compiled with
    ``dict(options)`` (one jit, hence one cache, per options); ``state`` is donated.
    ``objective`` is the epoch's mean objective, or nan when the parameters or optimizer state
    ended non-finite (``check=False``: the same epoch without that check, for benchmarks)."""
    return jax.jit(functools.partial(scanned_epoch, check=check), static_argnames=("cfg",),
                   donate_argnames=("state",), compiler_options=dict(options) or None)


_AUTO_OPTIONS: dict = {}  # (cfg, input types) -> options "auto" chose for fit's epoch


def epoch_options(spec, state: TrainState, x, y, cfg: EpochConfig) -> tuple:
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
        lowered = epoch_program(()).lower(state, x, y, cfg=cfg)
        if len(_AUTO_OPTIONS) >= 64:
            _AUTO_OPTIONS.pop(next(iter(_AUTO_OPTIONS)))
        _AUTO_OPTIONS[key] = tuple(sorted(auto_options(lowered, platform_of(x)).items()))
    return _AUTO_OPTIONS[key]


__all__ = ["EpochConfig", "epoch_batches", "epoch_config", "epoch_options", "epoch_program",
           "finite", "make_train_epoch", "replay_program", "scanned_epoch", "steps_of"]
