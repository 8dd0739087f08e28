"""Losses with their hand-derived gradients ``dL/dy_pred``.

Every loss returns a scalar averaged over the batch, and its ``grad`` carries that ``1/n``
factor. Where the output nonlinearity and the loss cancel algebraically the pair is fused:
``sigmoid_binary_cross_entropy`` and ``softmax_cross_entropy`` take *logits* ``z`` and have
``dL/dz = (p - y) / batch``, which is both cheaper and stable at any logit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Array, Loss


def _shape(name: str, arg: str, v) -> tuple[int, ...]:
    shape = getattr(v, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: {arg} must be an array, got {type(v).__name__}. "
                        f"Fix: pass jnp.asarray({arg}).")
    if len(shape) < 1:
        raise ValueError(f"{name}: {arg} has shape {tuple(shape)}, but a leading batch axis is "
                         f"expected. Fix: pass a batch, e.g. {arg}[None].")
    dtype = getattr(v, "dtype", None)
    if arg == "y_pred" and dtype is not None and not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"{name}: y_pred has dtype {dtype}, but the network's output (floating "
                        f"point) is expected. Fix: pass the prediction, not the labels, or "
                        f"y_pred.astype(jnp.float32).")
    return tuple(shape)


def _same_shape(name: str, y_pred, y_true) -> None:
    p, t = _shape(name, "y_pred", y_pred), _shape(name, "y_true", y_true)
    if p != t:
        fix = (f" Fix: reshape y_true to {p}, e.g. y_true.reshape({p[0]}, -1)."
               if len(t) == 1 and p == (*t, 1) else
               f" Fix: make y_true shape {p} (the network's output shape).")
        raise ValueError(
            f"{name}: y_true has shape {t} but y_pred has shape {p}; they must match exactly "
            f"(no broadcasting, which would silently compare every prediction with every "
            f"target).{fix}"
        )


def _n(x: Array) -> int:
    return x.size


def mse() -> Loss:
    """Mean squared error over all elements.

    ``L = (1/n) sum (y_pred - y_true)^2`` with ``n = y_pred.size`` (batch times outputs);
    ``dL/dy_pred = 2 (y_pred - y_true) / n``.
    """
    name = "mse"

    def value(y_pred, y_true):
        _same_shape(name, y_pred, y_true)
        return jnp.mean((y_pred - y_true) ** 2)

    def grad(y_pred, y_true):
        _same_shape(name, y_pred, y_true)
        return 2.0 * (y_pred - y_true) / _n(y_pred)

    return Loss(value, grad, name)


def _clip_straight_through(p: Array) -> Array:
    # The value uses p clipped into [eps, 1 - eps] so log never sees 0; the derivative passes
    # straight through the clip (d p_c / d p = 1) so a saturated wrong prediction still gets
    # a finite, correctly signed gradient instead of the zero a plain clip would give.
    eps = jnp.finfo(p.dtype).eps
    return p + jax.lax.stop_gradient(jnp.clip(p, eps, 1.0 - eps) - p)


def binary_cross_entropy() -> Loss:
    """Binary cross-entropy on probabilities ``p`` in ``[0, 1]``, mean over all elements.

    ``L = -(1/n) sum [y log p + (1 - y) log(1 - p)]``;
    ``dL/dp = (p - y) / (p (1 - p)) / n``.

    ``p`` is clipped to ``[eps, 1 - eps]`` (``eps`` the dtype's machine epsilon) inside the logs,
    with the derivative passed straight through the clip, so ``p`` exactly 0 or 1 gives finite
    values and gradients. On logits use :func:`sigmoid_binary_cross_entropy` instead: it never
    saturates.
    """
    name = "binary_cross_entropy"

    def value(y_pred, y_true):
        _same_shape(name, y_pred, y_true)
        p = _clip_straight_through(y_pred)
        return -jnp.mean(y_true * jnp.log(p) + (1.0 - y_true) * jnp.log1p(-p))

    def grad(y_pred, y_true):
        _same_shape(name, y_pred, y_true)
        p = _clip_straight_through(y_pred)
        return (-(y_true / p) + (1.0 - y_true) / (1.0 - p)) / _n(y_pred)

    return Loss(value, grad, name)


def sigmoid_binary_cross_entropy() -> Loss:
    """Binary cross-entropy on logits ``z`` (sigmoid fused in), mean over all elements.

    ``L = (1/n) sum [max(z, 0) - z y + log(1 + exp(-|z|))]``, which equals
    ``-(1/n) sum [y log s(z) + (1 - y) log(1 - s(z))]`` but never overflows;
    ``dL/dz = (sigmoid(z) - y) / n``.
    """
    name = "sigmoid_binary_cross_entropy"

    def value(y_pred, y_true):
        _same_shape(name, y_pred, y_true)
        z = y_pred
        return jnp.mean(jnp.maximum(z, 0.0) - z * y_true + jnp.log1p(jnp.exp(-jnp.abs(z))))

    def grad(y_pred, y_true):
        _same_shape(name, y_pred, y_true)
        return (jax.nn.sigmoid(y_pred) - y_true) / _n(y_pred)

    return Loss(value, grad, name)


def _targets(name: str, logits, y_true) -> Array:
    """Integer labels ``(batch,)`` become one-hot; ``(batch, k)`` targets pass through."""
    p, t = _shape(name, "y_pred", logits), _shape(name, "y_true", y_true)
    if len(p) != 2:
        raise ValueError(f"{name}: y_pred (logits) must have shape (batch, classes), got {p}. "
                         f"Fix: end the network with dense(classes), and flatten() before it "
                         f"for images or sequences.")
    if t == p:
        return y_true
    if t == p[:1]:
        if not jnp.issubdtype(y_true.dtype, jnp.integer):
            raise TypeError(
                f"{name}: y_true has shape {t} with dtype {y_true.dtype}; labels of shape (batch,) "
                f"must be integer class indices in [0, {p[1]}). Fix: y_true.astype(jnp.int32), "
                f"or pass one-hot targets of shape {p}.")
        return jax.nn.one_hot(y_true, p[1], dtype=logits.dtype)
    fix = (f"y_true.reshape({p[0]}) for integer labels" if t == (p[0], 1) else
           f"integer labels of shape {p[:1]} or one-hot targets of shape {p}")
    raise ValueError(
        f"{name}: y_true has shape {t} but y_pred (logits) has shape {p}; expected integer "
        f"labels of shape {p[:1]} or one-hot targets of shape {p}. Fix: {fix}.")


def _log_softmax(z: Array) -> Array:
    m = jax.lax.stop_gradient(jnp.max(z, axis=-1, keepdims=True))  # shift so exp <= 1
    s = z - m
    return s - jnp.log(jnp.sum(jnp.exp(s), axis=-1, keepdims=True))


def softmax_cross_entropy() -> Loss:
    """Cross-entropy on logits with the softmax fused in, mean over the batch.

    ``L = (1/batch) sum_b [logsumexp(z_b) - sum_k y_bk z_bk]`` for one-hot (or probability)
    targets ``y`` of shape ``(batch, classes)``, or integer labels of shape ``(batch,)``;
    ``dL/dz = (softmax(z) - y) / batch`` (targets summing to one). The log-sum-exp is shifted by
    the row maximum, so logits of any magnitude are safe.
    """
    name = "softmax_cross_entropy"

    def value(y_pred, y_true):
        y = _targets(name, y_pred, y_true)
        return -jnp.sum(y * _log_softmax(y_pred)) / y_pred.shape[0]

    def grad(y_pred, y_true):
        y = _targets(name, y_pred, y_true)
        p = jnp.exp(_log_softmax(y_pred))
        if np.ndim(y_true) == 1:  # integer labels: exact one-hot rows, which sum to one
            return (p - y) / y_pred.shape[0]
        # General targets: dL/dz = p * sum_k y_k - y, which is p - y when each row sums to one.
        return (p * jnp.sum(y, axis=-1, keepdims=True) - y) / y_pred.shape[0]

    return Loss(value, grad, name)


#: The target of a position that :func:`token_cross_entropy` leaves out (no loss, no gradient).
IGNORE = -1


def _token_targets(name: str, logits, y_true) -> Array:
    """Targets ``(batch, T, vocab)`` for rank-3 logits: integer labels ``(batch, T)`` become
    one-hot (an ``IGNORE`` label an all-zero row); one-hot or probability targets pass through."""
    p, t = _shape(name, "y_pred", logits), _shape(name, "y_true", y_true)
    if len(p) != 3:
        raise ValueError(f"{name}: y_pred (logits) must have shape (batch, time, vocab), got {p}. "
                         f"Fix: end the network with dense(vocab) on (batch, time, d) sequences; "
                         f"for one label per example use softmax_cross_entropy.")
    if t == p:
        return y_true
    if t == p[:2]:
        if not jnp.issubdtype(y_true.dtype, jnp.integer):
            raise TypeError(
                f"{name}: y_true has shape {t} with dtype {y_true.dtype}; targets of shape "
                f"(batch, time) must be integer token ids in [0, {p[2]}) or {IGNORE}. Fix: "
                f"y_true.astype(jnp.int32), or pass one-hot targets of shape {p}.")
        return jax.nn.one_hot(y_true, p[2], dtype=logits.dtype)  # IGNORE -> a row of zeros
    raise ValueError(
        f"{name}: y_true has shape {t} but y_pred (logits) has shape {p}; expected integer "
        f"targets of shape {p[:2]} or one-hot targets of shape {p}. Fix: one target per "
        f"position, e.g. the input sequence shifted by one step.")


def _per_sequence(y: Array) -> Array:
    """``1 / n_b`` as ``(batch, 1, 1)``: ``n_b = sum_{t,k} y_btk`` positions counted in sequence
    ``b`` (at least 1, so a sequence with none contributes 0, not nan)."""
    return 1.0 / jnp.maximum(jnp.sum(y, axis=(1, 2), keepdims=True), 1.0)


def token_cross_entropy() -> Loss:
    """Softmax cross-entropy at every position of a sequence, mean over positions then batch.

    For logits ``z: (batch, T, vocab)`` and one-hot targets ``y: (batch, T, vocab)`` — or
    integer targets ``(batch, T)`` in ``[0, vocab)``, ``IGNORE`` (-1) for a position without a
    target, which becomes an all-zero row of ``y``::

        L      = (1/batch) sum_b (1/n_b) sum_t [logsumexp(z_bt) sum_k y_btk - sum_k y_btk z_btk]
        dL/dz  = (p_bt sum_k y_btk - y_bt) / (batch n_b)       (batch, T, vocab)

    with ``p_bt = softmax(z_bt)`` and ``n_b = sum_{t,k} y_btk`` the positions counted in
    sequence ``b`` (``T`` without ignored ones; at least 1). A position with target ``IGNORE``
    (a zero row) adds nothing to the value or the gradient. Each sequence is a mean of its own,
    so the value of a batch equals the mean of its sequences' values, which is what
    :func:`weighted` (and so ``fit``) relies on. An integer target ``>= vocab`` is not caught
    under ``jit`` (its one-hot row is zero, as for ``IGNORE``); ``fit`` and ``evaluate`` check
    targets on the host first.

    Examples:
      >>> import jax.numpy as jnp, jaxbp as bp
      >>> loss = bp.token_cross_entropy()
      >>> z = jnp.zeros((1, 3, 4))                   # uniform over 4 tokens at 3 positions
      >>> round(float(loss.value(z, jnp.array([[2, -1, 0]]))), 4)   # log 4, the middle ignored
      1.3863
    """
    name = "token_cross_entropy"

    def value(y_pred, y_true):
        y = _token_targets(name, y_pred, y_true)
        per_position = -jnp.sum(y * _log_softmax(y_pred), axis=-1, keepdims=True)
        return jnp.sum(per_position * _per_sequence(y)) / y_pred.shape[0]

    def grad(y_pred, y_true):
        y = _token_targets(name, y_pred, y_true)
        p = jnp.exp(_log_softmax(y_pred))
        dz = p * jnp.sum(y, axis=-1, keepdims=True) - y
        return dz * (_per_sequence(y) / y_pred.shape[0])

    return Loss(value, grad, name)


def weighted(loss: Loss) -> Loss:
    """``loss`` with per-example weights: targets become ``(y_true, w)`` with ``w: (batch,)``.

    ``value = sum_i w_i l_i`` where ``l_i = loss.value(y_pred[i:i+1], y_true[i:i+1])`` is the
    loss of example ``i`` on its own, and row ``i`` of ``grad`` is ``w_i dl_i/dy_pred_i`` — still
    the loss's own hand-derived gradient, evaluated row by row with ``jax.vmap``. With
    ``w_i = 1 / batch`` this is the plain batch mean (every loss here is a mean over examples);
    a row with ``w_i = 0`` contributes exactly nothing, value or gradient. This is how padded
    rows of a ragged or device-split batch are masked.
    """

    name = f"weighted({loss.name})"

    def per_example(f, y_pred, y_true):
        return jax.vmap(lambda p, t: f(p[None], t[None]))(y_pred, y_true)

    def value(y_pred, y_true_w):
        y_true, w = _targets_and_weights(name, y_pred, y_true_w)
        return jnp.sum(w * per_example(loss.value, y_pred, y_true))

    def grad(y_pred, y_true_w):
        y_true, w = _targets_and_weights(name, y_pred, y_true_w)
        g = per_example(loss.grad, y_pred, y_true)[:, 0]
        return g * w.reshape((-1,) + (1,) * (g.ndim - 1)).astype(g.dtype)

    return Loss(value, grad, name)


def _targets_and_weights(name: str, y_pred, y_true_w) -> tuple[Array, Array]:
    """``(y_true, w)`` of a weighted loss, checked: both have ``y_pred``'s batch,
    ``w: (batch,)``."""
    if not (isinstance(y_true_w, (tuple, list)) and len(y_true_w) == 2):
        got = (f"a {type(y_true_w).__name__} of length {len(y_true_w)}"
               if isinstance(y_true_w, (tuple, list)) else
               f"an array of shape {tuple(y_true_w.shape)}" if hasattr(y_true_w, "shape") else
               type(y_true_w).__name__)
        raise TypeError(f"{name}: y_true must be a pair (y_true, w) with per-example weights "
                        f"w: (batch,), got {got}. Fix: pass (y_true, jnp.full(batch, 1 / batch)) "
                        f"for the plain mean, or use the unweighted loss.")
    y_true, w = y_true_w
    n = _shape(name, "y_pred", y_pred)[0]
    t, ws = _shape(name, "y_true", y_true), getattr(w, "shape", None)
    if t[0] != n or ws is None or tuple(ws) != (n,):
        raise ValueError(f"{name}: y_true has shape {t} and w has shape "
                         f"{None if ws is None else tuple(ws)}, but y_pred has {n} examples "
                         f"(shape {tuple(y_pred.shape)}); both need that leading batch axis, w "
                         f"exactly ({n},). Fix: one target row and one weight per example.")
    return y_true, w


LOSSES = {
    "mse": mse,
    "binary_cross_entropy": binary_cross_entropy,
    "sigmoid_binary_cross_entropy": sigmoid_binary_cross_entropy,
    "softmax_cross_entropy": softmax_cross_entropy,
    "token_cross_entropy": token_cross_entropy,
}


__all__ = [
    "mse",
    "binary_cross_entropy",
    "sigmoid_binary_cross_entropy",
    "softmax_cross_entropy",
    "token_cross_entropy",
    "weighted",
    "IGNORE",
]
