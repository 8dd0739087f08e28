"""Timing: medians of interleaved repeats after warm-up, and this machine's matmul peak."""

from __future__ import annotations

import math
import statistics
import time
from typing import Callable, Protocol


class Timed(Protocol):
    steps: int

    def run(self) -> None: ...


def time_interleaved(runners: dict[str, Timed], *, repeats: int, min_time: float,
                     warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per step for each runner: ``repeats`` samples, taken round-robin.

    Each runner is warmed up, then calibrated so that one sample (``inner`` epochs) lasts at least
    ``min_time`` seconds. Samples are taken in rounds, one per runner per round, so that a burst of
    load from elsewhere on a shared machine hits every implementation alike instead of the one that
    happened to be running.
    """
    inner = {}
    for name, runner in runners.items():
        for _ in range(warmup):
            runner.run()
        t0 = time.perf_counter()
        runner.run()
        one = time.perf_counter() - t0
        inner[name] = max(1, math.ceil(min_time / max(one, 1e-9)))
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, runner in runners.items():
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                runner.run()
            samples[name].append((time.perf_counter() - t0) / (inner[name] * runner.steps))
    return samples


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """Half the interquartile range relative to the median: a robust +- for the table."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / 2 / statistics.median(xs)
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / 2 / statistics.median(xs)


def matmul_peak(n: int = 2048, repeats: int = 7, *, use_torch: bool = True) -> dict[str, float]:
    """GFLOP/s of an ``(n, n) @ (n, n)`` float32 matmul in each framework, best of ``repeats``.

    The best sample, not the median: a peak is what the hardware can do, and on a shared machine
    every slower sample is someone else's load.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    flops = 2.0 * n ** 3
    fns: dict[str, Callable[[], object]] = {}
    ja = jnp.asarray(a)
    mm = jax.jit(lambda u, v: u @ v)
    fns["jax (XLA)"] = lambda: mm(ja, ja).block_until_ready()
    fns["numpy"] = lambda: a @ a
    if use_torch:
        import torch

        ta = torch.from_numpy(a)
        fns["torch"] = lambda: ta @ ta
    best = {name: 0.0 for name in fns}
    for name, fn in fns.items():
        fn()
    for _ in range(repeats):  # round-robin, as for the training steps
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = max(best[name], flops / (time.perf_counter() - t0) / 1e9)
    return best
