"""The built-in layers and losses that ``jaxbp check`` verifies: one line each.

A layer case is ``LayerCase(name, factory, input_shape, draw, training)``: ``draw(rng, shape)``
makes an input batch (``shape`` includes the batch axis) — standard normal by default,
``with_zeros`` to put inputs exactly on a kink, ``tokens(vocab)`` for integer inputs;
``training=True`` runs the forward with a fixed key (dropout). A loss case is
``LossCase(name, factory, pred_shape, draw_pred, draw_true)`` with
``draw_true(rng, y_pred_shape)``. Add a layer by adding a line; ``jaxbp check``
(:func:`run_builtin_checks`) and the tests pick it up.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

import jaxbp as bp

Draw = Callable[[np.random.Generator, tuple], np.ndarray]


def normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal values."""
    return rng.standard_normal(shape)


def with_zeros(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal with about a third of the values exactly 0 (on ReLU-type kinks)."""
    x = rng.standard_normal(shape)
    return np.where(rng.uniform(size=shape) < 1 / 3, 0.0, x)


def ties(rng: np.random.Generator, shape) -> np.ndarray:
    """Integers in ``{-1, 0, 1}`` as floats: many exact ties (max pooling) and zeros."""
    return rng.integers(-1, 2, shape).astype(np.float64)


def tokens(vocab: int) -> Draw:
    """Integer token ids in ``[0, vocab)``."""
    return lambda rng, shape: rng.integers(0, vocab, shape).astype(np.int32)


def probabilities(rng: np.random.Generator, shape) -> np.ndarray:
    """Probabilities in ``[0.05, 0.95]``: off the clip that keeps ``log`` finite."""
    return rng.uniform(0.05, 0.95, shape)


def binary(rng: np.random.Generator, shape) -> np.ndarray:
    """Targets in ``{0, 1}``."""
    return rng.integers(0, 2, shape).astype(np.float64)


def labels(rng: np.random.Generator, shape) -> np.ndarray:
    """Integer class labels ``(batch,)`` for logits of shape ``(batch, classes)``."""
    return rng.integers(0, shape[-1], shape[:1]).astype(np.int32)


def one_hot(rng: np.random.Generator, shape) -> np.ndarray:
    """One-hot targets of shape ``(batch, classes)``."""
    return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[0])]


class LayerCase(NamedTuple):
    name: str
    make: Callable[[], bp.Layer]
    input_shape: tuple
    draw: Draw = normal
    training: bool = False


class LossCase(NamedTuple):
    name: str
    make: Callable[[], bp.Loss]
    pred_shape: tuple
    draw_pred: Draw = normal
    draw_true: Draw = normal


LAYER_CASES: list[LayerCase] = [
    LayerCase("dense", lambda: bp.dense(4), (3,)),
    LayerCase("dense_rank3", lambda: bp.dense(2), (2, 3)),
    LayerCase("identity", bp.identity, (4,)),
    LayerCase("sigmoid", bp.sigmoid, (4,)),
    LayerCase("tanh", bp.tanh, (4,)),
    LayerCase("relu", bp.relu, (5,), with_zeros),
    LayerCase("leaky_relu", lambda: bp.leaky_relu(0.1), (5,), with_zeros),
    LayerCase("elu", lambda: bp.elu(0.5), (5,), with_zeros),
    LayerCase("softplus", bp.softplus, (4,)),
    LayerCase("gelu_tanh", lambda: bp.gelu(approximate=True), (4,)),
    LayerCase("gelu_erf", lambda: bp.gelu(approximate=False), (4,)),
    LayerCase("softmax", bp.softmax, (4,)),
    LayerCase("mlp", lambda: bp.serial(bp.dense(5), bp.relu(), bp.dense(3), bp.tanh()), (4,),
              with_zeros),
    LayerCase("conv2d_same_s2", lambda: bp.conv2d(3, 3, stride=2), (5, 5, 2)),
    LayerCase("conv2d_valid", lambda: bp.conv2d(2, 2, padding="VALID"), (4, 4, 1)),
    LayerCase("max_pool_ties", lambda: bp.max_pool(3, stride=2, padding="SAME"), (5, 5, 2), ties),
    LayerCase("avg_pool", lambda: bp.avg_pool(3, stride=2, padding="SAME"), (5, 5, 2)),
    LayerCase("flatten", bp.flatten, (3, 3, 2)),
    LayerCase("dropout", lambda: bp.dropout(0.3), (6,), training=True),
    LayerCase("layer_norm", bp.layer_norm, (5,)),
    LayerCase("rnn", lambda: bp.rnn(4), (3, 2)),
    LayerCase("lstm", lambda: bp.lstm(3), (3, 2)),
    LayerCase("last_step", bp.last_step, (3, 2)),
    LayerCase("embedding", lambda: bp.embedding(6, 3), (4,), tokens(6)),
    LayerCase("cnn", lambda: bp.serial(bp.conv2d(2, 3), bp.relu(), bp.max_pool(2), bp.flatten(),
                                       bp.dense(3)), (4, 4, 1), with_zeros),
    LayerCase("conv2d_explicit_pads", lambda: bp.conv2d(2, (3, 2), stride=(2, 3),
                                                        padding=((2, 1), (0, 1))), (5, 6, 1)),
    LayerCase("sequence_model", lambda: bp.serial(bp.embedding(5, 3), bp.lstm(4),
                                                  bp.last_step(), bp.dense(2)), (4,), tokens(5)),
]

LOSS_CASES: list[LossCase] = [
    LossCase("mse", bp.mse, (3,)),
    LossCase("binary_cross_entropy", bp.binary_cross_entropy, (3,), probabilities, binary),
    LossCase("bce_soft_targets", bp.binary_cross_entropy, (3,), probabilities, probabilities),
    LossCase("sigmoid_binary_cross_entropy", bp.sigmoid_binary_cross_entropy, (3,),
             draw_true=binary),
    LossCase("softmax_cross_entropy_labels", bp.softmax_cross_entropy, (4,), draw_true=labels),
    LossCase("softmax_cross_entropy_one_hot", bp.softmax_cross_entropy, (4,), draw_true=one_hot),
]


def run_builtin_checks(*, only: str | None = None, draws: int = 2, seed: int = 0,
                       out: Callable[[str], Any] = print) -> int:
    """Checks every case above with ``check_layer`` / ``check_loss``, printing each table.

    Returns the exit status: 0 when all pass, 1 when any fails.
    """
    from jaxbp.check import check_layer, check_loss

    failed, n = [], 0
    for case in LAYER_CASES:
        if only and only not in case.name:
            continue
        rep = check_layer(case.make(), case.input_shape, key=seed, draws=draws,
                          input_fn=case.draw, training=case.training)
        n += 1
        out(f"[{case.name}] {rep}\n")
        failed += [] if rep.ok else [case.name]
    for case in LOSS_CASES:
        if only and only not in case.name:
            continue
        rep = check_loss(case.make(), case.pred_shape, key=seed, draws=draws,
                         pred_fn=case.draw_pred, target_fn=case.draw_true)
        n += 1
        out(f"[{case.name}] {rep}\n")
        failed += [] if rep.ok else [case.name]
    if n == 0:
        out(f"no built-in case matches --only {only!r}")
        return 1
    out(f"checked {n} built-in layers and losses: "
        + ("all ok" if not failed else f"{len(failed)} FAILED: {', '.join(failed)}"))
    return 1 if failed else 0
