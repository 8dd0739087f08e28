"""Multi-head self-attention over ``(batch, T, d)`` sequences, with its backward written out.

Forward (``x: (batch, T, d)``, ``H`` heads of ``e = d / H`` features, ``P`` the attention
weights of one head)::

    [q | k | v] = x @ w_qkv + b_qkv          (batch, T, 3d)   three consecutive d-wide slices
    q_h, k_h, v_h                            (batch, T, e)    the h-th consecutive e features
    S_h = q_h k_h^T / sqrt(e)                (batch, T, T)    (causal: S[i, j] = -inf for j > i)
    P_h = softmax(S_h) over the last axis    (batch, T, T)
    O_h = P_h v_h                            (batch, T, e)
    y   = [O_1 | ... | O_H] @ w_o + b_o      (batch, T, d)

Backward, given ``dy: (batch, T, d)``, each line the chain rule through one line above::

    dw_o = O^T dy,  db_o = sum dy,  dO = dy w_o^T           (O the concatenated heads)
    dv_h = P_h^T dO_h                        (batch, T, e)
    dP_h = dO_h v_h^T                        (batch, T, T)
    dS_h = P_h * (dP_h - rowsum(dP_h * P_h)) (batch, T, T)   the softmax Jacobian, row by row
    dq_h = dS_h k_h / sqrt(e),  dk_h = dS_h^T q_h / sqrt(e)
    dw_qkv = x^T [dq | dk | dv],  db_qkv = sum [dq | dk | dv],  dx = [dq | dk | dv] w_qkv^T

A masked score has ``P = 0``, so ``dS = 0`` there: the mask needs no term of its own in the
backward. ``docs/derivations-attention.md`` derives each line.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxbp._core import Array, Layer, check_dy, check_float_input, check_param_shapes
from jaxbp._validate import fail, positive_int
from jaxbp.layers._matmul import weight_grad
from jaxbp.layers._sequence import check_sequence, sequence_shape
from jaxbp.layers._shared import bias_shape
from jaxbp.layers.initializers import Initializer, jitted_initializer


class AttentionParams(NamedTuple):
    """Parameters of :func:`multi_head_attention`: ``w_qkv: (d, 3d)``, ``b_qkv: (3d,)`` (the
    query, key and value projections side by side, in that order), ``w_o: (d, d)``,
    ``b_o: (d,)``."""

    w_qkv: Array
    b_qkv: Array
    w_o: Array
    b_o: Array


class AttentionCache(NamedTuple):
    """What backward needs: the input, the per-head ``q, k, v: (batch, H, T, e)``, the
    attention weights ``p: (batch, H, T, T)`` and the concatenated heads ``o: (batch, T, d)``."""

    x: Array
    q: Array
    k: Array
    v: Array
    p: Array
    o: Array


def _split_heads(a: Array, heads: int) -> Array:
    """``(batch, T, d) -> (batch, H, T, d / H)``: head ``h`` takes the h-th consecutive slice."""
    b, t, d = a.shape
    return a.reshape(b, t, heads, d // heads).transpose(0, 2, 1, 3)


def _merge_heads(a: Array) -> Array:
    """``(batch, H, T, e) -> (batch, T, H e)``, heads concatenated in order."""
    b, h, t, e = a.shape
    return a.transpose(0, 2, 1, 3).reshape(b, t, h * e)


def _rows(a: Array) -> Array:
    """``(batch, T, n) -> (batch T, n)``: every position of every sequence is one example."""
    return a.reshape(-1, a.shape[-1])


def multi_head_attention(num_heads: int, *, causal: bool = False,
                         w_init: str | Initializer = "glorot_uniform", dtype=None) -> Layer:
    """Multi-head self-attention ``(batch, T, d) -> (batch, T, d)`` with
    ``AttentionParams(w_qkv: (d, 3d), b_qkv: (3d,), w_o: (d, d), b_o: (d,))``.

    Forward: ``[q | k | v] = x w_qkv + b_qkv``; per head ``h`` (the h-th ``e = d / H`` features)
    ``P_h = softmax(q_h k_h^T / sqrt(e))``, ``O_h = P_h v_h``; ``y = [O_1 | ... | O_H] w_o + b_o``.
    With ``causal=True`` position ``i`` attends to positions ``j <= i`` only.

    Backward (``dy: (batch, T, d)``): ``dO = dy w_o^T``; ``dv_h = P_h^T dO_h``;
    ``dP_h = dO_h v_h^T``; ``dS_h = P_h * (dP_h - rowsum(dP_h * P_h))``;
    ``dq_h = dS_h k_h / sqrt(e)``, ``dk_h = dS_h^T q_h / sqrt(e)``; then ``dw_qkv``, ``db_qkv``
    and ``dx`` of the projection, as for :func:`dense`, from ``[dq | dk | dv]``.

    Args:
      num_heads: number of heads ``H``; must divide the model width ``d``.
      causal: mask the future (for autoregressive models).
      w_init: initialiser of each ``(d, d)`` projection (queries, keys, values and output are
        drawn separately); biases start at 0.
      dtype: parameter dtype; ``None`` uses JAX's default float.

    Examples:
      >>> import jax, jaxbp as bp
      >>> layer = bp.multi_head_attention(2, causal=True)
      >>> params, shape = layer.init(jax.random.key(0), (5, 8))
      >>> params.w_qkv.shape, shape
      ((8, 24), (5, 8))
    """
    heads = positive_int("multi_head_attention", "num_heads", num_heads,
                         "multi_head_attention(4)")
    causal = bool(causal)
    name = f"multi_head_attention({heads}{', causal' if causal else ''})"
    w_initializer = jitted_initializer(name, w_init)

    def init(key, input_shape):
        t, d = sequence_shape(name, input_shape)
        if d % heads:
            fail(name, "input_shape", tuple(input_shape),
                 f"a model width divisible by num_heads={heads}",
                 f"input_shape=({t}, {heads * max(1, round(d / heads))})")
        k_q, k_k, k_v, k_o = jax.random.split(key, 4)
        w_qkv = jnp.concatenate([w_initializer(k, (d, d), dtype) for k in (k_q, k_k, k_v)],
                                axis=1)
        w_o = w_initializer(k_o, (d, d), dtype).astype(w_qkv.dtype)
        zeros = jnp.zeros((3 * d,), w_qkv.dtype)
        return AttentionParams(w_qkv, zeros, w_o, zeros[:d]), (t, d)

    # the model width d is the input's, fixed by init: named, and consistent across the fields
    expected = {"w_qkv": ("d", "3d"), "b_qkv": ("3d",), "w_o": ("d", "d"), "b_o": ("d",)}

    def forward(params, x, *, key=None):
        check_param_shapes(name, params, expected)  # static shapes: trace time only
        w_qkv, b_qkv, w_o, b_o = params
        if w_qkv.shape[0] % heads:
            raise ValueError(
                f"{name}: params.w_qkv has shape {tuple(w_qkv.shape)}, but {heads} heads need "
                f"(d, 3d) with the width d divisible by {heads}. Fix: pass the params this "
                f"network's init returned (these look like the params of another network, e.g. "
                f"another width or number of heads).")
        check_float_input(name, x)
        _, t, d = check_sequence(name, x, w_qkv.shape[0])
        qkv = x @ w_qkv + bias_shape(b_qkv, 3)
        q, k, v = (_split_heads(qkv[..., i * d:(i + 1) * d], heads) for i in range(3))
        s = q @ jnp.swapaxes(k, -1, -2) / math.sqrt(d // heads)
        if causal:
            s = jnp.where(jnp.tril(jnp.ones((1, 1, t, t), bool)), s, -jnp.inf)
        # The row maximum is a constant shift (softmax is invariant to it), so no gradient.
        e = jnp.exp(s - jax.lax.stop_gradient(jnp.max(s, axis=-1, keepdims=True)))
        p = e / jnp.sum(e, axis=-1, keepdims=True)
        o = _merge_heads(p @ v)
        return o @ w_o + bias_shape(b_o, 3), AttentionCache(x, q, k, v, p, o)

    def backward(params, cache, dy):
        w_qkv, _, w_o, _ = params
        x, q, k, v, p, o = cache
        check_dy(name, dy, x.shape)
        scale = 1.0 / math.sqrt(q.shape[-1])
        dw_o, db_o = weight_grad(_rows(o), _rows(dy)), jnp.sum(dy, axis=(0, 1))
        do = _split_heads(dy @ w_o.T, heads)                    # (batch, H, T, e)
        dv = jnp.swapaxes(p, -1, -2) @ do
        dp = do @ jnp.swapaxes(v, -1, -2)                       # (batch, H, T, T)
        ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))
        dq = ds @ k * scale
        dk = jnp.swapaxes(ds, -1, -2) @ q * scale
        dqkv = jnp.concatenate([_merge_heads(g) for g in (dq, dk, dv)], axis=-1)
        dw_qkv = weight_grad(_rows(x), _rows(dqkv))
        db_qkv = jnp.sum(dqkv, axis=(0, 1))
        return AttentionParams(dw_qkv, db_qkv, dw_o, db_o), dqkv @ w_qkv.T

    # jit: an eager call compiles once per shape instead of once per primitive (inlined under
    # an outer jit). Argument checks depend only on static shapes, so they still run.
    return Layer(init, jax.jit(forward), jax.jit(backward), name)


__all__ = ["AttentionParams", "multi_head_attention"]
