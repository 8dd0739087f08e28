"""Two interchangeable gradient sources: hand-derived ``backprop`` and ``autodiff``.

Both return ``f(params, x, y, *, key=None) -> (loss_value, grads)`` for the objective

    J(params) = loss(net(params, x), y) + l1 * sum |w| + (l2 / 2) * sum w^2

where the penalties run over the *weights* only: by default every parameter leaf with two or
more dimensions (dense ``w``, conv kernels, recurrent matrices), not biases, norm scales or
shifts. Pass ``regularize=`` to choose differently.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import (Array, Layer, Loss, Params, call_forward, check_dparams,
                         check_state_threaded, same_treedef, update_layer_state)
from jaxbp._validate import fail, non_negative, one_of, require_layer, require_loss, traced

GradFn = Callable[..., tuple[Array, Params]]


def is_weight(leaf: Array) -> bool:
    """Default regularisation rule: leaves with ``ndim >= 2`` are weights; vectors are not."""
    return getattr(leaf, "ndim", 0) >= 2


def penalty_mask(params: Params, regularize) -> Params:
    """A pytree of Python bools, ``True`` where a leaf is penalised."""
    if regularize is None:
        return jax.tree_util.tree_map(is_weight, params)
    if callable(regularize):
        return jax.tree_util.tree_map(lambda leaf: bool(regularize(leaf)), params)
    p_struct = jax.tree_util.tree_structure(params)
    m_struct = jax.tree_util.tree_structure(regularize)
    if not same_treedef(p_struct, m_struct):
        raise ValueError(
            f"regularize: the mask pytree has structure {m_struct} but params have {p_struct}. "
            f"Fix: pass a pytree of bools shaped like params, or a callable leaf -> bool.")
    return regularize


def _on(coefficient) -> bool:
    """Whether a penalty term is computed: a non-zero coefficient, or a traced one (a sweep's
    per-run ``l1``/``l2``, whose value is unknown at trace time; zero then adds exactly 0)."""
    return traced(coefficient) or bool(coefficient)


def penalty(params: Params, *, l1: float = 0.0, l2: float = 0.0, regularize=None) -> Array:
    """``l1 * sum |w| + (l2 / 2) * sum w^2`` over the penalised leaves."""
    mask = penalty_mask(params, regularize)
    total = jnp.zeros((), jnp.result_type(*jax.tree_util.tree_leaves(params) or [jnp.float32]))
    for leaf, on in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(mask)):
        if on:
            if _on(l1):
                total = total + l1 * jnp.sum(jnp.abs(leaf))
            if _on(l2):
                total = total + 0.5 * l2 * jnp.sum(leaf * leaf)
    return total


def penalty_grad(params: Params, *, l1: float = 0.0, l2: float = 0.0, regularize=None) -> Params:
    """Hand-derived gradient of :func:`penalty`: ``l1 * sign(w) + l2 * w`` on penalised leaves.

    ``sign(0) = 0`` is the subgradient chosen at the kink of ``|w|``; zero elsewhere.
    """
    mask = penalty_mask(params, regularize)

    def g(leaf, on):
        if not on:
            return jnp.zeros_like(leaf)
        out = jnp.zeros_like(leaf)
        if _on(l1):
            out = out + l1 * jnp.sign(leaf)
        if _on(l2):
            out = out + l2 * leaf
        return out

    return jax.tree_util.tree_map(g, params, mask)


def check_net_and_loss(net: Layer, loss: Loss, where: str = "") -> None:
    """Raises a TypeError naming ``where`` (e.g. ``"fit"``) if ``net``/``loss`` are not jaxbp's."""
    require_layer(where, net, "net", "bp.serial(...)")
    require_loss(where, loss)


