""":func:`sweep`: one network trained for K settings at once (learning rates, seeds, L1/L2
coefficients and their product grid) as one ``vmap``-ed compiled epoch per epoch.

Each run is :func:`fit`'s epoch (:func:`~jaxbp.train.epoch.scanned_epoch`) with its own
optimizer, built inside the compiled program from the run's traced learning rate, and its own
penalties; ``jax.vmap`` stacks the K runs along a leading axis. The program depends on K only
through the shapes, so it compiles once per sweep however many settings it holds, and its
traced learning rates make every setting of a grid share it.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any, NamedTuple
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp import parallel
from jaxbp._core import Layer, Loss, Params, has_state, init_layer_state
from jaxbp._validate import fail, int_at_least, non_negative, positive_number, require_optimizer
from jaxbp.gradients import backprop, check_net_and_loss
from jaxbp.train.epoch import EpochConfig, epoch_config, scanned_epoch
from jaxbp.train.loop import check_full_batch, checked_data
from jaxbp.train.metrics import Accuracy, accuracy_fn, evaluate_arrays
from jaxbp.train.progress import progress_bar
from jaxbp.train.state import TrainState


class SweepResult(NamedTuple):
    """What :func:`sweep` returns: run ``k`` is ``settings[k]``.

    Attributes:
      settings: one dict per run, e.g. ``{"learning_rate": 0.01, "seed": 0}`` (``"l1"`` and
        ``"l2"`` only when they were given).
      histories: one dict per run, as :func:`fit`'s ``history`` (``epoch``, ``train_loss``,
        ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``objective``, ``seconds``); a
        diverged run's stops at its last finite epoch.
      params: every run's parameters, stacked along a leading axis of K (a diverged run's are
        its last finite ones); :meth:`params_of` picks one run's.
      diverged: per run, whether its loss or parameters turned non-finite (nan or inf).
      best: the run with the lowest final ``val_loss`` (``train_loss`` without validation)
        among those that did not diverge; ``None`` if every run diverged.
      layer_state: for a network with state (batch norm), every run's layer state, stacked
        like ``params`` (:meth:`layer_state_of`); ``None`` for a network without.
    """

    settings: list[dict]
    histories: list[dict]
    params: Params
    diverged: list[bool]
    best: int | None
    layer_state: Any = None

    def params_of(self, k: int) -> Params:
        """Run ``k``'s parameters (``params`` without the leading axis)."""
        return jax.tree_util.tree_map(lambda a: a[k], self.params)

    def layer_state_of(self, k: int) -> Any:
        """Run ``k``'s layer state (``None`` for a network without state)."""
        return jax.tree_util.tree_map(lambda a: a[k], self.layer_state)


class _Spec(NamedTuple):
    """The static part of a sweep's programs (hashable: equal specs share the compiled code)."""

    cfg: EpochConfig  # optimizer: the one optimizer, or None when learning rates are swept
    factory: Callable | None  # learning_rate -> GradientTransformation, when swept
    accuracy: Accuracy | None
    mesh: Any  # the devices the K runs are sharded over, or None


# --------------------------------------------------------------------------------------
# Arguments


def _values(arg: str, values, check, example: str) -> tuple:
    """A non-empty tuple of checked values from a sequence (a number alone: one value)."""
    if isinstance(values, (int, float, np.number)) and not isinstance(values, bool):
        values = (values,)
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)) \
            or len(values) == 0:
        fail("sweep", arg, values, "a non-empty sequence", example, error=TypeError)
    return tuple(check("sweep", arg, v, example) for v in values)


def _seed(where: str, arg: str, value, example: str) -> int:
    return int_at_least(where, arg, value, 0, example)


