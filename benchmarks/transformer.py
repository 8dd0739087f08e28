"""The transformer benchmark: one training step of ``bp.models.transformer``, backprop vs
autodiff vs PyTorch eager, the same model and numbers checked first.

The configuration is the issue's: d_model 64, 4 heads, 2 blocks, sequences of 32 tokens,
batch 32, float32, a scanned epoch (``bp.make_train_epoch``) of SGD steps. The PyTorch side
(:mod:`benchmarks.torch_transformer`) is the same network written as a PyTorch user would,
loaded with the same initial parameters; before timing, its loss and gradients must equal
jaxbp's autodiff ones (float32), and jaxbp's backprop must equal autodiff (float32 and float64).

``python -m benchmarks.run`` runs it with the other configurations (``--configs transformer``
alone); :func:`markdown` is its section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import jaxbp as bp
from benchmarks import timing
from benchmarks.check import Agreement, rel_err, tolerance, worst

NAME = "transformer"
BACKPROP, AUTODIFF = "jaxbp backprop, bp.optim.sgd, scan", "jaxbp autodiff, bp.optim.sgd, scan"
TORCH, TORCH_1 = "torch, sgd", "torch, sgd, 1 thread"  # default threads (one per core), one
BACKPROP_OVER_AUTODIFF, SPEEDUP_VS_TORCH = 1.0, 1.5  # the targets


class Bench(NamedTuple):
    """The benchmarked transformer and its data (the defaults are the issue's)."""

    vocab: int = 64
    time: int = 32
    d_model: int = 64
    heads: int = 4
    blocks: int = 2
    batch: int = 32
    steps: int = 8
    learning_rate: float = 0.05

    @property
    def description(self) -> str:
        return (f"transformer: vocab {self.vocab}, d_model {self.d_model}, {self.heads} heads, "
                f"{self.blocks} pre-norm blocks, causal, time {self.time}, per-position softmax "
                f"CE, batch {self.batch}")


def model(bench: Bench, dtype=jnp.float32):
    """``Model(net, loss)``: ``bp.models.transformer`` with ``max_len = time``."""
    return bp.models.transformer(bench.vocab, bench.time, d_model=bench.d_model,
                                 num_heads=bench.heads, num_blocks=bench.blocks, dtype=dtype)


def init_params(bench: Bench, dtype=np.float32, seed: int = 0):
    net, _ = model(bench, dtype)
    return net.init(jax.random.key(seed), (bench.time,))[0]


def make_data(bench: Bench, seed: int = 0, steps: int | None = None):
    """Random tokens ``xs: (steps, batch, time)`` and next-token targets ``ys`` alike."""
    steps = bench.steps if steps is None else steps
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, bench.vocab, (steps, bench.batch, bench.time + 1)).astype(np.int32)
    return tokens[..., :-1], tokens[..., 1:]


class Runner:
    """A scanned epoch of SGD steps with one gradient source, compiled ahead of time."""

    def __init__(self, bench: Bench, grad: str, params, xs, ys, compiler_options="auto"):
        net, loss = model(bench, jax.tree_util.tree_leaves(params)[0].dtype)
        optimizer = bp.optim.sgd(bench.learning_rate)
        fn = bp.make_train_epoch(net, loss, optimizer, grad=grad, donate=True,
                                 compiler_options=compiler_options)
        self.steps = len(xs)
        self.params = jax.tree_util.tree_map(jnp.array, params)  # donation consumes copies
        self.opt_state = optimizer.init(self.params)
        self._data = (jnp.asarray(xs), jnp.asarray(ys))
        t0 = time.perf_counter()
        self._fn = fn.lower(self.params, self.opt_state, *self._data).compile()
        self.compile_s = time.perf_counter() - t0
        self.loss = None

    def hlo_text(self) -> str:
        """The compiled epoch's optimised HLO."""
        return self._fn.as_text()

    def run(self) -> None:
        self.params, self.opt_state, metrics = self._fn(self.params, self.opt_state, *self._data)
        self.loss = metrics["loss"]
        jax.block_until_ready((self.params, self.loss))


def _start(bench: Bench, dtype) -> tuple[dict, tuple]:
    """Loss and gradients on one batch: ``{"jaxbp backprop": ..., "jaxbp autodiff": ...}``."""
    net, loss = model(bench, dtype)
    params = init_params(bench, dtype)
    xs, ys = make_data(bench, steps=1)
    both = jax.jit(lambda p, x, y: (bp.backprop(net, loss)(p, x, y),
                                    bp.autodiff(net, loss)(p, x, y)))
    manual, auto = both(params, xs[0], ys[0])
    return {"jaxbp backprop": manual, "jaxbp autodiff": auto}, (params, xs[0], ys[0])


