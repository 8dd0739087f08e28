"""Evaluation: the loss and accuracy of parameters on data, in evaluation mode (``key=None``),
and the checks and casts every entry point applies to its data."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import Array, Layer, Loss, Params, brief, call_forward, has_state

Accuracy = Callable[[Array, Array], Array]  # (y_pred, y_true) -> per-example 0/1, shape (batch,)


def check_xy(what: str, x, y) -> tuple[Array, Array]:
    """``(x, y)`` if both are arrays with the same non-zero number of examples on axis 0."""
    if not hasattr(x, "shape") or not hasattr(y, "shape"):
        raise TypeError(f"{what}: x and y must be arrays with a leading batch axis, got "
                        f"{type(x).__name__} and {type(y).__name__}. Fix: pass np.asarray(...).")
    if len(x.shape) < 1 or len(y.shape) < 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"{what}: x has shape {tuple(x.shape)} and y has shape "
                         f"{tuple(y.shape)}; both need the same non-zero number of examples "
                         f"on axis 0. Fix: pass matching inputs and targets.")
    return x, y


def check_values(what: str, net: Layer, params, x, y) -> None:
    """Checks the *values* of a data set, once (on the host, never per step): no nan or inf in
    floating ``x`` or ``y``, and integer class labels ``(batch,)`` within the network's
    outputs ``[0, classes)``."""
    for name, a in (("x", x), ("y", y)):
        a = np.asarray(jax.device_get(a))
        if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
            bad = ~np.isfinite(a.reshape(len(a), -1))
            raise ValueError(
                f"{what}: {name} holds {int(bad.sum())} non-finite value(s) (nan or inf), the "
                f"first in row {int(np.argmax(bad.any(axis=1)))}; training on them gives nan "
                f"losses. Fix: drop or impute those rows, e.g. {name}[np.isfinite({name}).all(1)].")
    labels = np.asarray(jax.device_get(y))
    if labels.ndim == 2 and np.issubdtype(labels.dtype, np.integer):
        _check_token_labels(what, net, params, x, labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        return
    out = _output_shape(net, params, x)
    classes = out.shape[-1] if len(out.shape) == 2 else 0
    if classes > 1 and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(
            f"{what}: y holds class labels in [{labels.min()}, {labels.max()}], but the network "
            f"has {classes} outputs, so labels must be in [0, {classes}). Fix: relabel the "
            f"classes 0..{classes - 1}, or give the last layer as many outputs as classes.")


def _output_shape(net: Layer, params, x):
    """The shape and dtype of ``net``'s output on one row of ``x`` (a training forward, so a
    network with state needs none)."""
    return jax.eval_shape(lambda p, xs: net.forward(p, xs, key=jax.random.key(0))[0], params,
                          x[:1])


def _check_token_labels(what: str, net: Layer, params, x, labels: np.ndarray) -> None:
    """Integer targets ``(batch, T)`` of a network with ``(batch, T, vocab)`` outputs (a
    sequence model) must be token ids in ``[0, vocab)`` or ``-1`` (a position left out)."""
    out = _output_shape(net, params, x)
    if len(out.shape) != 3 or out.shape[1] != labels.shape[1]:
        return
    vocab = out.shape[-1]
    if labels.min() < -1 or labels.max() >= vocab:
        raise ValueError(
            f"{what}: y holds token targets in [{labels.min()}, {labels.max()}], but the network "
            f"has {vocab} outputs per position, so targets must be in [0, {vocab}) or -1 (no "
            f"target there). Fix: encode the tokens 0..{vocab - 1}, or give the last layer as "
            f"many outputs as tokens.")


def token_accuracy(y_pred: Array, y_true: Array) -> Array:
    """Per-sequence token accuracy ``(batch,)``: the fraction of the counted positions of each
    sequence whose ``argmax`` logit is the target (integer targets ``(batch, T)``, ``-1`` not
    counted; or one-hot ``(batch, T, vocab)``, a zero row not counted), 0 with none counted.
    The mean over a batch whose sequences count equally many positions is the token accuracy."""
    if y_true.ndim == 3:
        counted = jnp.sum(y_true, axis=-1) > 0
        y_true = jnp.argmax(y_true, axis=-1)
    else:
        counted = y_true >= 0
    hit = (jnp.argmax(y_pred, axis=-1) == y_true) & counted
    n = jnp.maximum(jnp.sum(counted, axis=1), 1)
    return (jnp.sum(hit, axis=1) / n).astype(jnp.result_type(float))


def as_inputs(params, x, y) -> tuple[Array, Array]:
    """Floating data in the parameters' float dtype; integer labels as int32."""
    floats = [leaf.dtype for leaf in jax.tree_util.tree_leaves(params)
              if jnp.issubdtype(leaf.dtype, jnp.floating)]
    dtype = jnp.result_type(*floats) if floats else jnp.result_type(float)

    def cast(a):
        a = jnp.asarray(a)
        if jnp.issubdtype(a.dtype, jnp.floating):
            return a.astype(dtype)
        if jnp.issubdtype(a.dtype, jnp.integer) or a.dtype == jnp.bool_:
            return a.astype(jnp.int32)
        return a

    return cast(x), cast(y)


