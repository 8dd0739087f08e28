"""The contracts everything else builds on: ``Layer``, ``Loss`` and ``serial``.

A layer is three pure functions (plus a name used in error messages and reports)::

    init:     (key, input_shape) -> (params, output_shape)
    forward:  (params, x, *, key=None) -> (y, cache)
    backward: (params, cache, dy) -> (dparams, dx)

``input_shape`` and ``output_shape`` exclude the batch axis; ``x`` and ``y`` carry it.
``backward`` is the hand-derived vector-Jacobian product of ``forward``: it must equal
``jax.vjp(lambda p, x: forward(p, x)[0], params, x)[1](dy)``.

Inputs and outputs may be tuples of arrays (a fan-out's output, the inputs of ``add``): then
``input_shape`` / ``output_shape`` are tuples of shapes and ``dx`` / ``dy`` have the structure
of ``x`` / ``y``. A combinator says how its sublayers are wired with a :class:`Wiring`.

A layer may also keep *state* that is not trained (batch norm's running statistics): it then
declares a :class:`StateRule` and its forward takes ``state=``::

    state.init:   (params) -> state                 the state a fresh network starts from
    forward:      (params, x, *, key=None, state=None) -> (y, cache)
    state.update: (state, cache) -> state           the state after a forward with that cache

In training mode (``key`` given) forward needs no state (batch norm uses the batch's
statistics) and ``update`` folds what the cache holds into it; in evaluation mode
(``key=None``) forward uses ``state`` and ``update`` returns it unchanged. ``backward`` is
unchanged: state is never differentiated. Layers without state leave the field ``None`` and
take no ``state=``; :func:`call_forward` calls either kind.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Params = Any  # a pytree of arrays
Cache = Any  # whatever forward keeps for backward
Shape = tuple[int, ...]
PRNGKey = jax.Array


class Wiring(NamedTuple):
    """How a combinator's sublayers are wired: its forward with every sublayer call abstracted.

    ``apply(run, params, x, key) -> y`` computes the combinator's output exactly as its
    ``forward`` does, except that each use of a sublayer is the call ``run(i, params_i, x_i,
    key_i)`` — standing for ``sublayers[i].forward(params_i, x_i, key=key_i)[0]`` — with the
    sublayer's own params (a part of ``params``), its actual input and its key. From it a tool
    learns, without knowing the combinator, every sublayer's input (``run`` records it) and the
    cotangent reaching every sublayer's output (autodiff of ``apply`` with respect to a zero
    added to each call's result). ``jaxbp.check`` uses it to locate a slip inside a branch or
    a residual block, ``jaxbp.summary`` to show each sublayer's output shape.

    Attributes:
      apply: ``(run, params, x, key) -> y``; with ``run`` the sublayers' real forwards it must
        equal ``forward(params, x, key=key)[0]``. A sublayer may be called any number of times.
      part: what one sublayer is called in a location or a summary: ``"layer"`` (``serial``,
        ``residual``) gives ``layer 1 (tanh)``, ``"branch"`` (``branches``) ``branch 0 (...)``.
    """

    apply: Callable[..., Any]
    part: str = "layer"


class StateRule(NamedTuple):
    """How a layer's non-trainable state starts and evolves (batch norm's running statistics).

    Attributes:
      init: ``(params) -> state``, the state a network with these params starts from (a
        pytree of arrays; a combinator's is a tuple with one entry per sublayer, ``None`` for
        a sublayer without state).
      update: ``(state, cache) -> state``, the state after a forward that returned ``cache``:
        in training mode (forward got a ``key``) the running statistics move towards the
        batch's, in evaluation mode the state comes back unchanged. Never differentiated.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any], Any]


