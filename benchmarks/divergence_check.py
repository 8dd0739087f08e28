"""Seconds per scanned digits epoch of ``fit``, to time the divergence check against a revision
without it (the check adds one finiteness reduction per epoch, folded into the objective that fit
reads anyway, and keeps the epoch's start state instead of donating it).

Prints one JSON line of medians for whichever ``jaxbp`` is importable; time two checkouts
alternately on one machine (see ``docs/training.md`` for the numbers)::

    git worktree add /tmp/old <rev without the check>
    for i in 1 2 3 4 5; do
      PYTHONPATH=/tmp/old python benchmarks/divergence_check.py
      PYTHONPATH=. python benchmarks/divergence_check.py
    done

``epoch``: fit's compiled epoch alone (64-256-10 MLP, Adam, float32, batch 32, 1257 examples:
40 steps), as fit calls it; ``fit epoch``: a whole ``fit`` epoch, evaluation included.
"""
import json
import statistics
import time

import jax
import jax.numpy as jnp

import jaxbp as bp
from jaxbp.train.epoch import EpochConfig, epoch_program
from jaxbp.train.state import copy_tree, init_state


def _digits():
    ds = bp.data.load("digits")
    net, loss = bp.serial(bp.dense(256), bp.relu(), bp.dense(10)), bp.softmax_cross_entropy()
    params, _ = net.init(jax.random.key(0), (64,))
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), params)
    return net, loss, params, jnp.asarray(ds.train.x, jnp.float32), jnp.asarray(ds.train.y)


def epoch_seconds(reps: int = 21, inner: int = 20) -> float:
    """Median seconds per call of fit's compiled epoch (the state fed back, as fit does)."""
    net, loss, params, x, y = _digits()
    opt = bp.optim.adam(1e-3)
    cfg = EpochConfig(net, loss, opt, bp.backprop, 0.0, 0.0, None, 32, True)
    run = epoch_program(())
    state = copy_tree(init_state(params, opt, jax.random.key(0)))  # as fit: no shared buffers
    state = run(state, x, y, cfg=cfg)[0]  # compile
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        for _ in range(inner):
            out = run(state, x, y, cfg=cfg)
            state = out[0]
            float(out[1])  # fit reads the objective (nan if the state is not finite)
        samples.append((time.perf_counter() - t) / inner)
    return statistics.median(samples)


def fit_epoch_seconds(epochs: int = 30) -> float:
    """Seconds per epoch of a whole ``fit`` on digits (evaluation included, no compilation)."""
    net, loss, params, x, y = _digits()
    opt = bp.optim.adam(1e-3)  # the same object: the second fit reuses the compiled epoch
    bp.fit(net, loss, opt, params, x, y, key=0, epochs=2, progress=False)
    t = time.perf_counter()
    bp.fit(net, loss, opt, params, x, y, key=0, epochs=epochs, progress=False)
    return (time.perf_counter() - t) / epochs


if __name__ == "__main__":
    print(json.dumps({"epoch": epoch_seconds(), "fit epoch": fit_epoch_seconds()}))
