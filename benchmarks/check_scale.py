"""How long ``bp.check_gradients`` takes on a large MLP (not a timed test: prints the figures).

Default: 784-512-512-10 (relu, tanh; 669,706 parameters), batch 32, float64 params, softmax
cross-entropy — manual vs autodiff on every element, finite differences sampled (``fd="auto"``
samples above ``FULL_FD_MAX`` elements). Each run is a fresh Python process's first call
(compilation included) and then the same check again (compiled witnesses reused); then one
seeded wrong element and one wrong row in ``layers[2].w`` are checked, to show they are caught
and named. Run::

    python -m benchmarks.check_scale                  # 784-512-512-10
    python -m benchmarks.check_scale --widths 784,2048,2048,2048,10 --batch 32
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

import jaxbp as bp


def build(widths, seed: int = 0):
    layers = []
    for i, w in enumerate(widths[1:]):
        layers.append(bp.dense(w))
        if i < len(widths) - 2:
            layers.append(bp.relu() if i % 2 == 0 else bp.tanh())
    net = bp.serial(*layers)
    params, _ = net.init(jax.random.key(seed), (widths[0],))
    return net, params


def slip(net, where: int, kind: str):
    """``net`` with one wrong element (``kind="element"``) or one wrong row of the weight
    gradient in the hand-derived backward of layer ``where`` (a dense layer)."""
    layer = net.sublayers[where]

    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, dy)
        dw = (dparams.w.at[3, 5].multiply(1.5) if kind == "element"
              else dparams.w.at[7].multiply(-1.0))
        return dparams._replace(w=dw), dx

    subs = list(net.sublayers)
    subs[where] = layer._replace(backward=backward)
    return bp.serial(*subs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="784,512,512,10")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--fd", default="auto", choices=("auto", "full", "sampled"))
    args = parser.parse_args(argv)
    widths = tuple(int(w) for w in args.widths.split(","))
    jax.config.update("jax_enable_x64", True)
    net, params = build(widths)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, widths[0]))
    y = rng.integers(0, widths[-1], args.batch)
    loss = bp.softmax_cross_entropy()
    n = bp.count_params(params)
    for label in ("first call (compiles)", "again (compiled)"):
        t0 = time.perf_counter()
        report = bp.check_gradients(net, loss, params, x, y, fd=args.fd)
        print(f"{n:,} parameters, batch {args.batch}, {label}: "
              f"{time.perf_counter() - t0:.2f} s, ok={report.ok}")
    for kind in ("element", "row"):
        t0 = time.perf_counter()
        report = bp.check_gradients(slip(net, 2, kind), loss, params, x, y, fd=args.fd)
        bad = ", ".join(f"{r.path} at {r.index}" for r in report.failures)
        print(f"seeded wrong {kind} in layers[2].w: {time.perf_counter() - t0:.2f} s, "
              f"caught={not report.ok}, failing: {bad}; located: {report.location}")


if __name__ == "__main__":
    main()