class Layer(NamedTuple):
    """A layer: ``init``, ``forward`` and its hand-derived ``backward``.

    Attributes:
      init: ``(key, input_shape) -> (params, output_shape)``; shapes exclude the batch axis (a
        tuple of shapes for a tuple input or output).
      forward: ``(params, x, *, key=None) -> (y, cache)``; ``key=None`` is evaluation mode.
      backward: ``(params, cache, dy) -> (dparams, dx)``, the vector-Jacobian product of
        ``forward`` written out by hand; ``dparams`` has the structure of ``params``, ``dx``
        that of ``x`` (a tuple for a tuple input).
      name: a short human-readable name (``"dense(16)"``) used in errors and reports.
      sublayers: for combinators such as :func:`serial`, the layers they are made of, in
        order; ``()`` for a plain layer. ``print(layer)`` shows them as a tree.
      wiring: for a combinator, a :class:`Wiring` (or its bare ``apply`` function) saying how
        ``sublayers`` are wired, so ``jaxbp.check`` locates a slip inside it and
        ``jaxbp.summary`` shows its parts. ``None`` (the default): a combinator that declares
        no wiring is checked and summarised as one layer — never walked as a guessed chain.
      state: for a layer with non-trainable state (``batch_norm``, or a combinator holding
        one), its :class:`StateRule`; its forward then takes ``state=`` (used in evaluation
        mode). ``None`` (the default): no state, and forward takes no ``state=``.
    """

    init: Callable[..., tuple[Params, Shape]]
    forward: Callable[..., tuple[Array, Cache]]
    backward: Callable[[Params, Cache, Array], tuple[Params, Array]]
    name: str = "layer"
    sublayers: tuple[Layer, ...] = ()
    wiring: Wiring | Callable[..., Any] | None = None
    state: StateRule | None = None

    def __repr__(self) -> str:
        return "\n".join(["Layer " + tree_label(self), *tree_lines(self)])


def wiring_of(layer: Layer) -> Wiring | None:
    """``layer``'s :class:`Wiring` (a bare function taken as ``Wiring(function)``), or None
    when it has no sublayers or declares none."""
    wiring = getattr(layer, "wiring", None)
    if wiring is None or not layer.sublayers:
        return None
    return wiring if isinstance(wiring, Wiring) else Wiring(wiring)


def has_state(layer: Layer) -> bool:
    """Whether ``layer`` keeps non-trainable state (declares a :class:`StateRule`)."""
    return getattr(layer, "state", None) is not None


def call_forward(layer: Layer, params: Params, x: Any, *, key: PRNGKey | None = None,
                 state: Any = None) -> tuple[Any, Cache]:
    """``layer.forward(params, x, key=key)``, with ``state=state`` for a layer with state:
    how a combinator or a tool calls a layer of either kind."""
    if has_state(layer):
        return layer.forward(params, x, key=key, state=state)
    return layer.forward(params, x, key=key)


def init_layer_state(net: Layer, params: Params) -> Any:
    """The state ``net`` starts from with ``params`` (batch norm: running mean 0, variance 1),
    or ``None`` for a network without state.

    Examples:
      >>> import jax, jaxbp as bp
      >>> net = bp.serial(bp.dense(3), bp.batch_norm(), bp.relu())
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> state = bp.init_layer_state(net, params)
      >>> state[1].mean.tolist(), state[1].var.tolist(), state[0]
      ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], None)
    """
    rule = getattr(net, "state", None)
    return None if rule is None else rule.init(params)


def update_layer_state(layer: Layer, state: Any, cache: Cache) -> Any:
    """``layer.state.update(state, cache)``, or ``None`` for a layer without state."""
    rule = getattr(layer, "state", None)
    return None if rule is None else rule.update(state, cache)


def substate_rule(layers: tuple[Layer, ...], caches_of: Callable[[Any], tuple]) -> StateRule | None:
    """The :class:`StateRule` of a combinator whose params are a tuple with one entry per
    sublayer: its state is the tuple of their states (``None`` for one without), updated
    each from its own cache (``caches_of(cache)``, the sublayers' caches in order); ``None``
    when no sublayer has state."""
    if not any(has_state(layer) for layer in layers):
        return None

    def init(params):
        return tuple(init_layer_state(layer, p) for layer, p in zip(layers, params))

    def update(state, cache):
        return tuple(update_layer_state(layer, s, c)
                     for layer, s, c in zip(layers, state, caches_of(cache)))

    return StateRule(init, update)


def brief(name: str, limit: int = 60) -> str:
    """``name`` cut to ``limit`` characters for a message, with ``…`` where it was cut."""
    return name if len(name) <= limit else name[:limit - 1] + "…"