def _grid(learning_rates, seeds, l1, l2) -> tuple[list[dict], dict]:
    """The settings of the product grid, one dict per run, and the axes that were given."""
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        fail("sweep", "seeds", seeds, "a sequence of seeds", f"seeds=range({seeds})",
             error=TypeError)
    axes = {"learning_rate": None if learning_rates is None else
            _values("learning_rates", learning_rates, positive_number,
                    "learning_rates=[1e-3, 1e-2, 1e-1]"),
            "seed": _values("seeds", seeds, _seed, "seeds=(0, 1, 2)"),
            "l1": None if l1 is None else _values("l1", l1, non_negative, "l1=[0.0, 1e-4]"),
            "l2": None if l2 is None else _values("l2", l2, non_negative, "l2=[0.0, 1e-4]")}
    given = {k: v for k, v in axes.items() if v is not None}
    settings = [dict(zip(given, values)) for values in itertools.product(*given.values())]
    return settings, given


def _factory(optimizer, learning_rates):
    """``(the one optimizer or None, the factory or None)``, after checking which was given."""
    transformation = hasattr(optimizer, "init") and hasattr(optimizer, "update")
    if learning_rates is None:
        if callable(optimizer) and not transformation:
            raise TypeError(f"sweep: optimizer={optimizer!r:.80} is a factory, but "
                            f"learning_rates=None gives it no learning rate. Fix: pass "
                            f"learning_rates=[1e-3, 1e-2], or an optimizer such as "
                            f"bp.optim.adam(1e-3).")
        return require_optimizer("sweep", optimizer), None
    if transformation or not callable(optimizer):
        raise TypeError(f"sweep: optimizer={optimizer!r:.80} must be a factory learning_rate "
                        f"-> GradientTransformation when learning_rates are swept. Fix: e.g. "
                        f"optimizer=bp.optim.adam (not bp.optim.adam(1e-3)), or optax.adam.")
    require_optimizer("sweep", optimizer(learning_rates[0]), "optimizer(learning_rate)")
    return None, optimizer


def _hypers(settings: list[dict], given: dict, dtype) -> dict:
    """The traced per-run values: ``(K,)`` arrays of the swept learning rate and penalties
    (a penalty with one value stays a constant of the program, as in :func:`fit`)."""
    names = [k for k in ("learning_rate", "l1", "l2")
             if (k == "learning_rate" and k in given) or len(given.get(k, ())) > 1]
    return {k: np.asarray([s[k] for s in settings], dtype) for k in names}


# --------------------------------------------------------------------------------------
# The compiled programs


def _run_cfg(spec: _Spec, h: dict) -> EpochConfig:
    """One run's epoch configuration: its optimizer and penalties (traced where swept)."""
    optimizer = spec.cfg.optimizer if spec.factory is None else spec.factory(h["learning_rate"])
    return spec.cfg._replace(optimizer=optimizer, **{k: h[k] for k in ("l1", "l2") if k in h})


def _shard(spec: _Spec, tree):
    """Inside the programs: the runs' leading axis laid out over the sweep's devices (a
    scalar, the shared key of a sweep of one seed, is replicated)."""
    if spec.mesh is None:
        return tree
    runs, whole = parallel.batch_sharding(spec.mesh), parallel.replicated(spec.mesh)
    return jax.tree_util.tree_map(
        lambda a: jax.lax.with_sharding_constraint(a, runs if a.ndim else whole), tree)


def _start(params, key_data, index, hypers, *, spec: _Spec):
    """The K runs' first :class:`TrainState` from the parameters and raw keys of each seed
    (stacked; run ``k`` has seed number ``index[k]``): each run's optimizer ``init``-ed, step
    and epoch 0."""
    params = jax.tree_util.tree_map(lambda a: a[index], params)
    opt_state = jax.vmap(lambda p, h: _run_cfg(spec, h).optimizer.init(p))(params, hypers)
    zero = jnp.zeros(index.shape, jnp.int32)
    # One seed: one key for every run, unbatched, so that the runs share their batches and
    # dropout masks in the program too (a product with the unbatched batch is one wide matmul
    # for all runs, not K small ones); else one key per run.
    keys = key_data[0] if key_data.shape[0] == 1 else key_data[index]
    layer_state = (jax.vmap(lambda p: init_layer_state(spec.cfg.net, p))(params)
                   if has_state(spec.cfg.net) else None)
    return _shard(spec, TrainState(params, opt_state, zero, zero, jax.random.wrap_key_data(keys),
                                   layer_state))


