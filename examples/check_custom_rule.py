"""Checking a research-style ``jax.custom_vjp``: a stable log-sum-exp over a dict of logits.

1. The rule with a classic slip (the bwd returns ``g · exp(x − max)``, forgetting to normalise
   by the sum: softmax is ``exp(x − max) / Σ exp(x − max)``): ``bp.check_vjp`` names the leaf.
2. A layer whose forward calls the slipped rule: manual and autodiff agree (both run the rule),
   yet ``bp.check_layer`` fails it and names the custom rule.
3. The fix: all three witnesses agree.

Run: ``python examples/check_custom_rule.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp


def make_lse(normalise: bool):
    @jax.custom_vjp
    def lse(logits):
        x = logits["scores"]
        m = jnp.max(x, -1, keepdims=True)
        return (m + jnp.log(jnp.sum(jnp.exp(x - m), -1, keepdims=True)))[..., 0]

    def lse_fwd(logits):
        return lse(logits), logits["scores"]

    def lse_bwd(x, g):
        e = jnp.exp(x - jnp.max(x, -1, keepdims=True))
        p = e / jnp.sum(e, -1, keepdims=True) if normalise else e  # the slip: no normalisation
        return ({"scores": g[..., None] * p},)

    lse.defvjp(lse_fwd, lse_bwd)
    return lse


def lse_layer(lse) -> bp.Layer:
    """A parameter-free layer ``y = lse(x)`` whose backward is the rule's vjp."""
    def forward(params, x, *, key=None):
        return lse({"scores": x}), x

    def backward(params, x, dy):
        return (), jax.vjp(lambda x: lse({"scores": x}), x)[1](dy)[0]

    return bp.Layer(lambda key, shape: ((), tuple(shape[:-1])), forward, backward, "lse")


def main(out=print):
    logits = {"scores": np.random.default_rng(0).standard_normal((2, 5))}
    out("1. The rule with a slip, checked on its own:")
    slipped = bp.check_vjp(make_lse(normalise=False), logits)
    out(str(slipped))
    out("\n2. A layer calling it: manual and autodiff agree, finite differences do not:")
    in_layer = bp.check_layer(lse_layer(make_lse(normalise=False)), (5,))
    out(str(in_layer))
    out("\n3. Fixed: normalised by the sum (softmax).")
    fixed = bp.check_vjp(make_lse(normalise=True), logits)
    out(str(fixed))
    return slipped, in_layer, fixed


if __name__ == "__main__":
    main()