def substates(name: str, layers: tuple[Layer, ...], state: Any) -> tuple:
    """A combinator's ``state=`` as one entry per sublayer (all ``None`` when not given)."""
    if state is None:
        return (None,) * len(layers)
    fix = ("Fix: pass bp.init_layer_state(net, params), or the layer_state fit returned, for "
           "this network.")
    if type(state) is not tuple or len(state) != len(layers):  # not a layer's own NamedTuple
        got = (f"a {type(state).__name__} of length {len(state)}"
               if isinstance(state, (tuple, list)) else type(state).__name__)
        raise ValueError(f"{name}: state must be a tuple with one entry per sublayer "
                         f"({len(layers)}), got {got}. {fix}")
    for i, (layer, s) in enumerate(zip(layers, state)):
        if has_state(layer) != (s is not None):
            what = ("is None, but that layer has state" if s is None else
                    f"is a {type(s).__name__}, but that layer has no state (its entry is None)")
            raise ValueError(f"{name}: state entry {i} (for {brief(layer.name, 40)}) {what}. "
                             f"{fix}")
    return state


def with_state(layer: Layer, state: Any) -> Layer:
    """``layer`` with its state fixed to ``state``: a layer without state whose forward is
    ``layer.forward(params, x, key=key, state=state)``, its sublayers bound to their own
    entries alike (so a tool that walks the sublayers, such as the checker, runs each in the
    same mode). A layer without state comes back as it is."""
    if not has_state(layer):
        return layer
    subs = layer.sublayers
    if subs:
        subs = tuple(with_state(sub, s) for sub, s in zip(subs, substates(layer.name, subs,
                                                                           state)))

    def forward(params, x, *, key=None):
        return layer.forward(params, x, key=key, state=state)

    return layer._replace(forward=forward, sublayers=subs, state=None)


def check_state_threaded(where: str, net: Layer) -> None:
    """Raises ``TypeError`` if a combinator inside ``net`` holds a layer with state but
    declares no :class:`StateRule`: its running statistics would never be updated or used."""
    for sub in net.sublayers:
        if has_state(sub) and not has_state(net):
            raise TypeError(
                f"{where}: {brief(net.name)} holds {brief(sub.name)}, a layer with state "
                f"(running statistics), but declares no state rule, so that state would never be "
                f"updated or used in evaluation. Fix: build it with bp.serial, bp.residual or "
                f"bp.branches, which thread state, or give it state=StateRule(init, update) "
                f"and a forward taking state= (see the Layer docstring).")
        check_state_threaded(where, sub)


def tree_label(layer: Layer) -> str:
    """A layer's label in a tree: its name, or for a combinator the name's head (``serial``),
    since its parts follow on their own lines."""
    return layer.name.split("(")[0] if layer.sublayers else layer.name


def tree_lines(layer: Layer, indent: str = "") -> list[str]:
    """The lines of ``layer``'s sublayer tree under ``indent``, one per sublayer, nested."""
    wiring = wiring_of(layer)
    part = wiring.part if wiring else "sublayer"
    subs = list(layer.sublayers)
    lines = []
    for i, sub in enumerate(subs):
        last = i == len(subs) - 1
        lines.append(f"{indent}{'└─' if last else '├─'} {part} {i}: {tree_label(sub)}")
        lines += tree_lines(sub, indent + ("   " if last else "│  "))
    return lines


class Loss(NamedTuple):
    """A loss and its hand-derived gradient with respect to the prediction.

    Attributes:
      value: ``(y_pred, y_true) -> scalar``, averaged over the batch.
      grad: ``(y_pred, y_true) -> dL/dy_pred``, same shape as ``y_pred``.
      name: a short human-readable name used in errors and reports.
    """

    value: Callable[[Array, Any], Array]  # y_true: labels, targets or (y_true, w) (weighted)
    grad: Callable[[Array, Any], Array]
    name: str = "loss"


# --------------------------------------------------------------------------------------
# Input validation shared by layers: plain Python on static shapes, so it runs at trace
# time and a mistake surfaces as a readable error instead of an XLA shape failure.


