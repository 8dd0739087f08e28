"""The ``jaxbp`` console command.

``jaxbp train`` (no arguments) trains XOR by hand-derived backprop under ``jit``: it first checks
the manual gradients against ``jax.grad``, then shows progress and the final predictions.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np


def xor_data(dtype=jnp.float32):
    """The four XOR examples: inputs ``(4, 2)`` and targets ``(4, 1)``."""
    x = jnp.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype)
    y = jnp.array([[0], [1], [1], [0]], dtype)
    return x, y


def train_xor(*, hidden: int = 8, learning_rate: float = 2.0, steps: int = 2000, seed: int = 0,
              report_every: int = 250, out=print):
    """Trains a 2-``hidden``-1 tanh/sigmoid network on XOR by backprop and plain gradient descent.

    Returns ``(params, history)`` where history is a list of ``(step, mse)``.
    """
    import jaxbp as bp

    net = bp.serial(bp.dense(hidden), bp.tanh(), bp.dense(1), bp.sigmoid())
    loss = bp.mse()
    x, y = xor_data()
    params, _ = net.init(jax.random.key(seed), (2,))
    grad_fn = bp.backprop(net, loss)

    # 1. The hand-derived gradients must equal jax.grad before we trust them for training.
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        x64, y64 = x.astype(jnp.float64), y.astype(jnp.float64)
        _, manual = bp.backprop(net, loss)(p64, x64, y64)
        _, auto = bp.autodiff(net, loss)(p64, x64, y64)
        err = max(float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))
                  for a, b in zip(jax.tree_util.tree_leaves(manual), jax.tree_util.tree_leaves(auto)))
    ok = err <= 1e-10
    out(f"gradient check: hand-derived backprop vs jax.grad (float64), max relative error "
        f"{err:.1e} -> {'OK' if ok else 'MISMATCH'}")
    if not ok:
        raise SystemExit("gradient check failed: the hand-derived backward disagrees with jax.grad")

    # 2. Gradient descent, theta <- theta - learning_rate * dJ/dtheta, a scanned chunk per jit call.
    def step(params, _):
        value, grads = grad_fn(params, x, y)
        params = jax.tree_util.tree_map(lambda p, g: p - learning_rate * g, params, grads)
        return params, value

    @jax.jit
    def run_chunk(params):
        return jax.lax.scan(step, params, None, length=report_every)

    history = []
    t0 = time.perf_counter()
    done = 0
    while done < steps:
        params, values = run_chunk(params)
        done += report_every
        mse = float(loss.value(net.forward(params, x)[0], y))
        history.append((done, mse))
        out(f"step {done:5d}  mse {mse:.5f}")
    elapsed = time.perf_counter() - t0

    pred = np.asarray(net.forward(params, x)[0])
    correct = int(np.sum((pred > 0.5) == (np.asarray(y) > 0.5)))
    out(f"trained {steps} steps in {elapsed:.2f} s (jit-compiled, hand-derived backprop)")
    out("predictions:")
    for xi, yi, pi in zip(np.asarray(x), np.asarray(y), pred):
        out(f"  {int(xi[0])} xor {int(xi[1])} = {int(yi[0])}   predicted {pi[0]:.3f}"
            f"  {'ok' if (pi[0] > 0.5) == (yi[0] > 0.5) else 'WRONG'}")
    out(f"correct: {correct}/4")
    out(f"train_loss: {history[-1][1]:.6f}")
    out(f"train_accuracy: {correct / 4:.3f}")
    return params, history


def _cmd_train(args) -> int:
    params, history = train_xor(seed=args.seed, steps=args.steps)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxbp", description="Hand-derived backpropagation beside jax.grad.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    check = sub.add_parser("check", help="verify the hand-derived gradients of every built-in "
                           "layer and loss (exit 1 on any failure)")
    check.add_argument("--only", metavar="NAME", help="only cases whose name contains NAME")
    check.add_argument("--draws", type=int, default=2, help="draws per batch size (default 2)")
    check.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    check.set_defaults(func=lambda a: __import__("jaxbp.check", fromlist=["_"]).cli_main(a))
    train = sub.add_parser("train", help="train a network (default: XOR by hand-derived backprop)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument("--steps", type=int, default=2000, help="gradient steps (default 2000)")
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
