"""``summary(net, input_shape)``: a network's tree of layers, with output shapes and parameters.

The tree follows each combinator's :class:`~jaxbp.Wiring` (``serial``, ``residual``,
``branches``, a user's own), one row per sublayer call, and shows a tuple of shapes where a
layer outputs a tuple (a fan-out, branches). Shapes come from ``jax.eval_shape``: nothing is
computed or compiled, and no parameter is allocated.

Examples:
  >>> import jaxbp as bp
  >>> net = bp.serial(bp.fan_out(2), bp.branches(bp.dense(4), bp.tanh()), bp.concat())
  >>> print(bp.summary(net, (3,)))
  summary of serial(fan_out(2), branches(dense(4), tanh), concat(axis=-1)), input (3,)
  layer                       output shape   params
  serial                      (7,)               16
  ├─ layer 0: fan_out(2)      ((3,), (3,))        0
  ├─ layer 1: branches        ((4,), (3,))       16
  │  ├─ branch 0: dense(4)    (4,)               16
  │  └─ branch 1: tanh        (3,)                0
  └─ layer 2: concat(axis=-1) (7,)                0
  total: 16 parameters
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax

from jaxbp._core import (Layer, call_forward, check_input_shapes, count_params, float_dtype,
                         init_layer_state, is_shape_tuple, tree_label, wiring_of)
from jaxbp._validate import require_layer
from jaxbp._wiring import Call, wired_calls


class SummaryRow(NamedTuple):
    """One layer (or one sublayer call) of a summary.

    Attributes:
      tree: the row's label with its tree drawing, e.g. ``"├─ branch 0: dense(4)"``.
      name: the layer's full name.
      depth: 0 for the network, 1 for its sublayers, and so on.
      output_shape: without the batch axis; a tuple of shapes for a tuple output.
      params: the number of scalar parameters of this layer (its sublayers' included).
    """

    tree: str
    name: str
    depth: int
    output_shape: Any
    params: int


@dataclasses.dataclass(frozen=True)
class Summary:
    """The result of :func:`summary`; ``print`` it for the table.

    Attributes:
      rows: one :class:`SummaryRow` per layer, the network first, then depth first.
      input_shape: the input shape summarised (without the batch axis).
    """

    rows: tuple[SummaryRow, ...]
    input_shape: Any

    @property
    def total(self) -> int:
        """The network's number of scalar parameters."""
        return self.rows[0].params

    def __str__(self) -> str:
        width = max(len("layer"), *(len(r.tree) for r in self.rows if len(r.tree) <= 40))
        shapes = [str(r.output_shape) for r in self.rows]
        shape_width = max(len("output shape"), *(len(s) for s in shapes if len(s) <= 30))
        lines = [f"summary of {self.rows[0].name}, input {self.input_shape}",
                 f"{'layer':<{width}} {'output shape':<{shape_width}} {'params':>8}"]
        lines += [f"{r.tree:<{width}} {s:<{shape_width}} {r.params:>8}"
                  for r, s in zip(self.rows, shapes)]
        lines.append(f"total: {self.total} parameters")
        return "\n".join(lines)

    __repr__ = __str__


def _shape_of(y) -> Any:
    """The output shape without the batch axis: a tuple of shapes for a tuple output."""
    if isinstance(y, (tuple, list)):
        return tuple(_shape_of(v) for v in y)
    return tuple(int(d) for d in y.shape[1:])


def _rows(layer: Layer, params, x, label: str, indent: str, depth: int,
          out: list[SummaryRow], state=None) -> None:
    """Appends ``layer``'s row (labelled ``label``) and, through its wiring, its parts'
    (evaluation mode: a layer with state runs on ``state``)."""
    wiring = wiring_of(layer)
    calls: list[Call] = []
    if wiring is None:
        y = call_forward(layer, params, x, state=state)[0]
    else:
        y, calls = wired_calls(layer, params, x, state=state)
    out.append(SummaryRow(label, layer.name, depth, _shape_of(y), count_params(params)))
    if wiring is None:
        return
    child = indent if depth == 0 else indent + ("   " if label.startswith(indent + "└") else "│  ")
    for j, call in enumerate(calls):
        sub = layer.sublayers[call.index]
        branch = "└─" if j == len(calls) - 1 else "├─"
        _rows(sub, call.params, call.x, f"{child}{branch} {wiring.part} {call.index}: "
              f"{tree_label(sub)}", child, depth + 1, out, call.state)


def _example(shape, dtype):
    """A ``ShapeDtypeStruct`` of one example (batch 1) for ``shape`` or a tuple of shapes."""
    if is_shape_tuple(shape):
        return tuple(_example(s, dtype) for s in shape)
    return jax.ShapeDtypeStruct((1, *shape), dtype)


def summary(net: Layer, input_shape, *, dtype=None) -> Summary:
    """The tree of ``net``'s layers with each one's output shape and parameter count.

    Args:
      net: a :class:`~jaxbp.Layer`, usually a ``serial``.
      input_shape: one example's shape without the batch axis (a tuple of shapes for a
        tuple input).
      dtype: the input's dtype (default JAX's default float; ``jnp.int32`` for token ids).

    Returns:
      A :class:`Summary`: ``print`` it for the table; ``.rows`` and ``.total`` for the numbers.
      A combinator that declares no wiring is one row (its parts are not shown).
    """
    require_layer("summary", net, "net", "bp.serial(bp.dense(4), bp.relu())")
    shape = check_input_shapes("summary", input_shape)
    kept: dict[str, Any] = {}

    def init(key):
        params, kept["out"] = net.init(key, shape)
        return params

    params = jax.eval_shape(init, jax.random.key(0))
    rows: list[SummaryRow] = []

    def walk(params, x):
        rows.clear()
        _rows(net, params, x, tree_label(net), "", 0, rows, init_layer_state(net, params))
        return 0

    jax.eval_shape(walk, params, _example(shape, float_dtype(dtype)))
    return Summary(tuple(rows), shape)


__all__ = ["Summary", "SummaryRow", "summary"]
