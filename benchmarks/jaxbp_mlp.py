"""The jaxbp side: the network, its gradient sources, optimizers and the two ways to run a step.

Each variant is one gradient source (``backprop``: hand-derived; ``autodiff``: ``jax.grad``) times
one optimizer (hand-written SGD, ``optax.sgd``, ``optax.adam``) times one driver:

- ``loop``: a Python loop calling the jitted train step once per batch;
- ``scan``: one jitted call running the whole epoch with ``lax.scan``.

Both donate the parameter and optimizer-state buffers, so XLA updates them in place.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxbp as bp
from benchmarks.configs import Config

ACTIVATION = {"sigmoid": bp.sigmoid, "tanh": bp.tanh, "relu": bp.relu}
LOSS = {"mse": bp.mse, "softmax_cross_entropy": bp.softmax_cross_entropy}
GRADIENTS = {"backprop": bp.backprop, "autodiff": bp.autodiff}


def build_net(config: Config, dtype=jnp.float32) -> bp.Layer:
    """The config's MLP as a jaxbp ``serial``; He init before ReLU, Glorot otherwise."""
    w_init = "he_normal" if config.activation == "relu" else "glorot_uniform"
    layers = []
    for i, width in enumerate(config.sizes[1:]):
        layers.append(bp.dense(width, w_init=w_init, dtype=dtype))
        if i < len(config.sizes) - 2:
            layers.append(ACTIVATION[config.activation]())
    if config.loss == "mse":
        layers.append(bp.sigmoid())
    return bp.serial(*layers)


def init_params(config: Config, dtype=jnp.float32, seed: int = 0):
    """jaxbp params for the config's network and their NumPy copy ``[(w, b), ...]``."""
    net = build_net(config, dtype)
    params, _ = net.init(jax.random.key(seed), config.sizes[:1])
    return params, dense_arrays(params)


def dense_arrays(params) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(w, b)`` of every dense layer as NumPy arrays, in order (activations have none)."""
    return [(np.asarray(p.w), np.asarray(p.b)) for p in params if isinstance(p, bp.DenseParams)]


def sgd(learning_rate: float) -> optax.GradientTransformation:
    """Hand-written SGD, ``θ ← θ − α ∇θ J``, as an optax transformation.

    Stands in for ``bp.optim.sgd`` until that module exists; the harness prefers the library's.
    """
    optim = getattr(bp, "optim", None)
    if optim is not None and hasattr(optim, "sgd"):
        return optim.sgd(learning_rate)

    def init(params):
        return optax.EmptyState()

    def update(grads, state, params=None):
        return jax.tree_util.tree_map(lambda g: -learning_rate * g, grads), state

    return optax.GradientTransformation(init, update)


def optimizers(config: Config) -> dict[str, optax.GradientTransformation]:
    return {
        "sgd": sgd(config.learning_rate),
        "optax.sgd": optax.sgd(config.learning_rate),
        "optax.adam": optax.adam(config.adam_learning_rate),
    }


def make_step(grad_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """``step(params, opt_state, x, y) -> (params, opt_state, loss)``, not yet jitted."""

    def step(params, opt_state, x, y):
        loss, grads = grad_fn(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def make_epoch(step: Callable) -> Callable:
    """``epoch(params, opt_state, xs, ys) -> (params, opt_state, losses)`` by ``lax.scan``."""

    def epoch(params, opt_state, xs, ys):
        def body(carry, batch):
            p, s, loss = step(*carry, *batch)
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (xs, ys))
        return params, opt_state, losses

    return epoch


class Variant(NamedTuple):
    gradient: str   # "backprop" | "autodiff"
    optimizer: str  # "sgd" | "optax.sgd" | "optax.adam"
    driver: str     # "loop" | "scan"

    @property
    def label(self) -> str:
        return f"jaxbp {self.gradient}, {self.optimizer}, {self.driver}"


VARIANTS = [Variant(g, o, d) for d in ("scan", "loop") for o in ("sgd", "optax.sgd", "optax.adam")
            for g in ("backprop", "autodiff")]


class Runner:
    """Trains one variant on one epoch of data per call to :meth:`run` (state carried across).

    The step (``loop``) or epoch (``scan``) function is compiled ahead of time in the
    constructor; ``compile_s`` is that trace + lower + XLA compile time, i.e. what the first call
    of the jitted function adds to a normal one.
    """

    def __init__(self, config: Config, variant: Variant, params, xs, ys):
        net = build_net(config, jax.tree_util.tree_leaves(params)[0].dtype)
        optimizer = optimizers(config)[variant.optimizer]
        step = make_step(GRADIENTS[variant.gradient](net, LOSS[config.loss]()), optimizer)
        self.variant, self.steps = variant, len(xs)
        # Copies: donation consumes the buffers handed in, and every runner needs its own.
        self.params = jax.tree_util.tree_map(jnp.array, params)
        self.opt_state = optimizer.init(self.params)
        if variant.driver == "scan":
            fn, self._data = make_epoch(step), [(jnp.asarray(xs), jnp.asarray(ys))]
        else:
            fn, self._data = step, [(jnp.asarray(x), jnp.asarray(y)) for x, y in zip(xs, ys)]
        t0 = time.perf_counter()
        self._fn = jax.jit(fn, donate_argnums=(0, 1)).lower(
            self.params, self.opt_state, *self._data[0]).compile()
        self.compile_s = time.perf_counter() - t0
        self.loss = None

    def run(self) -> None:
        """One epoch; blocks until its results exist."""
        p, s = self.params, self.opt_state
        for x, y in self._data:
            p, s, loss = self._fn(p, s, x, y)
        self.params, self.opt_state, self.loss = p, s, loss
        jax.block_until_ready((p, loss))

    def numpy_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return dense_arrays(self.params)