def check(bench: Bench = Bench(), *, use_torch: bool = True) -> list[Agreement]:
    """Before timing: loss and gradients of backprop and PyTorch vs autodiff (float32 and
    float64), and the parameters after two SGD steps of PyTorch vs jaxbp's scanned epoch."""
    out = []
    for dtype in (np.float32, np.float64):
        with jax.enable_x64(dtype == np.float64):
            got, (params, x, y) = _start(bench, dtype)
            (ref_loss, ref), (v, g) = got["jaxbp autodiff"], got["jaxbp backprop"]
            what = f"loss and grads at start ({np.dtype(dtype).name}) vs jaxbp autodiff"
            out.append(Agreement(NAME, what, "jaxbp backprop",
                                 max(rel_err(v, ref_loss), worst(g, ref)), tolerance(dtype)))
            if use_torch:
                from benchmarks.torch_transformer import TorchTransformer

                v, g = TorchTransformer(bench, params).loss_and_grads(x, y)
                out.append(Agreement(NAME, what, "torch",
                                     max(rel_err(v, ref_loss), worst(g, ref)), tolerance(dtype)))
                if dtype == np.float64:
                    out.append(_after_steps(bench, params))
    return out


def _after_steps(bench: Bench, params, steps: int = 2) -> Agreement:
    """PyTorch's parameters after ``steps`` SGD steps vs jaxbp backprop's scanned epoch."""
    from benchmarks.torch_transformer import TorchTransformer

    xs, ys = make_data(bench, steps=steps)
    jaxbp_run, torch_run = Runner(bench, "backprop", params, xs, ys), TorchTransformer(
        bench, params, xs, ys)
    jaxbp_run.run()
    torch_run.run()
    return Agreement(NAME, f"params after {steps} SGD steps (float64) vs {BACKPROP}", "torch",
                     worst(torch_run.numpy_params(), jax.tree_util.tree_leaves(jaxbp_run.params)),
                     tolerance(np.float64))


def measure(bench: Bench = Bench(), *, repeats: int, min_time: float, use_torch: bool) -> dict:
    """Seconds per step of each implementation, interleaved; JSON-ready."""
    params = init_params(bench)
    xs, ys = make_data(bench)
    runners = {BACKPROP: Runner(bench, "backprop", params, xs, ys),
               AUTODIFF: Runner(bench, "autodiff", params, xs, ys)}
    if use_torch:
        from benchmarks.torch_transformer import TorchTransformer

        runners[TORCH] = TorchTransformer(bench, params, xs, ys)
        runners[TORCH_1] = TorchTransformer(bench, params, xs, ys, threads=1)
    times = timing.time_interleaved(runners, repeats=repeats, min_time=min_time)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"times": times, "compile": {k: r.compile_s for k, r in runners.items()
                                        if hasattr(r, "compile_s")},
            "description": bench.description, "steps": bench.steps, "load_after": load}


def targets(result: dict) -> list[tuple[str, str, str, bool | None]]:
    """``(what, measured, required, met)`` for the issue's two transformer targets."""
    t = {k: timing.median(v) for k, v in result["times"].items()}
    ratio = t[BACKPROP] / t[AUTODIFF]
    rows = [("backprop step ≤ 1.0 × autodiff (scanned epoch, SGD)", f"{ratio:.3f}×",
             f"≤ {BACKPROP_OVER_AUTODIFF}×", ratio <= BACKPROP_OVER_AUTODIFF)]
    if TORCH in t:  # against the faster of PyTorch's thread settings
        s = min(t[k] for k in (TORCH, TORCH_1) if k in t) / t[BACKPROP]
        rows.append(("scanned epoch per step vs PyTorch eager (SGD, its faster setting)",
                     f"{s:.2f}×",
                     f"≥ {SPEEDUP_VS_TORCH}×", s >= SPEEDUP_VS_TORCH))
    else:
        rows.append(("scanned epoch per step vs PyTorch eager (SGD)", "torch not installed",
                     f"≥ {SPEEDUP_VS_TORCH}×", None))
    return rows


def markdown(result: dict) -> str:
    """The transformer section of ``docs/benchmarks.md``."""
    lines = ["## Transformer step", "", f"{result['description']}; {result['steps']} steps "
             f"per scanned epoch, float32, SGD. Load average after timing: "
             f"{result['load_after']}.", "", "| implementation | µs per step (median ± half-IQR) "
             "| compile (s) |", "|---|---:|---:|"]
    for label, samples in result["times"].items():
        c = result["compile"].get(label)
        lines.append(f"| {label} | {timing.median(samples) * 1e6:,.1f} ± "
                     f"{timing.spread(samples) * 100:.0f}% | {'—' if c is None else f'{c:.2f}'} |")
    lines += ["", "| target | measured | required | verdict |", "|---|---:|---:|---|"]
    for what, measured, required, met in targets(result):
        verdict = "not measured" if met is None else ("met" if met else "**missed**")
        lines.append(f"| {what} | {measured} | {required} | {verdict} |")
    return "\n".join(lines) + "\n"


__all__ = ["Bench", "Runner", "check", "make_data", "markdown", "measure", "model", "targets"]
