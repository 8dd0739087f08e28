"""Profiling note, runnable: the digits-CNN scanned epoch and the layout of its convolutions.

``jaxbp.layers.conv`` computes the backward convolutions with non-NHWC/HWIO dimension numbers
(``("CHWN", "IHWO", "HWNC")`` for ``dw``, an ``HWOI`` kernel for ``dx``). Outside a loop XLA's
CPU compiler rewrites them to its kernels' layout; inside a ``while`` loop (``lax.scan``) it does
not, and they run on a slow generic path. This script times the scanned epoch and the single step
as they are, and with the two backward convolutions written in NHWC/HWIO with explicit transposes
(same numbers, checked in float64), to size the effect.

Run:  python -m benchmarks.conv_layout
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxbp.layers._windows as windows
import jaxbp.layers.conv as conv
from benchmarks import check, hlo, jaxbp_nets, timing
from benchmarks.configs import CONFIGS, make_data


def kernel_grad_nhwc(x, dy, window, strides, pads):
    """``dw`` as ``conv.conv_kernel_grad``, with the batch axis moved explicitly."""
    tails = windows.unused_tail(x.shape[1:3], window, strides, pads)
    grad_pads = [(lo, hi - tail) for (lo, hi), tail in zip(pads, tails)]
    out = lax.conv_general_dilated(
        jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(dy, (1, 2, 0, 3)), (1, 1), grad_pads,
        rhs_dilation=strides, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.transpose(out, (1, 2, 0, 3))


def transpose_input_nhwc(dy, w, hw, strides, pads, groups=1):
    """``dx`` as ``conv.conv_transpose_input`` (ungrouped), the flipped kernel made HWIO."""
    kh, kw = w.shape[:2]
    tails = windows.unused_tail(hw, (kh, kw), strides, pads)
    trans_pads = [(k - 1 - lo, k - 1 - hi + tail)
                  for k, (lo, hi), tail in zip((kh, kw), pads, tails)]
    rhs = jnp.swapaxes(jnp.flip(w, axis=(0, 1)), 2, 3)
    return lax.conv_general_dilated(dy, rhs, (1, 1), trans_pads, lhs_dilation=strides,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def main(repeats: int = 5) -> None:
    config = CONFIGS["digits-cnn"]
    params, _ = jaxbp_nets.init_params(config)
    xs, ys = make_data(config)
    originals = conv.conv_kernel_grad, conv.conv_transpose_input
    runners = {}
    nhwc = kernel_grad_nhwc, transpose_input_nhwc
    for label, fns in (("as is", originals), ("NHWC/HWIO", nhwc)):
        conv.conv_kernel_grad, conv.conv_transpose_input = fns
        if label != "as is":
            with jax.enable_x64(True):
                rows = check.check_start(config, np.float64, use_torch=False)
            print(f"{label}: float64 agreement", ", ".join(f"{r.impl} {r.error:.1e}" for r in rows))
        for driver in ("scan", "loop"):
            r = jaxbp_nets.Runner(config, jaxbp_nets.Variant("backprop", "bp.optim.sgd", driver),
                                  params, xs, ys)
            runners[f"{label}, {driver}"] = r
            print(f"{label}, {driver}: {hlo.summary(hlo.op_counts(r.hlo_text()))}")
    conv.conv_kernel_grad, conv.conv_transpose_input = originals
    samples = timing.time_interleaved(runners, repeats=repeats, min_time=0.2)
    for name, s in samples.items():
        print(f"{name}: {timing.median(s) * 1e6:,.0f} us per step (median of {repeats})")


if __name__ == "__main__":
    main()