@functools.cache  # one function per loss, so compiled evaluations are shared
def accuracy_for(loss: Loss) -> Accuracy:
    """The usual classification accuracy for ``loss``, per example (1.0 correct, 0.0 not).

    Integer labels ``(batch,)`` or one-hot targets with several outputs: ``argmax`` matches.
    One output (binary): the prediction is positive when above 0 for logits
    (``sigmoid_binary_cross_entropy``), above 0.5 for probabilities (anything else).
    ``token_cross_entropy``: :func:`token_accuracy`, the fraction of positions predicted.
    """
    if loss.name == "token_cross_entropy":  # a sequence model: the accuracy per position
        return token_accuracy
    threshold = 0.0 if loss.name == "sigmoid_binary_cross_entropy" else 0.5

    def accuracy(y_pred, y_true):
        if y_true.ndim == 1 and jnp.issubdtype(y_true.dtype, jnp.integer):
            hit = jnp.argmax(y_pred, axis=-1) == y_true
        elif y_pred.shape[-1] > 1:
            hit = jnp.argmax(y_pred, axis=-1) == jnp.argmax(y_true, axis=-1)
            hit = jnp.all(hit.reshape(hit.shape[0], -1), axis=1)
        else:
            hit = (y_pred > threshold) == (y_true > 0.5)
            hit = jnp.all(hit.reshape(hit.shape[0], -1), axis=1)
        return hit.astype(jnp.result_type(float))

    return accuracy


def accuracy_fn(loss: Loss, accuracy) -> Accuracy | None:
    """The accuracy ``accuracy`` asks for: ``"auto"`` (:func:`accuracy_for`), ``None`` or yours."""
    if accuracy is None:
        return None
    if isinstance(accuracy, str):
        if accuracy != "auto":
            raise ValueError(f"accuracy={accuracy!r}: expected 'auto', None or a callable "
                             f"(y_pred, y_true) -> per-example 0/1 of shape (batch,).")
        return accuracy_for(loss)
    if not callable(accuracy):
        raise TypeError(f"accuracy={accuracy!r} must be 'auto', None or a callable "
                        f"(y_pred, y_true) -> per-example 0/1 of shape (batch,).")
    return accuracy


def _evaluate_impl(params, x, y, net, loss, accuracy, layer_state=None):
    y_pred, _ = call_forward(net, params, x, state=layer_state)
    out = {"loss": loss.value(y_pred, y)}
    if accuracy is not None:
        out["accuracy"] = jnp.mean(accuracy(y_pred, y))
    return out


# Checked and cast inputs in, device scalars out: {"loss": J, "accuracy": a}.
evaluate_arrays = jax.jit(_evaluate_impl, static_argnames=("net", "loss", "accuracy"))


def metrics_of(params, splits, *, net: Layer, loss: Loss, accuracy: Accuracy | None,
               layer_state=None) -> dict:
    """``{"<name>_loss": float, "<name>_accuracy": float, ...}`` for each ``(name, (x, y))`` in
    ``splits`` (checked and cast data), in that order (with the network's ``layer_state``)."""
    record = {}
    for prefix, (xs, ys) in splits:
        out = evaluate_arrays(params, xs, ys, net=net, loss=loss, accuracy=accuracy,
                              layer_state=layer_state)
        for k in ("loss", "accuracy"):
            if k in out:
                record[f"{prefix}_{k}"] = float(out[k])
    return record


def evaluate(net: Layer, loss: Loss, params: Params, x, y, *, accuracy="auto",
             layer_state=None) -> dict:
    """Loss (without penalties) and accuracy of ``params`` on ``(x, y)``, in evaluation mode.

    ``layer_state``: a network with state's (batch norm's running statistics, e.g.
    ``FitResult.layer_state``); required for such a network.

    Returns:
      ``{"loss": float, "accuracy": float}`` (no ``"accuracy"`` when ``accuracy=None``).
    """
    x, y = as_inputs(params, *check_xy("evaluate", x, y))
    if has_state(net) and layer_state is None:
        raise ValueError(
            f"evaluate: {brief(net.name)} has state (running statistics) that evaluation uses, but "
            f"layer_state was not given. Fix: evaluate(..., layer_state=result.layer_state) "
            f"with the FitResult of fit, or bp.init_layer_state(net, params).")
    out = evaluate_arrays(params, x, y, net=net, loss=loss, accuracy=accuracy_fn(loss, accuracy),
                          layer_state=layer_state)
    return {k: float(out[k]) for k in ("loss", "accuracy") if k in out}


__all__ = ["Accuracy", "accuracy_fn", "accuracy_for", "as_inputs", "check_values", "check_xy",
           "evaluate",
           "evaluate_arrays", "metrics_of", "token_accuracy"]
