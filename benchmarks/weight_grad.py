"""The dense weight gradient ``dw = x^T dy`` on CPU: the three ways to lay it out, side by side.

Usage::

    python -m benchmarks.weight_grad             # ~1 minute on 2 cores

For each shape ``(batch, d_in, d_out)`` — those of the benchmark networks, and a few around them —
times, inside a ``lax.scan`` over 2-50 different ``(x, dy)`` pairs (so dispatch does not count),
float32, median of 7 interleaved samples:

- ``x^T dy``: the product as written; XLA:CPU runs it on a generic Eigen kernel, because both
  operands are contracted over their rows;
- ``(x^T) dy``: ``x`` transposed in memory first (an optimization barrier stops XLA from folding
  the transpose back), so the product has row-major operands and goes to XLA's matmul library;
- ``(dy^T x)^T``: ``dy`` transposed instead, and the small result transposed back;

and which of them ``jaxbp.layers._matmul.weight_grad`` (dense's weight gradient) picks for
that shape.
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

import jaxbp  # noqa: F401  (loads the module below)

dense = sys.modules["jaxbp.layers._matmul"]  # dense's weight gradient
barrier = jax.lax.optimization_barrier

FORMS = {
    "x^T dy": lambda x, dy: x.T @ dy,
    "(x^T) dy": lambda x, dy: barrier(x.T) @ dy,
    "(dy^T x)^T": lambda x, dy: barrier(barrier(dy.T) @ x).T,
}
SHAPES = [(4, 2, 8), (4, 8, 1), (64, 64, 128), (64, 128, 10), (128, 64, 64), (32, 784, 256),
          (128, 784, 256), (128, 256, 256), (128, 256, 10), (256, 784, 256), (512, 784, 1024),
          (512, 1024, 1024), (512, 1024, 10)]


def main() -> int:
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; µs per product, float32")
    print("| batch × d_in × d_out | " + " | ".join(FORMS) + " | fastest | weight_grad uses |")
    print("|---|" + "---:|" * len(FORMS) + "---|---|")
    rng = np.random.default_rng(0)
    for batch, d_in, d_out in SHAPES:
        n = max(2, min(50, int(2e8 / (2 * batch * d_in * d_out))))
        xs = jnp.asarray(rng.uniform(size=(n, batch, d_in)).astype(np.float32))
        dys = jnp.asarray(rng.uniform(size=(n, batch, d_out)).astype(np.float32))
        fns = {name: jax.jit(lambda xs, dys, f=f, shape=(d_in, d_out): jax.lax.scan(
            lambda c, xd: (c + f(*xd), None), jnp.zeros(shape, jnp.float32),
            (xs, dys))[0]) for name, f in FORMS.items()}
        samples = {name: [] for name in fns}
        for _ in range(7):
            for name, fn in fns.items():
                fn(xs, dys).block_until_ready()
                t0, k = time.perf_counter(), 0
                while time.perf_counter() - t0 < 0.03:
                    out = fn(xs, dys)
                    k += 1
                out.block_until_ready()
                samples[name].append((time.perf_counter() - t0) / k / n * 1e6)
        med = {name: statistics.median(v) for name, v in samples.items()}
        best = min(med, key=med.get)
        cells = " | ".join(f"{med[name]:,.2f}" for name in FORMS)
        form = dense.weight_grad_form(batch, d_in, d_out)
        print(f"| {batch} × {d_in} × {d_out} | {cells} | {best} | {form} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
