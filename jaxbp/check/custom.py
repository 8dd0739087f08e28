"""Checking any JAX function's custom rule: ``check_vjp`` and ``check_jvp``.

For ``f(*args)`` with pytree ``args`` (dicts, lists, NamedTuples, registered dataclasses) the
checked scalar is ``F(args) = Σ <f(*args), ct>`` with a random cotangent ``ct`` (standard
normal, per float output leaf), so ``∇F`` is the vector-Jacobian product ``ct · ∂f/∂args``:

1. **manual** — the rule under test: the ``bwd`` of a ``jax.custom_vjp`` (after its ``fwd``),
   an explicit ``vjp(*args, ct) -> tuple of cotangents``, or for a ``jax.custom_jvp`` (or an
   explicit ``jvp(primals, tangents) -> (out, tangent_out)``) the transpose of its tangent rule
   (what ``jax.vjp`` runs for it);
2. **autodiff** — ``jax.vjp`` of the undecorated primal ``f.fun`` (of ``fun`` with ``vjp=``),
   where that is differentiable; otherwise manual is checked against finite differences alone;
3. **finite differences** of ``F`` (full or sampled, as for :func:`jaxbp.check_layer`).

Rows are named by the user's own paths: ``args[0]['encoder']['w']``. A rule returning the wrong
structure, shape or dtype raises ``TypeError``/``ValueError`` naming the leaf, before anything
is compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxbp.check.diagnose import Context
from jaxbp.check.point import rows, settings, tolerance, with_forward
from jaxbp.check.report import GradientReport
from jaxbp.check.rule_shapes import cotangent_leaves, tangent_shapes
from jaxbp.check.witnesses import cast, is_float, oracle, precision, witnesses

def _name(f) -> str:
    return getattr(getattr(f, "fun", f), "__name__", type(f).__name__)


def _start(kind: str, decorator, f, rule, options, example: str):
    """``(where, tolerance, primal)`` of a check, after checking that ``f`` is a
    ``jax.custom_<kind>`` or an explicit rule is given."""
    where = f"check_{kind}({_name(f)})"
    tol = tolerance(f"check_{kind}", *options)
    if rule is None and not isinstance(f, decorator):
        raise TypeError(f"{where}: f must be a jax.custom_{kind} function, or give {kind}= "
                        f"(got {type(f).__name__} and no {kind}). Fix: e.g. check_{kind}(fun, "
                        f"x, {example}).")
    return where, tol, (f.fun if isinstance(f, decorator) else f)


def _draw_cotangent(rng, out_shapes):
    def draw(s):
        if jnp.issubdtype(s.dtype, jnp.floating):
            return jax.device_put(rng.standard_normal(s.shape))
        return np.zeros(s.shape, jax.dtypes.float0)
    return jax.tree_util.tree_map(draw, out_shapes)


def _check(where, kind, fun, custom, manual_vjp, args, key, cotangent, tol, validate):
    """The shared body of :func:`check_vjp` and :func:`check_jvp`."""
    seed = int(key) if isinstance(key, (int, np.integer)) else 0
    rng = np.random.default_rng(seed)
    with precision(tol.dtype):
        args = cast(tuple(args), tol.dtype)
        flat, treedef = jax.tree_util.tree_flatten(args)
        paths = ["args" + jax.tree_util.keystr(p)
                 for p, _ in jax.tree_util.tree_flatten_with_path(args)[0]]
        floats = [i for i, v in enumerate(flat) if is_float(v)]
        out_shapes = jax.eval_shape(fun, *args)
        ct = cast(cotangent if cotangent is not None else _draw_cotangent(rng, out_shapes),
                  tol.dtype)
        validate(args, out_shapes)

        def rebuild(primal):
            leaves = list(flat)
            for k, i in enumerate(floats):
                leaves[i] = primal[k]
            return jax.tree_util.tree_unflatten(treedef, leaves)

        def value(g, primal, ct_):
            out = g(*rebuild(primal))
            return sum(jnp.vdot(o, c) for o, c in zip(jax.tree_util.tree_leaves(out),
                                                      jax.tree_util.tree_leaves(ct_))
                       if jnp.issubdtype(o.dtype, jnp.floating))

        def manual(primal, ct_):
            a = rebuild(primal)
            out = fun(*a)
            mag = sum(jnp.sum(jnp.abs(o * c)) for o, c in zip(
                jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(ct_))
                if jnp.issubdtype(o.dtype, jnp.floating))
            leaves = cotangent_leaves(where, manual_vjp(a, ct_), a, paths)
            return mag, [leaves[i] for i in floats]

        primal = [flat[i] for i in floats]
        note = ""
        try:
            jax.eval_shape(jax.grad(lambda p: value(fun, p, ct)), primal)
            scalar = lambda p, c: value(fun, p, c)  # noqa: E731
        except Exception as e:
            scalar = lambda p, c: value(custom, p, c)  # noqa: E731
            note = (f"; autodiff of the primal unavailable ({type(e).__name__}): manual is "
                    f"checked against finite differences only")
        orc = oracle(scalar, manual)
        (_mag, man), auto, fds = witnesses(orc, primal, ct, step=tol.step, fd=tol.fd,
                                          magnitude=lambda m: m[0], grads=lambda m: m[1],
                                          seed=seed)
        out, forward = with_forward(
            lambda trust: rows([paths[i] for i in floats], man, auto, fds, tol, "",
                               [Context()] * len(floats), trust), orc, primal, ct)
        n = sum(int(np.size(v)) for v in primal)
        head = settings(tol, f"{n} elements", n).replace("manual backward", f"manual ({kind})")
        return GradientReport(f"custom_{kind} rule of {_name(custom)}", tuple(out),
                              settings=head + note, forward=forward)


def check_vjp(f, *args, vjp=None, key=0, cotangent=None, rtol: float | None = None,
              fd_rtol: float | None = None, step: float | None = None, fd: str = "auto",
              dtype: str = "float64") -> GradientReport:
    """Checks a ``jax.custom_vjp`` rule (or an explicit ``vjp``) at ``args``.

    Args:
      f: a ``jax.custom_vjp`` function; or any function when ``vjp`` is given.
      *args: the point, positional arguments of ``f`` (arbitrary pytrees; integer leaves are
        held fixed; ``nondiff_argnums`` are respected).
      vjp: ``vjp(*args, cotangent) -> tuple of cotangents`` (one per argument), checked
        instead of ``f``'s own rule.
      key: an int seed for the cotangent (and the sampled elements).
      cotangent: the output cotangent to use (default standard normal).
      rtol, fd_rtol, step, fd, dtype: as in :func:`jaxbp.check_layer` (``dtype="float32"``
        checks a rule written for float32 only, in float32).

    Returns:
      A :class:`~jaxbp.GradientReport` with one row per float leaf of ``args``.

    Raises:
      TypeError: ``f`` is not a ``custom_vjp`` and no ``vjp`` was given, or the rule returns
        the wrong structure or dtype (the leaf named).
      ValueError: the rule returns a cotangent of the wrong shape (the leaf named).
    """
    where, tol, fun = _start("vjp", jax.custom_vjp, f, vjp, (rtol, fd_rtol, step, fd, dtype),
                             "vjp=lambda x, ct: (ct * 2 * x,)")
    nondiff = tuple(getattr(f, "nondiff_argnums", ())) if vjp is None else ()
    custom = f
    if vjp is not None:  # the explicit rule as a custom_vjp (the reference when fun is not
        custom = jax.custom_vjp(fun)  # differentiable)
        custom.defvjp(lambda *a: (fun(*a), a), lambda a, ct: tuple(vjp(*a, ct)))

    def rule(a, ct):
        if vjp is not None:
            return vjp(*a, ct)
        res = f.fwd(*a)[1]
        out = f.bwd(*(a[i] for i in nondiff), res, ct)
        if nondiff:  # bwd returns cotangents of the differentiable arguments only
            it = iter(out if isinstance(out, tuple) else (out,))
            out = tuple(None if i in nondiff else next(it, None) for i in range(len(a)))
        return out

    return _check(where, "vjp", fun, custom, rule, args, key, cotangent, tol,
                  lambda a, o: None)


def check_jvp(f, *args, jvp=None, key=0, cotangent=None, rtol: float | None = None,
              fd_rtol: float | None = None, step: float | None = None, fd: str = "auto",
              dtype: str = "float64") -> GradientReport:
    """Checks a ``jax.custom_jvp`` rule (or an explicit ``jvp``) at ``args``.

    The tangent rule ``jvp(primals, tangents) -> (primal_out, tangent_out)`` is linear in the
    tangents, so its transpose (what ``jax.vjp`` runs) gives the gradient of
    ``F = Σ <f(*args), ct>``, checked against ``jax.vjp(f.fun)`` and finite differences; the
    rule's own outputs are first checked for structure, shape and dtype against ``f``'s.

    Args:
      f: a ``jax.custom_jvp`` function; or any function when ``jvp`` is given.
      *args: the point (arbitrary pytrees).
      jvp: ``jvp(primals, tangents) -> (primal_out, tangent_out)``, as for ``defjvp``.
      key, cotangent, rtol, fd_rtol, step, fd, dtype: as in :func:`check_vjp`.
    """
    where, tol, fun = _start("jvp", jax.custom_jvp, f, jvp, (rtol, fd_rtol, step, fd, dtype),
                             "jvp=lambda p, t: (fun(*p), 2 * p[0] * t[0])")
    rule = f.jvp if jvp is None else jvp
    custom = f
    if jvp is not None:
        custom = jax.custom_jvp(fun)
        custom.defjvp(jvp)
    nondiff = tuple(getattr(custom, "nondiff_argnums", ()))

    def manual(a, ct):
        diff = [i for i in range(len(a)) if i not in nondiff]

        def g(*d):
            full = list(a)
            for i, v in zip(diff, d):
                full[i] = v
            return custom(*full)

        cts = jax.vjp(g, *(a[i] for i in diff))[1](ct)
        it = iter(cts)
        return tuple(None if i in nondiff else next(it) for i in range(len(a)))

    def validate(a, out_shapes):
        tangent_shapes(where, rule, a, out_shapes, nondiff)

    return _check(where, "jvp", fun, custom, manual, args, key, cotangent, tol, validate)


__all__ = ["check_jvp", "check_vjp"]
