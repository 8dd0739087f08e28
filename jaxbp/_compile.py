"""The XLA options jaxbp compiles its training programs with.

``compiler_options`` of :func:`jaxbp.make_train_step`, :func:`jaxbp.make_train_epoch` and
:func:`jaxbp.fit` is one of

- ``None`` (the default): XLA's defaults;
- ``"auto"``: XLA's defaults, except for a *tiny* program on CPU — at most
  :data:`SMALL_PROGRAM_FLOPS` floating-point operations per training step, as XLA's own cost
  analysis counts them — which gets :data:`SMALL_PROGRAM_CPU_OPTIONS`;
- a dict of XLA option names to values, passed to ``jax.jit(..., compiler_options=...)`` as is.

Why tiny programs differ: by default XLA:CPU hands every matrix product to a matmul library
that splits it over the CPU's threads. For products of a few hundred numbers (an XOR network,
a 2-D toy classifier) the hand-off and the thread synchronisation cost more than the
arithmetic. Without them XLA compiles such products to plain loops on one thread: on the 2-core
machine of ``docs/benchmarks.md`` a scanned XOR step (2-8-1, batch 4) went from 1.55 to 0.63 µs.
From ~7e5 FLOPs per step the defaults win again (``python -m benchmarks.small_programs``
measures the crossover); the threshold sits below it. The options change which kernels run, not
the mathematics: results agree with the defaults' to rounding.

Why ``"auto"`` is not the default: the plain loops take longer to compile — ~0.05 s more for an
XOR-sized network, up to ~0.25 s more near the threshold — which a saving of 1-2 µs per step
repays only after some 2e4-2e5 steps. So it is for long runs of small networks (the benchmarks,
sweeps over many seeds), not for a quick fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from collections.abc import Callable

import jax

#: Largest per-step FLOP count (XLA cost analysis) that ``"auto"`` treats as a tiny program.
SMALL_PROGRAM_FLOPS = 5e5

#: What ``"auto"`` gives a tiny program on CPU: no matmul-library calls, single-threaded Eigen.
SMALL_PROGRAM_CPU_OPTIONS = MappingProxyType({
    "xla_cpu_experimental_ynn_fusion_type": "",
    "xla_cpu_multi_thread_eigen": False,
})


def check_compiler_options(where: str, value) -> str | dict | None:
    """``value`` validated: ``"auto"``, ``None`` or a plain dict with string keys."""
    if value is None or (isinstance(value, str) and value == "auto"):
        return value
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return dict(value)
    raise TypeError(
        f"{where}: compiler_options={value!r:.80} must be 'auto', None or a dict of XLA option "
        f"names to values. Fix: compiler_options=None (XLA's defaults, the default), 'auto' "
        f"(tiny CPU programs tuned for per-step speed) or e.g. "
        f"{{'xla_cpu_multi_thread_eigen': False}}.")


def platform_of(args) -> str:
    """The platform of the first array in ``args``, else JAX's default backend."""
    for leaf in jax.tree_util.tree_leaves(args):
        if isinstance(leaf, jax.Array):
            return next(iter(leaf.devices())).platform
    return jax.default_backend()


def auto_options(lowered, platform: str) -> dict[str, Any]:
    """The options ``"auto"`` picks for a lowered program (see the module docstring).

    For a ``lax.scan`` over steps XLA's cost analysis counts the loop body once, so a scanned
    epoch is judged by one step, like the step itself.
    """
    if platform != "cpu":
        return {}
    try:
        flops = lowered.cost_analysis().get("flops")
    except Exception:  # no cost analysis: keep XLA's defaults
        return {}
    if flops is not None and 0 <= flops <= SMALL_PROGRAM_FLOPS:
        return dict(SMALL_PROGRAM_CPU_OPTIONS)
    return {}


def _is_traced(args) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(args))


class Jitted:
    """``jax.jit(fun, **jit_kwargs)`` compiled with ``compiler_options``.

    With ``"auto"`` the options are chosen at the first call, from the program lowered for its
    arguments (:func:`auto_options`), and kept for every later call. Called inside another
    transformation (under ``jit``, ``vmap``, ...) it is a plain ``jax.jit`` function: the outer
    compilation decides the options then.

    Attributes:
      compiler_options: the options in use: a dict (``{}`` = XLA's defaults), or ``None`` while
        ``"auto"`` has not been resolved yet.
    """

    def __init__(self, fun: Callable, compiler_options, **jit_kwargs):
        self._fun, self._jit_kwargs = fun, jit_kwargs
        self._plain = jax.jit(fun, **jit_kwargs)
        self._jit: jax.stages.Wrapped | None = None
        self.compiler_options: dict | None = None
        if compiler_options != "auto":
            self._set(compiler_options or {})
        self.__wrapped__ = fun
        self.__doc__ = getattr(fun, "__doc__", None)

    def _set(self, options: dict) -> jax.stages.Wrapped:
        self.compiler_options = dict(options)
        self._jit = (jax.jit(self._fun, **self._jit_kwargs, compiler_options=dict(options))
                     if options else self._plain)
        return self._jit

    def _resolve(self, args, kwargs) -> jax.stages.Wrapped:
        if _is_traced((args, kwargs)):
            return self._plain
        lowered = self._plain.lower(*args, **kwargs)
        return self._set(auto_options(lowered, platform_of((args, kwargs))))

    def __call__(self, *args, **kwargs):
        fn = self._jit
        if fn is None:
            fn = self._resolve(args, kwargs)
        return fn(*args, **kwargs)

    def lower(self, *args, **kwargs):
        """``jax.jit(...).lower`` with the options resolved (for ``.compile()``, HLO, costs)."""
        fn = self._jit
        if fn is None:
            fn = self._resolve(args, kwargs)
        return fn.lower(*args, **kwargs)

    def __getattr__(self, name: str):
        # Everything else a jax.jit function offers (trace, eval_shape, ...), from the jitted
        # function in use (the plain one while "auto" is unresolved).
        if name.startswith("__"):
            raise AttributeError(name)
        fn = self.__dict__.get("_jit") or self.__dict__.get("_plain")
        if fn is None:
            raise AttributeError(name)
        return getattr(fn, name)

    def __repr__(self) -> str:
        name = getattr(self._fun, "__name__", "function")
        return f"<jaxbp jitted {name}, compiler_options={self.compiler_options!r}>"
