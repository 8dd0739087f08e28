"""Verify your own hand-derived layer: write it, let jaxbp catch a wrong backward, fix it.

The layer is a per-feature scale and shift (the affine part of a normalisation layer)::

    y = x * gamma + beta            x, y: (batch, d)    gamma, beta: (d,)

Its backward, given ``dy = dL/dy`` of shape ``(batch, d)``::

    dgamma = sum_batch dy * x       (d,)    gamma is broadcast over the batch: its adjoint sums
    dbeta  = sum_batch dy           (d,)
    dx     = dy * gamma             (batch, d)

The first version below averages over the batch instead of summing — a classic slip. The checker
names the leaf (``gamma``), the element, the layer inside a network, and the likely mistake.

Run: ``python examples/verify_my_layer.py``
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp


class ScaleShiftParams(NamedTuple):
    gamma: jax.Array
    beta: jax.Array


def scale_shift(*, slip: bool = False) -> bp.Layer:
    """``y = x * gamma + beta`` per feature; ``slip=True`` averages dgamma over the batch."""

    def init(key, input_shape):
        (d,) = input_shape
        return ScaleShiftParams(jnp.ones((d,)), jnp.zeros((d,))), (d,)

    def forward(params, x, *, key=None):
        return x * params.gamma[None, :] + params.beta[None, :], x

    def backward(params, x, dy):
        reduce = jnp.mean if slip else jnp.sum          # the slip: mean, not sum
        dgamma = reduce(dy * x, axis=0)
        dbeta = jnp.sum(dy, axis=0)
        dx = dy * params.gamma[None, :]
        return ScaleShiftParams(dgamma, dbeta), dx

    return bp.Layer(init, forward, backward, "scale_shift")


def main(out=print):
    """Runs the story; returns the reports (buggy layer, buggy network, fixed layer)."""
    out("1. Check the layer on its own: random params, inputs and cotangents, batch 1 and 3.")
    buggy = bp.check_layer(scale_shift(slip=True), (4,))
    out(str(buggy))
    assert not buggy.ok

    out("\n2. The same slip inside a network: the report says which layer, and why.")
    net = bp.serial(bp.dense(4), bp.tanh(), scale_shift(slip=True), bp.dense(1))
    params, _ = net.init(jax.random.key(0), (3,))
    rng = np.random.default_rng(0)
    x, y = jnp.asarray(rng.standard_normal((8, 3))), jnp.asarray(rng.standard_normal((8, 1)))
    in_net = bp.check_gradients(net, bp.mse(), params, x, y)
    out(f"located: {in_net.location}")
    for hint in in_net.hints:
        out(f"hint: {hint}")
    assert not in_net.ok

    out("\n3. Fixed: sum over the batch. All three witnesses agree.")
    fixed = bp.check_layer(scale_shift(), (4,))
    out(str(fixed))
    fixed_net = bp.serial(bp.dense(4), bp.tanh(), scale_shift(), bp.dense(1))
    bp.assert_gradients_match(fixed_net, bp.mse(), params, x, y)  # what a pytest test calls

    out("\n4. Use the verified derivation anywhere in JAX: "
        "jax.grad runs the hand-derived backward.")
    apply = bp.as_custom_vjp(scale_shift())
    p0, _ = scale_shift().init(None, (4,))
    g = jax.grad(lambda p: jnp.sum(apply(p, x[:, :1] * jnp.ones((1, 4)))))(p0)
    out(f"dgamma = {np.asarray(g.gamma, np.float64).round(4).tolist()}  (sum over the batch of x)")
    return buggy, in_net, fixed


if __name__ == "__main__":
    main()