def check_batch(where: str, x, y) -> None:
    """Raises ``ValueError`` unless every leaf of ``x`` and ``y`` has the same non-zero number
    of examples on axis 0. Shapes are static, so under ``jit`` this runs once, at trace time.

    An empty batch would make every batch-mean loss ``0/0 = nan``; labels of another batch
    size than ``x`` would be broadcast or fail inside XLA.
    """
    sizes = []
    for name, tree in (("x", x), ("y", y)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            shape = tuple(np.shape(leaf))
            sizes.append((name + jax.tree_util.keystr(path), shape))
    if not sizes or not sizes[0][1]:
        return  # a scalar x: the layers and losses name what they expect
    n = sizes[0][1][0]
    if n == 0:
        raise ValueError(
            f"{where}: x has shape {sizes[0][1]}, an empty batch (0 examples); a batch-mean loss "
            f"of no examples is 0/0 = nan. Fix: pass at least one example, e.g. x[:1], y[:1].")
    for name, shape in sizes[1:]:
        if shape and shape[0] != n:
            raise ValueError(
                f"{where}: {name} has {shape[0]} examples (shape {shape}) but x has {n} "
                f"(shape {sizes[0][1]}); targets need one row per example. Fix: pass matching "
                f"x and y, e.g. y[:{n}] for x of {n} examples.")


def in_params_dtype(grads: Params, params: Params) -> Params:
    """``grads`` cast leaf by leaf to the dtype of ``params`` (a no-op where they agree), as
    ``jax.grad`` returns them: bfloat16 params with float32 ``x`` get bfloat16 gradients."""
    return jax.tree_util.tree_map(
        lambda g, p: g.astype(p.dtype) if hasattr(p, "dtype") and hasattr(g, "astype")
        and g.dtype != p.dtype else g, grads, params)


def _validate(where: str, net: Layer, loss: Loss, l1, l2) -> tuple:
    check_net_and_loss(net, loss, where)
    check_state_threaded(where, net)
    return tuple(c if traced(c) else non_negative(where, name, c, f"{name}=1e-4")
                 for name, c in (("l1", l1), ("l2", l2)))


def backprop(net: Layer, loss: Loss, *, l1: float = 0.0, l2: float = 0.0,
             regularize=None) -> GradFn:
    """Gradients by the hand-derived backward pass.

    Runs ``net.forward`` (keeping every layer's cache), ``loss.grad`` for ``dL/dy_pred``, then
    ``net.backward`` layer by layer in reverse, and adds the hand-derived penalty gradient.

    Args:
      net: the network, a :class:`Layer` (usually a ``serial``).
      loss: the :class:`Loss`.
      l1: coefficient of ``sum |w|`` over weights (gradient ``l1 * sign(w)``).
      l2: coefficient of ``(1/2) sum w^2`` over weights (gradient ``l2 * w``).
      regularize: which leaves are penalised: ``None`` (weights, ``ndim >= 2``), a callable
        ``leaf -> bool``, or a pytree of bools shaped like ``params``.

    Returns:
      ``f(params, x, y, *, key=None, state=None) -> (loss_value, grads)``; pure, so it can be
      ``jax.jit``-ed. For a network with state (batch norm) pass ``state=`` (the network's
      layer state): then ``f`` returns ``(loss_value, grads, new_state)``, the state after this
      forward (moved towards the batch's statistics in training mode, ``key`` given; unchanged
      in evaluation mode, where forward uses it). State is never differentiated.
      ``grads`` has the structure and, leaf by leaf, the dtype of ``params`` (the computation
      runs in the promoted dtype of params and ``x``, as ``jax.grad``'s does, and each
      gradient is cast to its parameter's dtype at the end, exactly as ``autodiff`` returns it).
      An empty batch, or ``y`` with another number of examples than ``x``, raises
      ``ValueError`` at trace time.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1))
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> x, y = jnp.ones((3, 2)), jnp.zeros((3, 1))
      >>> value, grads = bp.backprop(net, bp.mse())(params, x, y)
      >>> grads[0].w.shape
      (2, 4)
    """
    l1, l2 = _validate("backprop", net, loss, l1, l2)

    def value_and_grad(params, x, y, *, key=None, state=None):
        check_batch("backprop", x, y)
        y_pred, cache = call_forward(net, params, x, key=key, state=state)
        value = loss.value(y_pred, y)
        dparams, _ = net.backward(params, cache, loss.grad(y_pred, y))
        check_dparams("backprop", net, params, dparams)
        if _on(l1) or _on(l2):
            value = value + penalty(params, l1=l1, l2=l2, regularize=regularize)
            dreg = penalty_grad(params, l1=l1, l2=l2, regularize=regularize)
            dparams = jax.tree_util.tree_map(jnp.add, dparams, dreg)
        grads = in_params_dtype(dparams, params)
        if state is None:
            return value, grads
        return value, grads, update_layer_state(net, state, cache)

    return value_and_grad


def objective(net: Layer, loss: Loss, *, l1: float = 0.0, l2: float = 0.0,
              regularize=None) -> Callable[..., Array]:
    """The scalar objective ``J(params, x, y, *, key=None, state=None)`` that :func:`autodiff`
    differentiates (``state``: a network's layer state, used in evaluation mode)."""
    l1, l2 = _validate("objective", net, loss, l1, l2)
    j_and_cache = _objective_and_cache(net, loss, l1, l2, regularize)

    def j(params, x, y, *, key=None, state=None):
        return j_and_cache(params, x, y, key, state)[0]

    return j


def _objective_and_cache(net: Layer, loss: Loss, l1, l2, regularize) -> Callable:
    """``(params, x, y, key, state) -> (J, forward's cache)``: the objective, and what the
    layer state's update reads."""
    def j(params, x, y, key, state):
        y_pred, cache = call_forward(net, params, x, key=key, state=state)
        value = loss.value(y_pred, y)
        if _on(l1) or _on(l2):
            value = value + penalty(params, l1=l1, l2=l2, regularize=regularize)
        return value, cache

    return j


def autodiff(net: Layer, loss: Loss, *, l1: float = 0.0, l2: float = 0.0,
             regularize=None) -> GradFn:
    """Gradients by ``jax.value_and_grad`` of the same forward; same signature as
    :func:`backprop` (with ``state=``, ``(value, grads, new_state)``)."""
    l1, l2 = _validate("autodiff", net, loss, l1, l2)
    vg_cache = jax.value_and_grad(_objective_and_cache(net, loss, l1, l2, regularize),
                                  has_aux=True)

    def value_and_grad(params, x, y, *, key=None, state=None):
        check_batch("autodiff", x, y)
        (value, cache), grads = vg_cache(params, x, y, key, state)
        if state is None:
            return value, grads
        return value, grads, update_layer_state(net, state, cache)

    return value_and_grad


GRADIENTS = {"backprop": backprop, "autodiff": autodiff}


def gradient_source(grad, where: str = "", arg: str = "grad") -> Callable[..., GradFn]:
    """The gradient factory ``grad`` names: ``bp.backprop``, ``bp.autodiff``, their names, or
    any factory ``(net, loss, *, l1, l2, regularize) -> grad_fn``."""
    if isinstance(grad, str):
        return GRADIENTS[one_of(where, arg, grad, GRADIENTS, "a gradient source",
                                f"{arg}='backprop' or {arg}=bp.autodiff")]
    if not callable(grad):
        fail(where, arg, grad, "bp.backprop, bp.autodiff or their name (or a gradient factory)",
             f"{arg}=bp.backprop", error=TypeError)
    return grad


# --------------------------------------------------------------------------------------
# The custom_vjp bridge: a layer whose jax.grad runs its hand-derived backward.


def _check_backward_output(name: str, params, x, out):
    """Validates ``backward``'s ``(dparams, dx)`` against ``(params, x)``, naming the leaf."""
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"as_custom_vjp({name}): backward must return a pair (dparams, dx), got "
                        f"{type(out).__name__}. Fix: return dparams, dx.")
    dparams, dx = out
    tu = jax.tree_util
    want = {tu.keystr(p): leaf for p, leaf in tu.tree_leaves_with_path(params)}
    got = {tu.keystr(p): leaf for p, leaf in tu.tree_leaves_with_path(dparams)}
    if not same_treedef(tu.tree_structure(dparams), tu.tree_structure(params)):
        missing = [f"params{k}" for k in want if k not in got]
        extra = [f"dparams{k}" for k in got if k not in want]
        detail = "; ".join(s for s in (f"missing {', '.join(missing)}" if missing else "",
                                       f"unexpected {', '.join(extra)}" if extra else "") if s)
        raise ValueError(
            f"as_custom_vjp({name}): backward returned dparams with structure "
            f"{tu.tree_structure(dparams)}, but params have {tu.tree_structure(params)}"
            f"{' (' + detail + ')' if detail else ''}. Fix: return dparams shaped like params, "
            f"e.g. the same NamedTuple.")
    for key, p in want.items():
        if jnp.shape(got[key]) != jnp.shape(p):
            flip = " (transposed?)" if jnp.shape(got[key]) == jnp.shape(p)[::-1] else ""
            raise ValueError(
                f"as_custom_vjp({name}): dparams{key} has shape {jnp.shape(got[key])}, but "
                f"params{key} has shape {jnp.shape(p)}{flip}. Fix: the gradient of a leaf has "
                f"that leaf's shape.")
    dparams = jax.tree_util.tree_map(lambda g, p: jnp.asarray(g, jnp.result_type(p)),
                                     dparams, params)
    return dparams, _input_cotangent(name, x, dx)