def check_input_shape(name: str, input_shape: Any, *, min_rank: int = 1) -> Shape:
    """Validates ``input_shape`` passed to ``init`` and returns it as a tuple of ints."""
    if isinstance(input_shape, (int, np.integer)):
        raise TypeError(
            f"{name}: input_shape={input_shape!r} is an int, but a tuple without the batch "
            f"axis is expected. Fix: pass ({int(input_shape)},)."
        )
    try:
        shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise TypeError(
            f"{name}: input_shape={input_shape!r} is not a tuple of ints. Fix: pass the shape of "
            f"one example without the batch axis, e.g. (784,) or (28, 28, 1)."
        ) from None
    if len(shape) < min_rank or any(d <= 0 for d in shape):
        raise ValueError(
            f"{name}: input_shape={shape} is invalid; expected at least {min_rank} positive "
            f"dimension(s) without the batch axis. Fix: pass the shape of one example, e.g. "
            f"(784,)."
        )
    return shape


def is_shape_tuple(input_shape: Any) -> bool:
    """Whether ``input_shape`` is a tuple of shapes (the shape of a tuple input), e.g.
    ``((3,), (3,))``, rather than one shape ``(3,)``."""
    return (isinstance(input_shape, (tuple, list)) and len(input_shape) > 0
            and all(isinstance(s, (tuple, list)) for s in input_shape))


def check_input_shapes(name: str, input_shape: Any) -> Any:
    """:func:`check_input_shape` for one shape, or for each shape of a (nested) tuple of
    shapes; returns tuples of ints in the same nesting."""
    if is_shape_tuple(input_shape):
        return tuple(check_input_shapes(name, s) for s in input_shape)
    return check_input_shape(name, input_shape)


