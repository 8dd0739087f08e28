"""One ``bp.sweep`` of 16 learning rates against 16 sequential ``fit`` calls, digits MLP.

``python -m benchmarks.sweep`` (from the repository root) prints one JSON line. Each round
builds fresh objects (network, loss: nothing is reused from an earlier round's compilation)
and times, in an order that alternates from round to round:

- *sweep*: ``bp.sweep(net, loss, bp.optim.adam, ..., learning_rates=16 rates)``, compile
  included: one vmap-ed compiled epoch per epoch for all 16 runs;
- *fits*: for each rate, ``fit(net, loss, bp.optim.adam(rate), net.init(key(0))[0], ...,
  key=key(0))`` as a user would loop (a new optimizer object each time, hence a compile each).

Both train the 64-256-10 digits MLP (``models.mlp``, softmax cross-entropy, float32), batch
32, ``--epochs`` epochs (default 20) with validation after each, seed 0. The sweep's runs equal
the fits' to float32 rounding (printed per rate for round 1: the largest per-leaf ``max |diff|
/ max |fit|``; at the largest rates Adam's float32 trajectories are chaotic, and rounding
differences of 1e-7 in the first epoch grow to order 1 over 20 epochs). Then the
compiles of a fresh sweep of K=4 and of K=16 rates are counted (``jax.monitoring``), to show
that the count does not grow with K. The load average is printed before and after: read it
before trusting a ratio (2 shared cores).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp
from benchmarks.compiles import count_compiles
from jaxbp import models


def _problem():
    ds = bp.data.load("digits", seed=0)
    as32 = lambda s: (jnp.asarray(s.x, jnp.float32), jnp.asarray(s.y))  # noqa: E731
    return as32(ds.train), as32(ds.val)


def _fresh():
    """A new network and loss: no compiled program of an earlier round applies to them."""
    return models.mlp((256,), 10, "relu")


def _params(net, seed: int = 0):
    return jax.tree_util.tree_map(lambda a: a.astype(jnp.float32),
                                  net.init(jax.random.key(seed), (64,))[0])


def time_sweep(rates, train, val, epochs: int):
    net, loss = _fresh()
    t = time.perf_counter()
    result = bp.sweep(net, loss, bp.optim.adam, *train, epochs=epochs, batch_size=32,
                      learning_rates=rates, validation=val, dtype=jnp.float32, progress=False)
    jax.block_until_ready(result.params)
    return time.perf_counter() - t, result


def time_fits(rates, train, val, epochs: int):
    net, loss = _fresh()
    t = time.perf_counter()
    results = [bp.fit(net, loss, bp.optim.adam(lr), _params(net), *train, key=jax.random.key(0),
                      epochs=epochs, batch_size=32, validation=val, progress=False)
               for lr in rates]
    jax.block_until_ready([r.params for r in results])
    return time.perf_counter() - t, results


def _differences(result, fits) -> list[float]:
    """Per run: the largest ``max |sweep - fit| / max |fit|`` over the parameter leaves (nan
    for a diverged run)."""
    out = []
    for k, fitted in enumerate(fits):
        worst = math.nan if result.diverged[k] else 0.0
        for a, b in zip(jax.tree_util.tree_leaves(result.params_of(k)),
                        jax.tree_util.tree_leaves(fitted.params)):
            worst = max(worst, float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))))
        out.append(float(f"{worst:.1e}"))
    return out


def compiles_for(k: int, train, val, epochs: int) -> dict:
    rates = list(np.geomspace(1e-4, 1e-1, k))
    with count_compiles() as seen:
        time_sweep(rates, train, val, epochs)
    return {"compiles": len(seen), "compile_seconds": round(sum(seen), 2)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rates", type=int, default=16)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    train, val = _problem()
    rates = list(np.geomspace(1e-4, 1e-1, args.rates))
    _params(_fresh()[0])  # untimed: the eager ops of net.init, which both sides then share
    times: dict = {"sweep": [], "fits": []}
    difference = None
    for r in range(args.rounds):
        order = ("sweep", "fits") if r % 2 == 0 else ("fits", "sweep")
        out = {}
        for name in order:
            run = time_sweep if name == "sweep" else time_fits
            seconds, out[name] = run(rates, train, val, args.epochs)
            times[name].append(seconds)
        if difference is None:
            difference = _differences(out["sweep"], out["fits"])
    ratios = [f / s for f, s in zip(times["fits"], times["sweep"])]
    report = {
        "config": f"digits MLP 64-256-10, adam, float32, batch 32, {args.epochs} epochs, "
                  f"{args.rates} learning rates {rates[0]:g}..{rates[-1]:g}",
        "sweep_s": [round(t, 2) for t in times["sweep"]],
        "fits_s": [round(t, 2) for t in times["fits"]],
        "ratio_of_medians": round(statistics.median(times["fits"])
                                  / statistics.median(times["sweep"]), 2),
        "ratio_per_round": [round(x, 2) for x in ratios],
        "sweep_vs_fit_max_rel_diff_per_rate": difference,
        "compiles_k4": compiles_for(4, train, val, args.epochs),
        "compiles_k16": compiles_for(16, train, val, args.epochs),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
