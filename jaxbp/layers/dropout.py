"""Inverted dropout: random units are zeroed in training and the survivors scaled up.

Forward with a key (training), drop probability ``p``::

    m = keep / (1 - p),  keep ~ Bernoulli(1 - p) elementwise     same shape as x
    y = x * m

so ``E[y] = x`` and evaluation (``key=None``) is the identity ``y = x`` with no rescaling.
Backward: ``dx = dy * m`` — the mask drawn in the forward is kept in the cache, so backward
uses exactly the units that were dropped. In evaluation mode ``dx = dy``.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from jaxbp._core import Layer, check_dy
from jaxbp._validate import fail, probability
from jaxbp.layers._shared import check_array, same_shape_init, shape_token, token_shape

_DROP_PROB = " — the chance of dropping a unit (not of keeping it)"


def dropout(drop_prob: float) -> Layer:
    """Inverted dropout with drop probability ``drop_prob`` (no params).

    Forward: ``y = x * m`` with ``m = Bernoulli(1 - drop_prob) / (1 - drop_prob)`` drawn from the
    explicit ``key``; ``y = x`` when ``key is None`` (evaluation). Backward: ``dx = dy * m``
    (``dx = dy`` in evaluation), ``m`` read from the cache.

    Args:
      drop_prob: probability of zeroing a unit, in ``[0, 1)``. (Not the keep probability of
        ``stax.Dropout``.)

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> layer = bp.dropout(0.5)
      >>> y, mask = layer.forward((), jnp.ones((2, 4)), key=jax.random.key(0))
      >>> sorted(set(y.ravel().tolist())) in ([0.0, 2.0], [0.0], [2.0])
      True
    """
    if isinstance(drop_prob, bool) or not isinstance(drop_prob, numbers.Real):
        # not a number at all (a string, a bool): the same ValueError as any bad probability
        fail("dropout", "drop_prob", drop_prob, "a probability in [0, 1)", "dropout(0.1)",
             detail=_DROP_PROB)
    p = probability("dropout", "drop_prob", drop_prob, "dropout(0.1)", detail=_DROP_PROB)
    name = f"dropout({p:g})"

    def forward(params, x, *, key=None):
        check_array(name, x)
        if key is None:
            return x, shape_token(x, bool)  # evaluation: no mask, only y's shape (a bool token)
        keep = jax.random.bernoulli(key, 1.0 - p, x.shape)
        mask = keep.astype(x.dtype) / jnp.asarray(1.0 - p, x.dtype)
        return x * mask, mask

    def backward(params, mask, dy):
        evaluation = mask.dtype == bool  # the token of evaluation mode; a mask is float
        check_dy(name, dy, token_shape(mask) if evaluation else mask.shape)
        return (), dy if evaluation else dy * mask

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(same_shape_init(name), jax.jit(forward), jax.jit(backward), name)