def _keep(ok, new, old):
    """``new`` where ``ok`` (per run), else ``old``: a diverged run stays frozen."""
    return jax.tree_util.tree_map(
        lambda n, o: jnp.where(ok.reshape(ok.shape + (1,) * (n.ndim - 1)), n, o), new, old)


def _epoch(states: TrainState, alive, hypers, x, y, splits: dict, *, spec: _Spec):
    """One epoch of every run, then every run evaluated on ``splits``: ``(states, alive,
    objectives, metrics)``. A run whose epoch ended non-finite keeps its start state and is
    no longer ``alive``; so its nan never reaches the numbers of later epochs."""
    # vmap's axes as a TrainState-shaped pytree of ints (a shared key: None, unbatched)
    axes = TrainState._make((0, 0, 0, 0, 0 if states.key.ndim else None, 0))
    new, objective = jax.vmap(lambda s, h: scanned_epoch(s, x, y, _run_cfg(spec, h)),
                              in_axes=(axes, 0), out_axes=(axes, 0))(states, hypers)
    alive = _shard(spec, alive & jnp.isfinite(objective))
    frozen = ("params", "opt_state", "step", "epoch", "layer_state")  # the key moves on
    states = _shard(spec, new._replace(**_keep(alive, {f: getattr(new, f) for f in frozen},
                                               {f: getattr(states, f) for f in frozen})))
    metrics = {}
    for name, (xs, ys) in splits.items():
        out = _evaluated(spec, states.params, states.layer_state, xs, ys)
        metrics.update({f"{name}_{k}": v for k, v in out.items()})
    return states, alive, objective, metrics