def check_input(name: str, x: Any, expected: tuple[int | str, ...], what: str = "") -> None:
    """Checks that ``x`` is ``(batch, *expected)``; raises naming the layer and both shapes."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(
            f"{name}: input x must be an array with a leading batch axis, got "
            f"{type(x).__name__}. Fix: pass jnp.asarray(x)."
        )
    shape = tuple(shape)
    if len(shape) != len(expected) + 1 or shape[1:] != tuple(expected):
        hint = what or f"expected (batch, {', '.join(map(str, expected))})"
        fix = ("add the batch axis, e.g. x[None] for one example" if shape == tuple(expected)
               else f"reshape the input or initialise the layer with input_shape={shape[1:]}")
        raise ValueError(
            f"{name}: input x has shape {shape}, but the layer expects (batch, *{tuple(expected)}) "
            f"({hint}). Fix: {fix}."
        )


def check_float_input(name: str, x: Any) -> None:
    """Raises ``TypeError`` unless ``x`` has a floating (or complex) dtype.

    A layer that multiplies its input by weights (dense, conv, recurrent) would otherwise
    promote integer data silently, or fail inside XLA; the dtype is static, so this check costs
    nothing per step under ``jit``.
    """
    dtype = getattr(x, "dtype", None)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(
            f"{name}: input x has dtype {dtype}, but a floating-point array is expected. Fix: "
            f"x.astype(jnp.float32) (or the params' dtype); fit and evaluate cast float data "
            f"to the params' dtype themselves, integer token ids belong in bp.embedding.")


def check_param_shapes(name: str, params: Any, expected: dict[str, tuple]) -> None:
    """Checks ``params`` against the shapes the layer was built for, at trace time.

    ``expected`` maps each field (in order) to its shape; a size the layer does not fix is
    given by its name (``"d_in"``), optionally with an integer multiple (``"3d"``): a name takes
    its value from the first field that has it, and every later field must agree. A mismatch
    names the field, both shapes and the likely cause: the params of another network
    (``dense(8)`` given the params of a ``dense(5)``).
    """
    fields = tuple(expected)
    if not isinstance(params, (tuple, list)) or len(params) != len(fields):
        got = (f"a {type(params).__name__} of length {len(params)}"
               if isinstance(params, (tuple, list)) else type(params).__name__)
        raise ValueError(
            f"{name}: params must hold ({', '.join(fields)}), got {got}. Fix: pass the params "
            f"this layer's (or network's) init returned.")
    sizes: dict[str, int] = {}  # named sizes, bound by the first field that has them
    for field, leaf, want in zip(fields, params, expected.values()):
        shape = tuple(getattr(leaf, "shape", ()))
        shown = tuple(_named_size(w, sizes) for w in want)
        ok = len(shape) == len(want) and all(
            _bind_size(w, s, sizes) if isinstance(w, str) else s == w
            for s, w in zip(shape, want))
        if not ok:
            text = "(" + ", ".join(map(str, shown)) + ("," if len(want) == 1 else "") + ")"
            raise ValueError(
                f"{name}: params.{field} has shape {shape}, but this layer expects {text}. Fix: "
                f"pass the params this network's init returned (these look like the params of "
                f"another network, e.g. other hidden sizes).")


def _split_size(size: str) -> tuple[int, str]:
    """``"3d" -> (3, "d")``; ``"d_in" -> (1, "d_in")``."""
    digits = len(size) - len(size.lstrip("0123456789"))
    return int(size[:digits] or 1), size[digits:]


def _named_size(size: Any, sizes: dict[str, int]) -> Any:
    """A shape entry as shown in a message: a bound name is its value, else the name."""
    if not isinstance(size, str):
        return size
    k, base = _split_size(size)
    return k * sizes[base] if base in sizes else size


def _bind_size(size: str, value: int, sizes: dict[str, int]) -> bool:
    """Whether ``value`` fits the named ``size``, binding the name on its first use."""
    k, base = _split_size(size)
    if base not in sizes:
        if value % k or value < k:
            return False
        sizes[base] = value // k
    return value == k * sizes[base]


def check_dy(name: str, dy: Any, expected: Shape) -> None:
    """Checks that backward's ``dy`` has the shape of forward's output ``y`` (``expected``)."""
    shape = tuple(getattr(dy, "shape", ()) or ())
    if not hasattr(dy, "shape") or shape != tuple(expected):
        got = shape if hasattr(dy, "shape") else type(dy).__name__
        raise ValueError(
            f"{name}: backward got dy of shape {got}, but forward's output y has shape "
            f"{tuple(expected)}; dy = dL/dy has y's shape. Fix: pass dy shaped like the y this "
            f"forward returned.")


def float_dtype(dtype=None):
    """``dtype`` if given, else JAX's default float (float64 under ``jax_enable_x64``)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def split_key(key: PRNGKey | None, n: int) -> list[PRNGKey | None]:
    """Splits ``key`` into ``n`` keys, or returns ``n`` Nones in evaluation mode."""
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


# --------------------------------------------------------------------------------------
# serial: the combinator that makes networks; itself a Layer.


