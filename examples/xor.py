"""XOR, done right.

The seed document fits XOR with a single sigmoid unit and no bias, ``y = sigmoid(x . w)``.
That cannot work:

* without a bias the input ``(0, 0)`` always gives ``sigmoid(0) = 0.5``, whatever ``w`` is;
* and even with a bias no single unit can do it, because XOR is not linearly separable. A unit
  answers 1 where ``w1 x1 + w2 x2 + b > 0``. XOR needs ``b < 0`` (for 0,0), ``w1 + b > 0`` and
  ``w2 + b > 0`` (for 1,0 and 0,1), and ``w1 + w2 + b < 0`` (for 1,1). Adding the middle two gives
  ``w1 + w2 + 2b > 0``, so ``w1 + w2 + b > -b > 0``: a contradiction.

A hidden layer fixes it: two hidden units can compute OR and NAND, and the output unit ANDs them.
Both models below are trained with the same hand-derived backprop and plain gradient descent
``theta <- theta - learning_rate * dJ/dtheta``, jit-compiled.

Run:  python examples/xor.py
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp

X = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = jnp.array([[0.0], [1.0], [1.0], [0.0]])


def linear_no_bias(d_out: int) -> bp.Layer:
    """The seed document's unit: ``y = x @ w`` with no bias; ``dw = x^T dy``, ``dx = dy w^T``."""

    def init(key, input_shape):
        w = bp.glorot_uniform(key, (input_shape[-1], d_out))
        return w, (d_out,)

    def forward(w, x, *, key=None):
        return x @ w, x

    def backward(w, x, dy):
        return x.T @ dy, dy @ w.T

    return bp.Layer(init, forward, backward, f"linear_no_bias({d_out})")


def train(net: bp.Layer, *, steps: int, learning_rate: float, seed: int):
    """Full-batch gradient descent on XOR with hand-derived gradients; returns params and MSE."""
    loss = bp.mse()
    params, _ = net.init(jax.random.key(seed), (2,))
    grad_fn = bp.backprop(net, loss)

    def step(params, _):
        value, grads = grad_fn(params, X, Y)
        return jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads), value

    params, _ = jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps))(params)
    pred = net.forward(params, X)[0]
    return params, np.asarray(pred), float(loss.value(pred, Y))


def report(title: str, pred: np.ndarray, mse: float, out=print) -> int:
    correct = int(np.sum((pred > 0.5) == (np.asarray(Y) > 0.5)))
    out(f"{title}")
    for xi, pi in zip(np.asarray(X), pred[:, 0]):
        out(f"  {int(xi[0])} xor {int(xi[1])} -> {pi:.3f}")
    out(f"  mse {mse:.4f}, correct {correct}/4")
    return correct


def main(steps: int = 3000, seed: int = 0, out=print) -> dict:
    """Trains both models; returns their MSE and number of correct answers."""
    single = bp.serial(linear_no_bias(1), bp.sigmoid())
    _, pred_s, mse_s = train(single, steps=steps, learning_rate=2.0, seed=seed)
    correct_s = report("seed document: one sigmoid unit, no bias", pred_s, mse_s, out)
    out("  (0,0) is stuck at sigmoid(0) = 0.5 whatever w is.")

    biased = bp.serial(bp.dense(1), bp.sigmoid())
    _, pred_b, mse_b = train(biased, steps=steps, learning_rate=2.0, seed=seed)
    correct_b = report("one sigmoid unit with a bias", pred_b, mse_b, out)
    out("  still stuck near mse 0.25: no line separates XOR, so no single unit can fit it.")

    hidden = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1), bp.sigmoid())
    _, pred_h, mse_h = train(hidden, steps=steps, learning_rate=2.0, seed=seed)
    correct_h = report("with a hidden layer: 2-4-1, tanh then sigmoid", pred_h, mse_h, out)
    return {"single_mse": mse_s, "single_correct": correct_s,
            "single_at_origin": float(pred_s[0, 0]),
            "biased_mse": mse_b, "biased_correct": correct_b,
            "hidden_mse": mse_h, "hidden_correct": correct_h}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(steps=args.steps, seed=args.seed)
