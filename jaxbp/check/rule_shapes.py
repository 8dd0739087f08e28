"""Structure, shape and dtype of what a custom rule returns, checked leaf by leaf.

A VJP rule returns one cotangent per positional argument, each shaped like its argument (the
same pytree structure, the same shape and dtype per float leaf; ``None`` means zero). A JVP rule
returns ``(primal_out, tangent_out)`` shaped like ``f``'s output. A mismatch raises at trace
time, naming the leaf by the user's own path (``args[0]['encoder']['w']``) — instead of a wrong
number later, or jax's message about the whole tuple.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp._core import same_treedef


def _leaf_error(where, what, path, got, want) -> None:
    g_shape, w_shape = tuple(np.shape(got)), tuple(np.shape(want))
    if g_shape != w_shape:
        hint = " (transposed?)" if len(g_shape) == 2 and g_shape == w_shape[::-1] else ""
        raise ValueError(f"{where}: the rule's {what} for {path} has shape {g_shape}, but "
                         f"{path} has shape {w_shape}{hint}. Fix: return it shaped like "
                         f"{path}.")
    g_dtype, w_dtype = jnp.result_type(got), jnp.result_type(want)
    if g_dtype != w_dtype:
        raise TypeError(f"{where}: the rule's {what} for {path} has dtype {g_dtype}, but "
                        f"{path} is {w_dtype} (the dtype the check runs in). Fix: compute it in "
                        f"the primal's dtype, e.g. g.astype(x.dtype).")


def cotangent_leaves(where: str, cts, args: tuple, paths: list[str]) -> list:
    """The leaves of a VJP rule's cotangents ``cts`` aligned with ``tree_leaves(args)``
    (``None`` → zeros, non-float leaves → None), after checking their structure, shapes and
    dtypes against ``args``; ``paths`` names the leaves."""
    if not isinstance(cts, (tuple, list)):
        raise TypeError(f"{where}: the rule must return a tuple with one cotangent per "
                        f"positional argument, got {type(cts).__name__}. Fix: return (dx,) "
                        f"for one argument.")
    if len(cts) != len(args):
        raise TypeError(f"{where}: the rule returned {len(cts)} cotangent(s) for {len(args)} "
                        f"positional argument(s). Fix: return one per argument, None for zero.")
    out, k = [], 0
    for i, (ct, arg) in enumerate(zip(cts, args)):
        arg_leaves, arg_tree = jax.tree_util.tree_flatten(arg)
        names = paths[k:k + len(arg_leaves)]
        k += len(arg_leaves)
        if ct is None:
            out += [jnp.zeros_like(a) if jnp.issubdtype(a.dtype, jnp.floating) else None
                    for a in arg_leaves]
            continue
        ct_leaves, ct_tree = jax.tree_util.tree_flatten(ct, is_leaf=lambda v: v is None)
        if not same_treedef(ct_tree, arg_tree):
            raise TypeError(f"{where}: the rule's cotangent for args[{i}] has structure "
                            f"{ct_tree}, but args[{i}] has {arg_tree}. Fix: return the same "
                            f"pytree (dict keys, NamedTuple type) as the argument.")
        for name, c, a in zip(names, ct_leaves, arg_leaves):
            if not jnp.issubdtype(a.dtype, jnp.floating):
                out.append(None)
            elif c is None:
                out.append(jnp.zeros_like(a))
            else:
                _leaf_error(where, "cotangent", name, c, a)
                out.append(c)
    return out


def tangent_shapes(where: str, rule, args: tuple, out_shapes, nondiff: tuple = ()) -> None:
    """Traces the JVP ``rule`` at ``args`` with zero tangents and checks that it returns
    ``(primal_out, tangent_out)`` shaped like ``out_shapes`` (``f``'s output)."""
    diff = [a for i, a in enumerate(args) if i not in nondiff]
    fixed = [a for i, a in enumerate(args) if i in nondiff]
    tangents = jax.tree_util.tree_map(
        lambda a: jnp.zeros_like(a) if jnp.issubdtype(a.dtype, jnp.floating)
        else np.zeros(np.shape(a), jax.dtypes.float0), tuple(diff))
    got = jax.eval_shape(lambda d, t: rule(*fixed, d, t), tuple(diff), tangents)
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise TypeError(f"{where}: the rule must return a pair (primal_out, tangent_out), got "
                        f"{type(got).__name__}. Fix: return f(*primals), tangent_out.")
    out_leaves, out_tree = jax.tree_util.tree_flatten(out_shapes)
    names = ["out" + jax.tree_util.keystr(p)
             for p, _ in jax.tree_util.tree_flatten_with_path(out_shapes)[0]]
    for what, part in (("primal output", got[0]), ("tangent output", got[1])):
        leaves, tree = jax.tree_util.tree_flatten(part)
        if not same_treedef(tree, out_tree):
            raise TypeError(f"{where}: the rule's {what} has structure {tree}, but f returns "
                            f"{out_tree}. Fix: return the same pytree as f.")
        for name, g, w in zip(names, leaves, out_leaves):
            if jnp.issubdtype(w.dtype, jnp.floating):
                _leaf_error(where, what, name, g, w)


__all__ = ["cotangent_leaves", "tangent_shapes"]
