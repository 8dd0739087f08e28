"""Combinators beyond :func:`jaxbp.serial`: layers made of layers, themselves a ``Layer``.

``residual(block)`` adds a skip connection around ``block``::

    y = x + block(x)                      same shape as x

Backward, given ``dy``: ``x`` feeds two paths (the identity and the block), and the adjoint of
such a fan-out is the *sum* of the cotangents coming back along each path::

    dparams_block, dx_block = block.backward(params, cache, dy)    dL/d(block output) = dy
    dx = dy + dx_block

Params are ``(block_params,)`` — one entry per sublayer, as in ``serial``; so is the state of
a block with batch norm, ``(block_state,)``. Its
:class:`~jaxbp.Wiring` (``y = x + run(0, params[0], x, key)``) tells the checker that the
block's input is ``x`` and, by autodiff of that line, that the cotangent reaching the block's
output is ``dy``; so a slip inside the block is located there.

The branching combinators (``fan_out``, ``branches``, ``add``, ``concat``) are in
:mod:`jaxbp.layers.branching`.
"""

from __future__ import annotations

from jaxbp._core import (Layer, Wiring, call_forward, check_dy, check_float_input,
                         check_input_shape, split_key, substate_rule, substates)
from jaxbp._validate import require_layer
from jaxbp.layers._shared import check_array, shape_token, token_shape


def residual(block: Layer) -> Layer:
    """``y = x + block(x)``; backward ``dx = dy + dx_block`` (the fan-out of ``x`` sums).

    ``block`` must map a shape to itself (a ``serial`` of layers that keep the width, e.g.
    ``layer_norm → dense(4d) → gelu → dense(d)``). Params are ``(block_params,)``.

    Examples:
      >>> import jax, jaxbp as bp
      >>> block = bp.residual(bp.serial(bp.dense(8), bp.tanh(), bp.dense(4)))
      >>> params, shape = block.init(jax.random.key(0), (4,))
      >>> shape, len(params)
      ((4,), 1)
    """
    require_layer("residual", block, "block", "bp.serial(bp.dense(8), bp.relu(), bp.dense(4))")
    name = f"residual({block.name})"

    def init(key, input_shape):
        shape = check_input_shape(name, input_shape)
        params, out_shape = block.init(key, shape)
        if tuple(out_shape) != shape:
            raise ValueError(
                f"{name}: the block maps input_shape={shape} to {tuple(out_shape)}, but a "
                f"residual connection adds its output to its input, so the shapes must match. "
                f"Fix: end the block with a layer of width {shape[-1]}, e.g. dense({shape[-1]}).")
        return (params,), shape

    def check_params(params):
        if not (isinstance(params, tuple) and len(params) == 1):
            raise ValueError(
                f"{name}: params must be a 1-tuple (block_params,), got "
                f"{type(params).__name__}. Fix: pass the params returned by this layer's init.")

    def forward(params, x, *, key=None, state=None):
        check_params(params)
        check_array(name, x)
        check_float_input(name, x)  # x + block(x) would promote integer data silently
        # The key as serial hands it to its one sublayer, so the checker's walk sees the same mask.
        y, cache = call_forward(block, params[0], x, key=split_key(key, 1)[0],
                                state=substates(name, (block,), state)[0])
        if tuple(y.shape) != tuple(x.shape):
            raise ValueError(
                f"{name}: the block maps x of shape {tuple(x.shape)} to {tuple(y.shape)}, but a "
                f"residual connection adds its output to its input, so the shapes must match. "
                f"Fix: pass the params this layer's init returned for this input shape.")
        return x + y, (cache, shape_token(x))

    def backward(params, cache, dy):
        check_params(params)
        cache, token = cache
        check_dy(name, dy, token_shape(token))
        dparams, dx_block = block.backward(params[0], cache, dy)
        return (dparams,), dy + dx_block  # x fans out to the identity and the block: sum

    def skip(run, params, x, key=None):
        return x + run(0, params[0], x, split_key(key, 1)[0])

    return Layer(init, forward, backward, name, (block,), Wiring(skip),
                 substate_rule((block,), lambda cache: cache[:1]))


__all__ = ["residual"]
