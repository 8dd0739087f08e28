"""Before any timing: every implementation must compute the same numbers.

For one config, from the same initial parameters and batches:

1. loss and gradients at the start: jaxbp ``backprop``, NumPy and PyTorch against jaxbp
   ``autodiff`` (``jax.value_and_grad``);
2. parameters after two optimizer steps: every jaxbp variant, NumPy SGD and PyTorch SGD / Adam
   against jaxbp ``autodiff`` with ``optax.sgd`` / ``optax.adam``; and a scanned epoch of those
   two steps against the Python loop.

Errors are ``max |a - b| / max |b|`` per array, the worst array reported.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np

from benchmarks import jaxbp_nets, numpy_cnn, numpy_mlp, torch_nets
from benchmarks.configs import Config, make_data


class Agreement(NamedTuple):
    config: str
    what: str        # e.g. "grads at start" or "params after 2 steps of optax.adam"
    impl: str        # the implementation compared with the reference
    error: float     # worst relative error over loss and arrays
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.error) and self.error <= self.tolerance)


def numpy_net(config: Config, params, xs=None, ys=None):
    """The NumPy implementation of the config's network."""
    cls = numpy_cnn.NumpyCNN if config.kind == "cnn" else numpy_mlp.NumpyMLP
    return cls(config, params, xs, ys)


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = np.max(np.abs(b), initial=0.0)
    diff = np.max(np.abs(a - b), initial=0.0)
    return 0.0 if diff == 0.0 else float(diff / max(scale, 1e-300))


def worst(got, want) -> float:
    """Worst relative error over two equally long lists of ``(w, b)`` pairs (or arrays)."""
    a, b = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    if len(a) != len(b):
        return float("inf")
    return max(rel_err(x, y) for x, y in zip(a, b))


def tolerance(dtype) -> float:
    # float32: different summation orders over a batch of 512 differ by ~1e-6; float64 ~1e-15.
    return 1e-10 if np.dtype(dtype) == np.float64 else 2e-4


def check_config(config: Config, *, use_torch: bool = True, steps: int = 2) -> list[Agreement]:
    """All agreement checks for one config; see the module docstring.

    Loss and gradients at the start are compared in float32 (what is timed) and float64;
    optimizer trajectories in float64 only, because in float32 Adam's ``m / sqrt(v)`` turns
    rounding-level differences in near-zero gradients into differences of order the learning rate.
    """
    out = check_start(config, np.float32, use_torch=use_torch)
    with jax.enable_x64(True):
        out += check_start(config, np.float64, use_torch=use_torch)
        out += check_steps(config, np.float64, use_torch=use_torch, steps=steps)
    return out


def check_start(config: Config, dtype, *, use_torch: bool = True) -> list[Agreement]:
    """Loss and gradients on the first batch against jaxbp ``autodiff``."""
    params, np_params = jaxbp_nets.init_params(config, dtype)
    xs, ys = make_data(config, dtype, steps=1)
    x, y = xs[0], ys[0]
    net, loss = jaxbp_nets.build_net(config, dtype), jaxbp_nets.LOSS[config.loss]()
    both = jax.jit(lambda p, x, y: (jaxbp_nets.GRADIENTS["autodiff"](net, loss)(p, x, y),
                                    jaxbp_nets.GRADIENTS["backprop"](net, loss)(p, x, y)))
    (ref_loss, ref), (bp_loss, bp_grads) = both(params, x, y)  # one compile for both
    candidates = {"jaxbp backprop": (bp_loss, jaxbp_nets.param_arrays(bp_grads)),
                  "numpy": numpy_net(config, np_params).loss_and_grads(x, y)}
    if use_torch:
        candidates["torch"] = torch_nets.TorchNet(config, np_params).loss_and_grads(x, y)
    ref = jaxbp_nets.param_arrays(ref)
    what = f"loss and grads at start ({np.dtype(dtype).name}) vs jaxbp autodiff"
    return [Agreement(config.name, what, impl, max(rel_err(v, ref_loss), worst(g, ref)),
                      tolerance(dtype)) for impl, (v, g) in candidates.items()]


def check_steps(config: Config, dtype, *, use_torch: bool = True,
                steps: int = 2) -> list[Agreement]:
    """Parameters after ``steps`` updates of each optimizer, against jaxbp ``backprop``."""
    params, np_params = jaxbp_nets.init_params(config, dtype)
    xs, ys = make_data(config, dtype, steps=steps)
    finals = {}
    for v in jaxbp_nets.VARIANTS:
        if v.gradient == "backprop" and (v.driver == "loop" or v.optimizer == "bp.optim.sgd"):
            runner = jaxbp_nets.Runner(config, v, params, xs, ys)
            runner.run()
            finals[v.label] = runner.numpy_params()
    others = {"numpy, sgd": numpy_net(config, np_params, xs, ys)}
    if use_torch:
        for opt in ("sgd", "adam"):
            others[f"torch, {opt}"] = torch_nets.TorchNet(config, np_params, xs, ys, opt)
    for impl, runner in others.items():
        runner.run()
        finals[impl] = runner.numpy_params()
    out = []
    for family, ref in (("sgd", "jaxbp backprop, optax.sgd, loop"),
                        ("adam", "jaxbp backprop, optax.adam, loop")):
        for impl, final in finals.items():
            if impl != ref and (family == "adam") == ("adam" in impl):
                out.append(Agreement(
                    config.name, f"params after {steps} steps ({np.dtype(dtype).name}) vs {ref}",
                    impl, worst(final, finals[ref]), tolerance(dtype)))
    return out


def format_agreements(rows: list[Agreement]) -> str:
    lines = ["| config | check | implementation | worst rel. error | tolerance | |",
             "|---|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r.config} | {r.what} | {r.impl} | {r.error:.1e} | {r.tolerance:.0e} | "
                     f"{'ok' if r.ok else '**MISMATCH**'} |")
    return "\n".join(lines)

