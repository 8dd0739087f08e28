"""The jaxbp side: the network, its gradient sources, optimizers and the two ways to run a step.

Each variant is one gradient source (``backprop``: hand-derived; ``autodiff``: ``jax.grad``) times
one optimizer (hand-written SGD, ``optax.sgd``, ``optax.adam``) times one driver:

- ``loop``: a Python loop calling the jitted train step (``bp.make_train_step``) once per batch;
- ``scan``: one jitted call running that step over the whole epoch with ``lax.scan``
  (``bp.make_train_epoch``).

Both are the library's own compiled functions, with ``compiler_options="auto"`` (per-step speed
over compile time, see ``jaxbp/_compile.py``), and both donate the parameter and optimizer-state
buffers, so XLA updates them in place.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxbp as bp
from benchmarks.configs import Config

ACTIVATION = {"sigmoid": bp.sigmoid, "tanh": bp.tanh, "relu": bp.relu}
LOSS = {"mse": bp.mse, "softmax_cross_entropy": bp.softmax_cross_entropy}
GRADIENTS = {"backprop": bp.backprop, "autodiff": bp.autodiff}


def has_conv() -> bool:
    return all(hasattr(bp, f) for f in ("conv2d", "max_pool", "flatten"))


def build_net(config: Config, dtype=jnp.float32) -> bp.Layer:
    """The config's network as a jaxbp ``serial``; He init before ReLU, Glorot otherwise."""
    if config.kind == "cnn":
        c1, c2 = config.channels
        return bp.serial(
            bp.conv2d(c1, 3, dtype=dtype), bp.relu(), bp.max_pool(2),
            bp.conv2d(c2, 3, dtype=dtype), bp.relu(), bp.max_pool(2),
            bp.flatten(), bp.dense(config.sizes[-1], dtype=dtype))
    w_init = "he_normal" if config.activation == "relu" else "glorot_uniform"
    layers = []
    for i, width in enumerate(config.sizes[1:]):
        layers.append(bp.dense(width, w_init=w_init, dtype=dtype))
        if i < len(config.sizes) - 2:
            layers.append(ACTIVATION[config.activation]())
    if config.loss == "mse":
        layers.append(bp.sigmoid())
    return bp.serial(*layers)


@functools.lru_cache(maxsize=16)
def init_params(config: Config, dtype=jnp.float32, seed: int = 0):
    """jaxbp params for the config's network and their NumPy copy ``[(w, b), ...]``.

    Cached (the checks and the timing run start from the same parameters); every user copies
    them before training.
    """
    net = build_net(config, np.dtype(dtype))
    example = (8, 8, 1) if config.kind == "cnn" else config.sizes[:1]
    params, _ = net.init(jax.random.key(seed), example)
    return params, param_arrays(params)


def param_arrays(params) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``(w, b)`` of every dense or conv layer as NumPy arrays, in order, in jaxbp's layout
    (dense ``w: (d_in, d_out)``, conv ``w: (kh, kw, c_in, c_out)``); parameter-free layers
    skipped."""
    return [(np.asarray(p.w), np.asarray(p.b)) for p in params if hasattr(p, "w")]


def optimizers(config: Config) -> dict[str, optax.GradientTransformation]:
    """The hand-written SGD of ``jaxbp.optim`` and optax's SGD and Adam."""
    return {
        "bp.optim.sgd": bp.optim.sgd(config.learning_rate),
        "optax.sgd": optax.sgd(config.learning_rate),
        "optax.adam": optax.adam(config.adam_learning_rate),
    }


class Variant(NamedTuple):
    gradient: str   # "backprop" | "autodiff"
    optimizer: str  # "bp.optim.sgd" | "optax.sgd" | "optax.adam"
    driver: str     # "loop" | "scan"

    @property
    def label(self) -> str:
        return f"jaxbp {self.gradient}, {self.optimizer}, {self.driver}"


VARIANTS = [Variant(g, o, d) for d in ("scan", "loop")
            for o in ("bp.optim.sgd", "optax.sgd", "optax.adam")
            for g in ("backprop", "autodiff")]


class Runner:
    """Trains one variant on one epoch of data per call to :meth:`run` (state carried across).

    The step (``loop``) or epoch (``scan``) function is compiled ahead of time in the
    constructor; ``compile_s`` is that trace + lower + XLA compile time, i.e. what the first call
    of the jitted function adds to a normal one; ``xla_compile_s`` the XLA part of it.
    """

    def __init__(self, config: Config, variant: Variant, params, xs, ys):
        net = build_net(config, jax.tree_util.tree_leaves(params)[0].dtype)
        optimizer = optimizers(config)[variant.optimizer]
        make = bp.make_train_epoch if variant.driver == "scan" else bp.make_train_step
        fn = make(net, LOSS[config.loss](), optimizer, grad=GRADIENTS[variant.gradient],
                  donate=True, compiler_options="auto")
        self.variant, self.steps = variant, len(xs)
        # Copies: donation consumes the buffers handed in, and every runner needs its own.
        self.params = jax.tree_util.tree_map(jnp.array, params)
        self.opt_state = optimizer.init(self.params)
        if variant.driver == "scan":
            self._data = [(jnp.asarray(xs), jnp.asarray(ys))]
        else:
            self._data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in zip(xs, ys)]
        t0 = time.perf_counter()
        lowered = fn.lower(self.params, self.opt_state, *self._data[0])  # "auto" decided here
        t1 = time.perf_counter()
        self._fn = lowered.compile()
        self.compile_s = time.perf_counter() - t0
        self.xla_compile_s = time.perf_counter() - t1  # the part spent in XLA, after tracing
        self.compiler_options = fn.compiler_options
        self.loss = None

    def run(self) -> None:
        """One epoch; blocks until its results exist."""
        p, s = self.params, self.opt_state
        for x, y in self._data:
            p, s, metrics = self._fn(p, s, x, y)
        self.params, self.opt_state, self.loss = p, s, metrics["loss"]
        jax.block_until_ready((p, self.loss))

    def hlo_text(self) -> str:
        """The optimised HLO of the compiled step or epoch."""
        return self._fn.as_text()

    def numpy_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return param_arrays(self.params)