def _input_cotangent(name: str, x, dx):
    """``dx`` checked against ``x`` and cast to its dtype, leaf by leaf for a tuple input;
    an integer input (token ids) takes the symbolic zero cotangent."""
    if isinstance(x, (tuple, list)):
        if not isinstance(dx, (tuple, list)) or len(dx) != len(x):
            raise ValueError(
                f"as_custom_vjp({name}): x is a tuple of {len(x)} arrays, but dx is "
                f"{type(dx).__name__}. Fix: return dx with the structure of x, one entry each.")
        return type(x)(_input_cotangent(name, xi, di) for xi, di in zip(x, dx))
    if not jnp.issubdtype(jnp.result_type(x), jnp.inexact):
        return np.zeros(jnp.shape(x), jax.dtypes.float0)
    if jnp.shape(dx) != jnp.shape(x):
        raise ValueError(f"as_custom_vjp({name}): dx has shape {jnp.shape(dx)}, but x has shape "
                         f"{jnp.shape(x)}. Fix: dx has the shape of the layer's input.")
    return jnp.asarray(dx, jnp.result_type(x))


def as_custom_vjp(layer: Layer) -> Callable[..., Array]:
    """The layer's forward as a function whose ``jax.grad`` runs the hand-derived ``backward``.

    ``apply(params, x, key=None) -> y`` is a ``jax.custom_vjp``: its forward runs
    ``layer.forward`` and keeps the cache; its VJP is ``layer.backward(params, cache, dy)``. So a
    manual derivation drops into any JAX code (``jax.grad``, ``jit``, ``vmap``, optax) in place of
    autodiff. The backward's output is checked at trace time: wrong structure or shape raises an
    error naming the leaf path (``params.w``).

    Args:
      layer: a :class:`Layer`.

    Returns:
      ``apply(params, x, key=None, state=None) -> y`` (``state``: a layer with state's, for
      evaluation mode; not differentiated).

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> layer = bp.dense(2)
      >>> params, _ = layer.init(jax.random.key(0), (3,))
      >>> apply = bp.as_custom_vjp(layer)
      >>> g = jax.grad(lambda p: jnp.sum(apply(p, jnp.ones((4, 3)))))(params)
      >>> g.b.tolist()   # d(sum y)/db = batch size, by the hand-derived db = sum_batch dy
      [4.0, 4.0]
    """
    require_layer("as_custom_vjp", layer)

    @jax.custom_vjp
    def apply(params, x, key, state):
        return call_forward(layer, params, x, key=key, state=state)[0]

    def fwd(params, x, key, state):
        y, cache = call_forward(layer, params, x, key=key, state=state)
        return y, (params, x, cache)

    def bwd(res, dy):
        params, x, cache = res
        dparams, dx = _check_backward_output(layer.name, params, x,
                                             layer.backward(params, cache, dy))
        return dparams, dx, None, None

    apply.defvjp(fwd, bwd)

    def call(params, x, key=None, state=None):
        return apply(params, x, key, state)

    call.__doc__ = f"{layer.name} with its hand-derived backward as the VJP."
    return call


__all__ = [
    "backprop",
    "autodiff",
    "objective",
    "penalty",
    "penalty_grad",
    "penalty_mask",
    "is_weight",
    "gradient_source",
    "as_custom_vjp",
]
