"""Where the small-program XLA options stop paying: XLA defaults vs ``SMALL_PROGRAM_CPU_OPTIONS``.

Usage::

    python -m benchmarks.small_programs            # ~1 minute on 2 cores

For MLPs ``d_in-hidden-10`` (tanh, softmax cross-entropy, hand-written SGD, backprop) of growing
size, times a scanned epoch (``bp.make_train_epoch``, 50 steps) compiled with XLA's defaults and
with the options ``compiler_options="auto"`` gives tiny programs on CPU, interleaved, median of 7
samples, and prints µs per step beside XLA's cost-analysis FLOPs per step and what ``"auto"``
picks; and the XLA compile time of each (best of 3), with the number of steps after which the
faster steps have repaid the longer compilation. The threshold ``SMALL_PROGRAM_FLOPS`` in
``jaxbp/_compile.py`` comes from this table.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp
from jaxbp._compile import SMALL_PROGRAM_CPU_OPTIONS, SMALL_PROGRAM_FLOPS

# (d_in, hidden, batch): from the XOR network's size up to the digits benchmark's.
SIZES = [(2, 8, 4), (8, 16, 8), (16, 32, 16), (16, 64, 16), (32, 32, 32), (64, 32, 64),
         (64, 64, 32), (64, 128, 16), (64, 128, 64)]
STEPS = 50


def _time(fn, args, repeats: int = 7, min_time: float = 0.05) -> float:
    jax.block_until_ready(fn(*args))
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_time:
        out = fn(*args)
        n += 1
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / n / STEPS * 1e6


def _compile_seconds(d_in: int, hidden: int, options, args) -> float:
    """XLA compile time of a freshly built epoch (nothing cached), best of 3."""
    times = []
    for _ in range(3):
        net = bp.serial(bp.dense(hidden), bp.tanh(), bp.dense(10))  # a new object: a new trace
        epoch = bp.make_train_epoch(net, bp.softmax_cross_entropy(), bp.optim.sgd(0.05),
                                    compiler_options=options)
        lowered = epoch.lower(*args)
        t0 = time.perf_counter()
        lowered.compile()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, "
          f"SMALL_PROGRAM_FLOPS = {SMALL_PROGRAM_FLOPS:.0e}")
    print("| network | batch | FLOPs/step (XLA) | XLA defaults µs | small options µs | "
          "small / defaults | auto picks | compile s: defaults / small | repaid after (steps) |")
    print("|---|---:|---:|---:|---:|---:|---|---|---:|")
    rng = np.random.default_rng(0)
    for d_in, hidden, batch in SIZES:
        net = bp.serial(bp.dense(hidden), bp.tanh(), bp.dense(10))
        params, _ = net.init(jax.random.key(0), (d_in,))
        opt = bp.optim.sgd(0.05)
        xs = jnp.asarray(rng.uniform(size=(STEPS, batch, d_in)).astype(np.float32))
        ys = jnp.asarray(rng.integers(0, 10, (STEPS, batch)).astype(np.int32))
        args = (params, opt.init(params), xs, ys)
        epochs = {name: bp.make_train_epoch(net, bp.softmax_cross_entropy(), opt,
                                            compiler_options=options)
                  for name, options in [("defaults", None),
                                        ("small", dict(SMALL_PROGRAM_CPU_OPTIONS)),
                                        ("auto", "auto")]}
        flops = epochs["defaults"].lower(*args).cost_analysis()["flops"]
        epochs["auto"].lower(*args)
        samples = {"defaults": [], "small": []}
        for _ in range(7):
            for name in samples:
                samples[name].append(_time(epochs[name], args))
        d, s = (statistics.median(samples[k]) for k in ("defaults", "small"))
        picked = "small" if epochs["auto"].compiler_options else "defaults"
        compile_s = {k: _compile_seconds(d_in, hidden, o, args)
                     for k, o in (("defaults", None), ("small", dict(SMALL_PROGRAM_CPU_OPTIONS)))}
        extra = compile_s["small"] - compile_s["defaults"]
        repaid = (f"{extra / ((d - s) * 1e-6):,.0f}" if s < d and extra > 0 else
                  "never" if s >= d else "at once")
        print(f"| {d_in}-{hidden}-10 | {batch} | {flops:,.0f} | {d:.2f} | {s:.2f} | "
              f"{s / d:.2f} | {picked} | {compile_s['defaults']:.3f} / {compile_s['small']:.3f} "
              f"| {repaid} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
