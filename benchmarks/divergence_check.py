"""Seconds per scanned digits epoch of ``fit``, with the divergence check and without it.

The check adds one finiteness reduction over the parameters and optimizer state per epoch,
folded into the objective fit reads anyway; the epoch still donates its state (a diverged
epoch's start state is rebuilt afterwards, see ``jaxbp.train.diverge``).

``python benchmarks/divergence_check.py`` prints one JSON line: both programs of this checkout
(``epoch_program(())`` and ``epoch_program((), check=False)``, each donating its state) timed
in one process, interleaved, ``rounds`` rounds of ``inner`` epochs each: medians, ranges and
the ratio. To time against another revision instead, two checkouts alternately::

    git worktree add /tmp/nocheck def9ddb
    for i in 1 2 3 4 5; do
      PYTHONPATH=/tmp/nocheck python benchmarks/divergence_check.py --single
      PYTHONPATH=. python benchmarks/divergence_check.py --single
    done

``--single`` prints the median of fit's epoch program of whichever ``jaxbp`` is importable
(64-256-10 MLP, Adam, float32, batch 32, 1257 examples: 40 steps), as fit calls it, and of a
whole ``fit`` epoch, evaluation included; ``--single --no-check`` the epoch program alone,
without the check (this checkout only).
"""
import json
import statistics
import sys
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


def _setup(programs):
    net, loss, params, x, y = _digits()
    opt = bp.optim.adam(1e-3)
    cfg = EpochConfig(net, loss, opt, bp.backprop, 0.0, 0.0, None, 32, True)
    states = []
    for run in programs:
        state = copy_tree(init_state(params, opt, jax.random.key(0)))  # as fit: own buffers
        states.append(run(state, x, y, cfg=cfg)[0])  # compile
    return states, x, y, cfg


def _time(run, state, x, y, cfg, inner):
    t = time.perf_counter()
    for _ in range(inner):
        state, objective = run(state, x, y, cfg=cfg)
        float(objective)  # fit reads the objective (nan if the state is not finite)
    return state, (time.perf_counter() - t) / inner


def compare(rounds: int = 31, inner: int = 20) -> dict:
    """Both programs interleaved (the order alternating per round): milliseconds per epoch."""
    programs = {"with check": epoch_program(()), "without": epoch_program((), check=False)}
    states, x, y, cfg = _setup(programs.values())
    states = dict(zip(programs, states))
    samples = {name: [] for name in programs}
    for r in range(rounds):
        for name in (list(programs) if r % 2 == 0 else list(programs)[::-1]):
            states[name], seconds = _time(programs[name], states[name], x, y, cfg, inner)
            samples[name].append(1e3 * seconds)
    out = {name: {"median_ms": round(statistics.median(s), 4),
                  "range_ms": [round(min(s), 4), round(max(s), 4)]}
           for name, s in samples.items()}
    ratios = [a / b for a, b in zip(samples["with check"], samples["without"])]
    out["ratio of medians"] = round(out["with check"]["median_ms"]
                                    / out["without"]["median_ms"], 4)
    out["per-round ratio"] = {"median": round(statistics.median(ratios), 4),
                              "range": [round(min(ratios), 4), round(max(ratios), 4)]}
    return out


def epoch_seconds(reps: int = 21, inner: int = 20, check: bool = True) -> float:
    """Median seconds per call of fit's compiled epoch (the state fed back, as fit does)."""
    run = epoch_program((), check=check) if not check else epoch_program(())
    (state,), x, y, cfg = _setup([run])
    samples = []
    for _ in range(reps):
        state, seconds = _time(run, state, x, y, cfg, inner)
        samples.append(seconds)
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
    if "--single" in sys.argv:
        if "--no-check" in sys.argv:  # this checkout's epoch without the check
            print(json.dumps({"epoch": epoch_seconds(check=False)}))
        else:
            print(json.dumps({"epoch": epoch_seconds(), "fit epoch": fit_epoch_seconds()}))
    else:
        print(json.dumps(compare()))
