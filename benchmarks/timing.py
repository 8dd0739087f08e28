"""Timing: medians of interleaved repeats after warm-up, and this machine's matmul peak."""

from __future__ import annotations

import math
import statistics
import time
from typing import Protocol


class Timed(Protocol):
    steps: int

    def run(self) -> None: ...


def framework(label: str) -> str:
    """``"jaxbp backprop, ..."`` -> ``"jaxbp"``: the library whose thread pool a runner uses."""
    return label.replace(",", " ").split()[0]


def time_interleaved(runners: dict[str, Timed], *, repeats: int, min_time: float,
                     warmup: int = 1, settle: float = 0.2) -> dict[str, list[float]]:
    """Seconds per step for each runner: ``repeats`` samples, taken round-robin.

    Each runner is warmed up, then calibrated so that one sample (``inner`` epochs) lasts at least
    ``min_time`` seconds. Samples are taken in rounds, one per runner per round, so that a burst of
    load from elsewhere on a shared machine hits every implementation alike instead of the one that
    happened to be running. Before a sample of another library than the previous sample's, the
    harness sleeps ``settle`` seconds and runs one untimed epoch: OpenBLAS and OpenMP worker
    threads spin for a while after their last call, and on 2 cores they would otherwise slow the
    next library down (PyTorch right after NumPy ran ~3x slower in our profiling). The order
    rotates from round to round, so no runner is always the first after a pause.
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
    groups: dict[str, list[str]] = {}
    for name in runners:
        groups.setdefault(framework(name), []).append(name)
    last = None
    for r in range(repeats):
        for name in _round_order(list(groups.values()), r):
            runner = runners[name]
            if framework(name) != last:
                time.sleep(settle)
                runner.run()  # untimed: wakes this library's threads, warms caches and clocks
                last = framework(name)
            t0 = time.perf_counter()
            for _ in range(inner[name]):
                runner.run()
            samples[name].append((time.perf_counter() - t0) / (inner[name] * runner.steps))
    return samples


def _rotate(xs: list, r: int) -> list:
    return xs[r % len(xs):] + xs[:r % len(xs)]


def _round_order(groups: list[list[str]], r: int) -> list[str]:
    """Round ``r``: the libraries in rotated order, each library's runners rotated too, so that
    a different runner comes first after each switch of library (when it is slowest)."""
    return [name for group in _rotate(groups, r) for name in _rotate(group, r)]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> float:
    """Half the interquartile range relative to the median: a robust +- for the table."""
    if len(xs) < 4:
        return (max(xs) - min(xs)) / 2 / statistics.median(xs)
    q = statistics.quantiles(xs, n=4)
    return (q[2] - q[0]) / 2 / statistics.median(xs)


class Matmul:
    """A float32 ``(n, n) @ (n, n)`` matmul in one library, timed like a training step
    (``steps = 1``), so that the peak is measured under the same load as the steps it rates."""

    steps = 1

    def __init__(self, library: str, n: int = 2048):
        import numpy as np

        a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
        self.flops = 2.0 * n ** 3
        if library == "jax":
            import jax
            import jax.numpy as jnp

            ja, mm = jnp.asarray(a), jax.jit(lambda u, v: u @ v)
            self._fn = lambda: mm(ja, ja).block_until_ready()
        elif library == "numpy":
            self._fn = lambda: a @ a
        else:
            import torch

            ta = torch.from_numpy(a)
            self._fn = lambda: ta @ ta

    def run(self) -> None:
        self._fn()
