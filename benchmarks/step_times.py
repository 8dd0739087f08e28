"""Seconds per scanned training step of five small networks, for comparing two revisions.

Prints one JSON line of medians (seconds per step; ``fit digits epoch`` seconds per epoch) for
whichever ``jaxbp`` is importable, so two checkouts can be timed alternately on one machine::

    git worktree add /tmp/old <rev>
    for i in 1 2 3; do
      PYTHONPATH=/tmp/old python benchmarks/step_times.py
      PYTHONPATH=. python benchmarks/step_times.py
    done

Not part of ``python -m benchmarks.run``: it measures no other library, only jaxbp against itself.
"""
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp


def _run(epoch, params, state, xs, ys) -> float:
    t = time.perf_counter()
    jax.block_until_ready(epoch(params, state, xs, ys)[0])
    return time.perf_counter() - t


def scanned_step(net, loss, in_shape, out, batch, steps, classes=None, reps=15) -> float:
    """Median seconds per step of ``make_train_epoch`` (Adam, float32) over ``steps`` batches."""
    params, _ = net.init(jax.random.key(0), in_shape)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    rng = np.random.default_rng(0)
    xs = jnp.asarray(rng.standard_normal((steps, batch, *in_shape)), jnp.float32)
    ys = (jnp.asarray(rng.integers(0, classes, (steps, batch)), jnp.int32) if classes else
          jnp.asarray(rng.standard_normal((steps, batch, out)), jnp.float32))
    opt = bp.optim.adam(1e-3)
    epoch, state = bp.make_train_epoch(net, loss, opt), opt.init(params)
    _run(epoch, params, state, xs, ys)                       # compile
    inner = max(1, int(0.05 / max(1e-7, _run(epoch, params, state, xs, ys))))
    samples = []
    for _ in range(reps):
        samples.append(sum(_run(epoch, params, state, xs, ys) for _ in range(inner))
                       / (inner * steps))
    return statistics.median(samples)


def fit_epoch(epochs: int = 30) -> float:
    """Seconds per epoch of ``fit`` on digits (64-256-10 MLP, batch 32, evaluation included)."""
    ds = bp.data.load("digits")
    net, loss = bp.serial(bp.dense(256), bp.relu(), bp.dense(10)), bp.softmax_cross_entropy()
    params, _ = net.init(jax.random.key(0), (64,))
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    x, y = ds.train.x.astype(np.float32), ds.train.y
    bp.fit(net, loss, bp.optim.adam(1e-3), params, x, y, key=0, epochs=2, progress=False)
    t = time.perf_counter()
    bp.fit(net, loss, bp.optim.adam(1e-3), params, x, y, key=0, epochs=epochs, progress=False)
    return (time.perf_counter() - t) / epochs


def main() -> dict:
    cnn = bp.serial(bp.conv2d(16, 3), bp.relu(), bp.max_pool(2), bp.conv2d(32, 3), bp.relu(),
                    bp.max_pool(2), bp.flatten(), bp.dense(10))
    return {
        "xor 2-8-1 b4": scanned_step(bp.serial(bp.dense(8), bp.tanh(), bp.dense(1), bp.sigmoid()),
                                     bp.mse(), (2,), 1, 4, 200),
        "digits mlp 64-256-10 b32": scanned_step(
            bp.serial(bp.dense(256), bp.relu(), bp.dense(10)), bp.softmax_cross_entropy(),
            (64,), 10, 32, 40, classes=10),
        "cnn 8x8 b32": scanned_step(cnn, bp.softmax_cross_entropy(), (8, 8, 1), 10, 32, 20,
                                    classes=10),
        "lstm T10 b32": scanned_step(bp.serial(bp.lstm(32), bp.last_step(), bp.dense(1)),
                                     bp.mse(), (10, 4), 1, 32, 20),
        "fit digits epoch": fit_epoch(),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
