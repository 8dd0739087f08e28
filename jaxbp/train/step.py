"""One optimisation step, ``jit``-compiled: the update every training program is built from.

For either gradient source and any optax optimizer::

    J, dJ/dtheta = grad(net, loss, l1=, l2=)(theta, x_batch, y_batch, key=key)
    u, opt_state = optimizer.update(dJ/dtheta, opt_state, theta)
    theta <- theta + u
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from jaxbp._compile import Jitted, check_compiler_options
from jaxbp._core import Layer, Loss, check_state_threaded
from jaxbp._validate import require_optimizer
from jaxbp.gradients import backprop, gradient_source
from jaxbp.optim import apply_updates


def update_with_grads(grad_fn, optimizer) -> Callable:
    """The update of one step, ``update(params, opt_state, x, y, key, layer_state=None) ->
    (params, opt_state, J, grads, layer_state)``: ``grad_fn``'s gradients through
    ``optimizer``, applied; ``J`` the objective at the parameters passed in, ``grads`` its
    gradient there; ``layer_state`` (a network with state's, else ``None``) after the step."""
    def update(params, opt_state, x, y, key, layer_state=None):
        if layer_state is None:
            value, grads = grad_fn(params, x, y, key=key)
        else:
            value, grads, layer_state = grad_fn(params, x, y, key=key, state=layer_state)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return apply_updates(params, updates), opt_state, value, grads, layer_state

    return update


def update_fn(grad_fn, optimizer) -> Callable:
    """:func:`update_with_grads` without the gradients: ``update(params, opt_state, x, y,
    key, layer_state=None) -> (params, opt_state, J, layer_state)`` (the same traced program;
    unused outputs are dropped)."""
    full = update_with_grads(grad_fn, optimizer)

    def update(params, opt_state, x, y, key, layer_state=None):
        params, opt_state, value, _, layer_state = full(params, opt_state, x, y, key,
                                                         layer_state)
        return params, opt_state, value, layer_state

    return update


def compiled_update(where: str, program: Callable[[Callable], Callable], net: Layer, loss: Loss,
                    optimizer, grad, *, l1, l2, regularize, donate, compiler_options) -> Jitted:
    """``program(update)`` compiled, after checking the arguments a training program takes.

    Shared by :func:`make_train_step` and :func:`~jaxbp.train.make_train_epoch`: both check
    the optimizer, the gradient source and ``compiler_options`` alike, and compile a function
    ``(params, opt_state, ...)`` that donates ``params`` and ``opt_state`` when ``donate``.
    """
    require_optimizer(where, optimizer)
    check_state_threaded(where, net)
    options = check_compiler_options(where, compiler_options)
    grad_fn = gradient_source(grad, where)(net, loss, l1=l1, l2=l2, regularize=regularize)
    return Jitted(program(update_fn(grad_fn, optimizer)), options,
                  donate_argnums=(0, 1) if donate else ())


def make_train_step(net: Layer, loss: Loss, optimizer: optax.GradientTransformation,
                    grad=backprop, *, l1: float = 0.0, l2: float = 0.0, regularize=None,
                    donate: bool = False, compiler_options=None):
    """One ``jit``-compiled optimisation step.

    Args:
      net: the network.
      loss: the loss (mean over the batch).
      optimizer: any ``optax.GradientTransformation`` — hand-written (``bp.optim.adam(1e-3)``)
        or optax's (``optax.adam(1e-3)``).
      grad: the gradient source, ``bp.backprop`` (hand-derived) or ``bp.autodiff`` (``jax.grad``),
        or its name.
      l1, l2: penalties ``l1 sum|w| + (l2/2) sum w^2`` on the weights (see ``bp.backprop``).
      regularize: which leaves are penalised (see ``bp.backprop``).
      donate: donate ``params`` and ``opt_state`` to the step, so XLA updates them in place;
        the arrays passed in are then invalid after the call (use the returned ones).
      compiler_options: XLA options: ``None`` (XLA's defaults), ``"auto"`` (per-step speed for
        long runs: a tiny program on CPU is compiled without matmul-library calls and threads,
        up to ~2.5x faster steps for up to ~0.25 s more compilation; decided at the first call)
        or a dict for ``jax.jit``. See ``docs/training.md``.

    Returns:
      ``step(params, opt_state, x, y, key=None, state=None) -> (params, opt_state, metrics)``
      with ``metrics = {"loss": J}``, the objective (loss plus penalties) at the parameters
      passed in. ``key`` feeds stochastic layers (dropout) and puts batch norm in training
      mode; ``None`` runs them in evaluation mode. For a network with state (batch norm) pass
      ``state=`` (its layer state, :func:`jaxbp.init_layer_state`): the step then returns
      ``(params, opt_state, metrics, state)`` with the state after the step.

    Examples:
      >>> import jax, jax.numpy as jnp, jaxbp as bp
      >>> net = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1))
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> opt = bp.optim.momentum(0.1)
      >>> step = bp.make_train_step(net, bp.mse(), opt)
      >>> params, opt_state, metrics = step(params, opt.init(params), jnp.ones((8, 2)),
      ...                                   jnp.zeros((8, 1)))
    """
    def program(update):
        def step(params, opt_state, x, y, key=None, state=None):
            params, opt_state, value, new_state = update(params, opt_state, x, y, key, state)
            if state is None:
                return params, opt_state, {"loss": value}
            return params, opt_state, {"loss": value}, new_state

        return step

    return compiled_update("make_train_step", program, net, loss, optimizer, grad, l1=l1, l2=l2,
                           regularize=regularize, donate=donate,
                           compiler_options=compiler_options)


__all__ = ["compiled_update", "make_train_step", "update_fn", "update_with_grads"]
