"""The weight gradient ``dw = x^T dy`` of an affine map, laid out on CPU for XLA's fast kernel.

Used by :func:`jaxbp.dense`; ``tests/test_cpu_layout.py`` and ``benchmarks/weight_grad.py``
check and time its branches.
"""

from __future__ import annotations

import jax

from jaxbp._core import Array


def _weight_grad_cpu(x: Array, dy: Array) -> Array:
    # Both operands of x^T dy are contracted over their rows (the batch axis). XLA:CPU hands
    # such a product to a generic Eigen kernel, while a product of row-major operands goes to
    # its faster matmul library. Measured in scanned training steps (benchmarks/analysis.md,
    # "The dense weight gradient on CPU"), the Eigen kernel is
    #   - 4-5x slower for a narrow dy (few outputs, e.g. a classifier's 10 logits), where
    #     dw = (dy^T x)^T transposes only dy and the small result;
    #   - 5-10% slower for a big batch (>= 256) not much narrower than d_in, and for small
    #     products (<= 2^20 multiply-adds), where transposing x in memory first pays;
    #   - as fast or faster otherwise (e.g. batch 128 with d_in 256-784), and for tiny x.
    # optimization_barrier keeps XLA from folding the transposes back into the product.
    barrier = jax.lax.optimization_barrier
    batch, d_in = x.shape  # x and dy are 2-d here: extra leading axes are folded into the batch
    form = weight_grad_form(batch, d_in, dy.shape[1])
    if form == "(dy^T x)^T":
        return barrier(barrier(dy.T) @ x).T
    if form == "(x^T) dy":
        return barrier(x.T) @ dy
    return x.T @ dy


def weight_grad_form(batch: int, d_in: int, d_out: int) -> str:
    """How :func:`weight_grad` lays out ``x^T dy`` on CPU for these sizes:
    ``"x^T dy"`` (as written), ``"(x^T) dy"`` or ``"(dy^T x)^T"`` (see ``_weight_grad_cpu``)."""
    if batch * d_in < 4096:
        return "x^T dy"
    if d_out <= 64 and 4 * d_out <= d_in:
        return "(dy^T x)^T"
    if 4 * batch >= d_in and (batch >= 256 or batch * d_in * d_out <= 2**20):
        return "(x^T) dy"
    return "x^T dy"


def weight_grad(x: Array, dy: Array) -> Array:
    """``dw = x^T @ dy`` for ``x: (batch, d_in)``, ``dy: (batch, d_out)``: the weight gradient
    of :func:`jaxbp.dense`, summed over the batch.

    The same product on every backend, to rounding; on CPU it is arranged by shape so that XLA
    picks its fast matmul kernel (see ``_weight_grad_cpu``).
    """
    return jax.lax.platform_dependent(x, dy, cpu=_weight_grad_cpu,
                                      default=lambda x, dy: x.T @ dy)


__all__ = ["weight_grad", "weight_grad_form"]