def serial(*layers: Layer) -> Layer:
    """Composes layers in sequence; the result is itself a :class:`Layer`.

    Params are a tuple with one entry per layer; forward keeps a tuple of the layers' caches;
    backward walks them in reverse, feeding each layer's ``dx`` to the layer before it as its
    ``dy`` — the chain rule ``dL/da_{l-1} = (da_l/da_{l-1})^T dL/da_l`` applied layer by layer.

    A stochastic forward (``key`` given) splits the key into one subkey per layer. With a
    layer that keeps state (``batch_norm``), the state is a tuple with one entry per layer
    (``None`` for those without), and forward's ``state=`` hands each layer its own.

    Examples:
      >>> import jax, jaxbp as bp
      >>> net = bp.serial(bp.dense(8), bp.tanh(), bp.dense(1), bp.sigmoid())
      >>> params, out_shape = net.init(jax.random.key(0), (2,))
      >>> out_shape
      (1,)
    """
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(
                f"serial: argument {i} is {type(layer).__name__} ({layer!r:.60}), not a Layer. "
                f"Fix: call the factory, e.g. bp.relu() rather than bp.relu."
            )
    names = [layer.name for layer in layers]
    name = f"serial({', '.join(names)})"

    def reraise(i: int, e: Exception):
        msg = str(e)
        if msg.startswith(names[i] + ": "):  # the layer already named itself; say where it sits
            msg = msg[len(names[i]) + 2:]
        try:
            located = type(e)(f"serial layer {i} ({names[i]}): {msg}")
        except Exception:  # an exception class whose constructor takes no message: keep it
            e.add_note(f"(raised by serial layer {i}, {names[i]})")
            raise e from None
        raise located from None

    def init(key, input_shape):
        shape = check_input_shapes("serial", input_shape)
        params = []
        for i, (layer, k) in enumerate(zip(layers, split_key(key, len(layers)))):
            try:
                p, shape = layer.init(k, shape)
            except (ValueError, TypeError) as e:
                reraise(i, e)
            params.append(p)
        return tuple(params), shape

    def check_params(params):
        if not isinstance(params, (tuple, list)) or len(params) != len(layers):
            got = f"a {type(params).__name__} of length {len(params)}" if isinstance(
                params, (tuple, list)) else type(params).__name__
            raise ValueError(
                f"{name}: params must be a tuple with one entry per layer ({len(layers)}), got "
                f"{got}. Fix: pass the params returned by this network's init."
            )

    def forward(params, x, *, key=None, state=None):
        check_params(params)
        caches = []
        states = substates(name, layers, state)
        for i, (layer, p, k, s) in enumerate(zip(layers, params, split_key(key, len(layers)),
                                                 states)):
            try:
                x, cache = call_forward(layer, p, x, key=k, state=s)
            except (ValueError, TypeError) as e:
                reraise(i, e)
            caches.append(cache)
        return x, tuple(caches)

    def backward(params, caches, dy):
        check_params(params)
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            try:
                dparams[i], dy = layers[i].backward(params[i], caches[i], dy)
            except (ValueError, TypeError) as e:
                reraise(i, e)
        return tuple(dparams), dy

    def chain(run, params, x, key=None):
        for i, k in enumerate(split_key(key, len(layers))):
            x = run(i, params[i], x, k)
        return x

    return Layer(init, forward, backward, name, tuple(layers), Wiring(chain),
                 substate_rule(tuple(layers), lambda caches: caches))


def same_treedef(a: Any, b: Any) -> bool:
    """``a == b`` for two pytree structures (``jax.tree_util.tree_structure``'s ``PyTreeDef``).

    Typed ``Any``: jaxlib ships no stub for ``PyTreeDef``, so a type checker cannot compare two.
    """
    return bool(a == b)


def check_dparams(where: str, net: Layer, params: Params, dparams: Params) -> None:
    """Raises ``TypeError`` unless ``dparams`` has the pytree structure of ``params``, naming
    the first sublayer of a combinator whose backward returned another structure."""
    tu = jax.tree_util
    if same_treedef(tu.tree_structure(dparams), tu.tree_structure(params)):
        return
    name, got, want = net.name, dparams, params
    if net.sublayers and isinstance(dparams, tuple) and len(dparams) == len(params):
        for i, (layer, d, p) in enumerate(zip(net.sublayers, dparams, params)):
            if not same_treedef(tu.tree_structure(d), tu.tree_structure(p)):
                name, got, want = f"layer {i} ({layer.name}) of {net.name}", d, p
                break
    raise TypeError(
        f"{where}: the backward of {name} returned dparams with structure "
        f"{tu.tree_structure(got)}, but its params have {tu.tree_structure(want)}. Fix: return "
        f"(dparams, dx) with dparams shaped like params (the same NamedTuple; () without params).")


def count_params(params: Params) -> int:
    """The number of scalar parameters in a pytree."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree_util.tree_leaves(params))


__all__ = [
    "Array",
    "Layer",
    "Loss",
    "Params",
    "Wiring",
    "PRNGKey",
    "Shape",
    "StateRule",
    "call_forward",
    "check_dparams",
    "check_dy",
    "check_float_input",
    "check_input",
    "check_input_shape",
    "check_input_shapes",
    "check_param_shapes",
    "check_state_threaded",
    "count_params",
    "float_dtype",
    "has_state",
    "init_layer_state",
    "is_shape_tuple",
    "same_treedef",
    "serial",
    "split_key",
    "substate_rule",
    "substates",
    "tree_label",
    "tree_lines",
    "update_layer_state",
    "with_state",
    "wiring_of",
]