def _evaluated(spec: _Spec, params, layer_state, xs, ys) -> dict:
    """Every run's ``{"loss": (K,), "accuracy": (K,)}`` on ``(xs, ys)``, in evaluation mode.

    On one device a large split goes through in groups of runs (``lax.map``), the largest
    that divides K with at most ~4096 rows in all: vmapped all at once, the activations
    (K x rows x width) leave the cache; on CPU 16 digits MLPs took 19 ms on their 1257
    training rows, against 6.3 ms in groups of 2.
    """
    def one(run):
        p, layer_state = run
        return evaluate_arrays(p, xs, ys, net=spec.cfg.net, loss=spec.cfg.loss,
                               accuracy=spec.accuracy, layer_state=layer_state)

    runs = jax.tree_util.tree_leaves(params)[0].shape[0]
    most = max(1, 4096 // xs.shape[0])
    group = max(d for d in range(1, min(runs, most) + 1) if runs % d == 0)
    if spec.mesh is not None or group == runs:  # (on a mesh each device evaluates its runs)
        return jax.vmap(one)((params, layer_state))
    return jax.lax.map(one, (params, layer_state), batch_size=group)


_start_program = jax.jit(_start, static_argnames=("spec",))
_epoch_program = jax.jit(_epoch, static_argnames=("spec",), donate_argnames=("states",))


# --------------------------------------------------------------------------------------
# The loop


def _padded(settings: list[dict], mesh) -> list[dict]:
    """The settings, the last repeated up to a multiple of the device count (extra runs are
    computed alongside and dropped: every device gets as many runs)."""
    n = 1 if mesh is None else mesh.size
    return settings + [settings[-1]] * (-len(settings) % n)


def _record(epoch: int, k: int, metrics: dict, objective, t0: float) -> dict:
    """Run ``k``'s history entry for ``epoch``, in the order and with the keys of fit's."""
    record = {"epoch": epoch, **{name: float(v[k]) for name, v in metrics.items()}}
    record["objective"] = float(objective[k])
    record["seconds"] = time.perf_counter() - t0
    return record


def _best(histories: list[dict], diverged: list[bool], monitor: str) -> int | None:
    finals = [h[monitor][-1] if h.get(monitor) and not bad else math.inf
              for h, bad in zip(histories, diverged)]
    finite = [f for f in finals if math.isfinite(f)]
    return finals.index(min(finite)) if finite else None


def sweep(net: Layer, loss: Loss, optimizer, x, y, *, epochs: int, batch_size: int = 32,
          learning_rates: Sequence[float] | None = None, seeds: Sequence[int] = (0,),
          l1: float | Sequence[float] | None = None, l2: float | Sequence[float] | None = None,
          validation=None, grad=backprop, regularize=None, accuracy="auto",
          shuffle: bool = True, dtype=None, devices=None, progress: bool | None = None,
          stream=None) -> SweepResult:
    """Trains ``net`` for every setting of a grid at once: one ``vmap``-ed compiled epoch.

    The runs are the product grid ``learning_rates x seeds x l1 x l2`` (in that order, the
    last varying fastest; an axis left ``None`` is not swept). Each run is exactly what
    :func:`fit` would train on its own: with ``p_s = net.init(jax.random.key(s),
    x.shape[1:])[0]`` (cast to ``dtype`` if given), run ``(lr, s, a, b)`` equals::

        fit(net, loss, optimizer(lr), p_s, x, y, key=jax.random.key(s), epochs=epochs,
            batch_size=batch_size, l1=a, l2=b, validation=validation, grad=grad, ...)

    to rounding (vmapped reductions may add in another order; the tests find float64 runs
    equal to 1e-10, float32 to 1e-3). The key is used as fit uses it: the same
    ``jax.random.key(s)`` initialises the parameters and is the first epoch's state key;
    every epoch shuffles with ``fold_in(key, 0)`` and splits ``fold_in(key, 1)`` into the
    next epoch's key and one dropout key per step.

    The learning rate and the swept penalties are traced values of the compiled program (the
    optimizer is built inside it, ``optimizer(learning_rate)``), so K settings compile one
    program, as one setting does. A run whose loss, parameters or optimizer state turn
    non-finite in an epoch is marked ``diverged``, its parameters and optimizer state frozen at
    the start of that epoch; the others train on, unaffected (the runs share no arithmetic).

    Args:
      net, loss: the network and the loss, as for :func:`fit`.
      optimizer: with ``learning_rates``, a factory ``learning_rate -> GradientTransformation``
        (``bp.optim.adam``, ``optax.adam``, ``lambda lr: optax.sgd(lr, momentum=0.9)``); it
        gets a traced scalar. Without, one ``GradientTransformation`` for every run.
      x, y: the training data; ``validation``: ``(x_val, y_val)`` or ``None``.
      epochs: epochs per run; ``batch_size``, ``grad``, ``regularize``, ``accuracy``,
        ``shuffle``: as for :func:`fit`.
      learning_rates: the learning rates to try, or ``None``.
      seeds: the seeds (ints >= 0) to try: initialisation, shuffling and dropout.
      l1, l2: penalty coefficients to try (a number or a sequence), or ``None`` for none.
      dtype: cast the initial parameters' floats to this dtype (e.g. ``jnp.float32``), or
        ``None`` for ``net.init``'s.
      devices: ``None`` (one device), a count or a list of devices: the K runs are sharded
        over them (K padded with copies of the last run to a multiple of their number).
      progress, stream: a progress bar, as for :func:`fit` (by default only on a terminal).

    Returns:
      A :class:`SweepResult` ``(settings, histories, params, diverged, best, layer_state)``.

    Example: ``docs/training.md``, "How do I choose a learning rate?" (run by the tests).
    """
    check_net_and_loss(net, loss, "sweep")
    epochs = int_at_least("sweep", "epochs", epochs, 1, "epochs=20")
    batch_size = int_at_least("sweep", "batch_size", batch_size, 1, "batch_size=32")
    settings, given = _grid(learning_rates, seeds, l1, l2)
    one, factory = _factory(optimizer, given.get("learning_rate"))
    static = {k: given[k][0] if len(given.get(k, ())) == 1 else 0.0 for k in ("l1", "l2")}
    mesh = None if devices is None else parallel.make_mesh(devices)
    spec = _Spec(epoch_config("sweep", net, loss, one, grad=grad, regularize=regularize,
                              batch_size=batch_size, shuffle=shuffle, **static),
                 factory, accuracy_fn(loss, accuracy), mesh)
    states, hypers, x, y, splits = _prepare(spec, settings, given, x, y, validation, dtype)
    monitor = "val_loss" if validation is not None else "train_loss"
    states, histories, diverged = _train(spec, states, hypers, x, y, splits, epochs,
                                         len(settings), progress_bar(progress, stream, epochs, 0),
                                         monitor)
    kept = (states.params, states.layer_state)  # where the runs were placed, unless padded
    if len(_padded(settings, mesh)) > len(settings):
        kept = jax.tree_util.tree_map(lambda a: a[:len(settings)], kept)
    return SweepResult(settings, histories, kept[0], diverged,
                       _best(histories, diverged, monitor), kept[1])


def _initial(net: Layer, seeds: list[int], shape: tuple, dtype):
    """Per seed ``s``: ``net.init(jax.random.key(s), shape)[0]`` (floats cast to ``dtype``)
    and the raw data of ``key(s)``, each stacked on the host along a leading axis of seeds.
    Eager, exactly as the ``fit`` it stands for is given its parameters."""
    params, keys = [], []
    for s in seeds:
        p = net.init(jax.random.key(s), shape)[0]
        if dtype is not None:
            p = jax.tree_util.tree_map(
                lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, p)
        params.append(jax.device_get(p))
        keys.append(np.asarray(jax.random.key_data(jax.random.key(s))))
    return jax.tree_util.tree_map(lambda *a: np.stack(a), *params), np.stack(keys)


def _prepare(spec: _Spec, settings, given, x, y, validation, dtype):
    """The first states and per-run values (placed), and the checked data to train on."""
    runs = _padded(settings, spec.mesh)
    seeds = sorted({s["seed"] for s in runs})
    params, key_data = _initial(spec.cfg.net, seeds, tuple(np.shape(x)[1:]), dtype)
    first = jax.tree_util.tree_map(lambda a: a[0], params)  # one run's, to check the data
    x, y, validation = checked_data("sweep", spec.cfg.net, first, x, y, validation)
    check_full_batch("sweep", spec.cfg.net, x.shape[0], spec.cfg.batch_size)
    floats = [a.dtype for a in jax.tree_util.tree_leaves(first)
              if jnp.issubdtype(a.dtype, jnp.floating)]
    hypers = _hypers(runs, given, jnp.result_type(*floats or [float]))
    index = np.asarray([seeds.index(s["seed"]) for s in runs], np.int32)
    if spec.mesh is not None:
        hypers, index = parallel.put((hypers, index), parallel.batch_sharding(spec.mesh))
    states = _start_program(params, key_data, index, hypers, spec=spec)
    splits = {"train": (x, y), **({"val": validation} if validation is not None else {})}
    if spec.mesh is not None:
        x, y, splits = parallel.put((x, y, splits), parallel.replicated(spec.mesh))
    return states, hypers, x, y, splits


def _train(spec, states, hypers, x, y, splits, epochs: int, k: int, bar, monitor: str):
    """The epochs: the last states, and the first ``k`` runs' histories and whether each
    diverged."""
    histories: list[dict] = [{} for _ in range(k)]
    diverged = [False] * k
    alive = np.ones(states.step.shape, bool)
    if spec.mesh is not None:  # placed as the epoch returns it: one compiled epoch, not two
        alive = parallel.put(alive, parallel.batch_sharding(spec.mesh))
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        states, alive, objective, metrics = _epoch_program(states, alive, hypers, x, y,
                                                           splits, spec=spec)
        ok, objective, metrics = jax.device_get((alive, objective, metrics))
        for run in range(k):
            if diverged[run]:
                continue
            if not ok[run]:
                diverged[run] = True
                continue
            for name, v in _record(epoch, run, metrics, objective, t0).items():
                histories[run].setdefault(name, []).append(v)
        if bar is not None:
            finals = [h[monitor][-1] for h, bad in zip(histories, diverged) if h and not bad]
            bar.update(epoch, {f"best_{monitor}": min(finals, default=math.nan)})
        if all(diverged):
            break
    if bar is not None:
        bar.close()
    return states, histories, diverged


__all__ = ["SweepResult", "sweep"]
