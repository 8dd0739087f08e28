"""Turning measurements into tables, target verdicts and ``docs/benchmarks.md``."""

from __future__ import annotations

from typing import NamedTuple

from benchmarks.timing import median, spread

PRIMARY = "jaxbp backprop, bp.optim.sgd, scan"     # the library's training step as users run it
AUTODIFF = "jaxbp autodiff, bp.optim.sgd, scan"
NUMPY, TORCH_SGD, TORCH_ADAM = "numpy, sgd", "torch, sgd", "torch, adam"

# Scanned epoch per step vs PyTorch eager (the targets) and matmul-peak fractions.
SPEEDUP_VS_TORCH = {"xor": 80.0, "digits": 6.0, "mnist-shaped": 1.2, "large": 1.0}
PEAK_FRACTION = {"mnist-shaped": 0.55, "large": 0.90}
BACKPROP_OVER_AUTODIFF = 1.03
COMPILE_LIMIT_S, COMPILE_CONFIG = 0.5, "mnist-shaped"


class Target(NamedTuple):
    what: str
    config: str
    measured: str
    required: str
    met: bool | None  # None: not measured

    @property
    def verdict(self) -> str:
        return "not measured" if self.met is None else ("met" if self.met else "**missed**")


def step_us(samples: list[float]) -> str:
    return f"{median(samples) * 1e6:,.1f} ± {spread(samples) * 100:.0f}%"


def time_table(results: dict) -> str:
    configs = list(results)
    labels = []
    for r in results.values():
        labels += [k for k in r["times"] if k not in labels]
    lines = ["| implementation | " + " | ".join(configs) + " |",
             "|---|" + "---:|" * len(configs)]
    for label in labels:
        cells = [step_us(results[c]["times"][label]) if label in results[c]["times"] else "—"
                 for c in configs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compile_table(results: dict) -> str:
    configs = list(results)
    labels = []
    for r in results.values():
        labels += [k for k in r["compile"] if k not in labels]
    lines = ["| jitted function | " + " | ".join(configs) + " |",
             "|---|" + "---:|" * len(configs)]
    for label in labels:
        cells = ["{:.2f} ({:.2f})".format(*results[c]["compile"][label])
                 if label in results[c]["compile"] else "—" for c in configs]
        name = label.replace(", loop", " (one step)").replace(", scan", " (scanned epoch)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def peak_of(r: dict) -> tuple[str, float]:
    """The best library's median matmul GFLOP/s, measured interleaved with this config's steps."""
    label = max(r["peaks"], key=r["peaks"].get)
    return label.split()[0], r["peaks"][label]


def flops_table(results: dict) -> str:
    impls = [PRIMARY, AUTODIFF, NUMPY, TORCH_SGD]
    lines = ["| config | matmul MFLOP / step | matmul peak: jax / numpy / torch | "
             + " | ".join(impls) + " |", "|---|---:|---:|" + "---:|" * len(impls)]
    for c, r in results.items():
        _, peak = peak_of(r)
        cells = []
        for label in impls:
            if label not in r["times"]:
                cells.append("—")
                continue
            g = r["flops"] / median(r["times"][label]) / 1e9
            cells.append(f"{g:,.1f} ({100 * g / peak:.0f}%)")
        peaks = " / ".join(f"{v:,.0f}" for v in r["peaks"].values())
        lines.append(f"| {c} | {r['flops'] / 1e6:,.2f} | {peaks} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(results: dict) -> str:
    """backprop / autodiff step time for every optimizer and driver."""
    pairs = sorted({k.replace("jaxbp backprop, ", "") for r in results.values()
                    for k in r["times"] if k.startswith("jaxbp backprop")})
    configs = list(results)
    lines = ["| optimizer, driver | " + " | ".join(configs) + " |",
             "|---|" + "---:|" * len(configs)]
    for pair in pairs:
        cells = []
        for c in configs:
            t = results[c]["times"]
            b, a = t.get(f"jaxbp backprop, {pair}"), t.get(f"jaxbp autodiff, {pair}")
            cells.append(f"{median(b) / median(a):.3f}" if b and a else "—")
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def hlo_table(results: dict) -> str:
    """Op counts of the compiled programs, backprop beside autodiff."""
    from benchmarks.hlo import summary

    lines = ["| config | program | backprop | autodiff |", "|---|---|---|---|"]
    for c, r in results.items():
        for driver, what in (("loop", "one step"), ("scan", "scanned epoch")):
            b = r["hlo"].get(f"jaxbp backprop, bp.optim.sgd, {driver}")
            a = r["hlo"].get(f"jaxbp autodiff, bp.optim.sgd, {driver}")
            if b is not None and a is not None:
                same = " (same)" if a == b else ""
                lines.append(f"| {c} | {what} | {summary(b)}{same} | {summary(a)} |")
    return "\n".join(lines)


def options_table(results: dict) -> str:
    """The XLA options ``compiler_options="auto"`` chose for each config's compiled programs."""
    lines = ["| config | options chosen (every jaxbp variant, loop and scan) |", "|---|---|"]
    for c, r in results.items():
        chosen = {repr(v) for v in r.get("options", {}).values()}
        text = ("not recorded" if not chosen else
                "; ".join(sorted("XLA defaults" if v == "{}" else f"`{v}`" for v in chosen)))
        lines.append(f"| {c} | {text} |")
    return "\n".join(lines)


def targets(results: dict, fit_compiles: int | None) -> list[Target]:
    out = []
    for c, r in results.items():
        t = {k: median(v) for k, v in r["times"].items()}
        ratio = t[PRIMARY] / t[AUTODIFF]
        out.append(Target("backprop step ≤ 1.03 × autodiff (scanned epoch, SGD)", c,
                          f"{ratio:.3f}×", f"≤ {BACKPROP_OVER_AUTODIFF}×",
                          ratio <= BACKPROP_OVER_AUTODIFF))
    for c, r in results.items():
        t = {k: median(v) for k, v in r["times"].items()}
        if c in SPEEDUP_VS_TORCH:
            if TORCH_SGD in t:
                s = t[TORCH_SGD] / t[PRIMARY]
                out.append(Target("scanned epoch per step vs PyTorch eager (SGD)", c, f"{s:.2f}×",
                                  f"≥ {SPEEDUP_VS_TORCH[c]}×", s >= SPEEDUP_VS_TORCH[c]))
            else:
                out.append(Target("scanned epoch per step vs PyTorch eager (SGD)", c,
                                  "torch not installed", f"≥ {SPEEDUP_VS_TORCH[c]}×", None))
        s = t[NUMPY] / t[PRIMARY]
        out.append(Target("scanned epoch per step vs NumPy (SGD)", c, f"{s:.2f}×", "> 1×", s > 1))
    for c, frac in PEAK_FRACTION.items():
        if c in results:
            r = results[c]
            f = r["flops"] / median(r["times"][PRIMARY]) / 1e9 / peak_of(r)[1]
            out.append(Target("fraction of measured matmul peak (scanned epoch)", c,
                              f"{100 * f:.0f}%", f"≥ {100 * frac:.0f}%", f >= frac))
    if COMPILE_CONFIG in results:
        s = results[COMPILE_CONFIG]["compile"]["jaxbp backprop, bp.optim.sgd, loop"][0]
        out.append(Target("first-call compile of the 3-layer MLP train step", COMPILE_CONFIG,
                          f"{s:.2f} s", f"< {COMPILE_LIMIT_S} s", s < COMPILE_LIMIT_S))
    out.append(Target("`fit` compiles nothing after its first epoch", "digits",
                      "not measured" if fit_compiles is None else f"{fit_compiles} compiles",
                      "0 compiles", None if fit_compiles is None else fit_compiles == 0))
    return out


def target_table(rows: list[Target]) -> str:
    lines = ["| target | config | measured | required | verdict |", "|---|---|---:|---:|---|"]
    lines += [f"| {r.what} | {r.config} | {r.measured} | {r.required} | {r.verdict} |"
              for r in rows]
    return "\n".join(lines)


def render(run: dict) -> str:
    """``docs/benchmarks.md`` from the data of one run (see ``measure.measure``)."""
    from benchmarks.check import Agreement
    from benchmarks.configs import CONFIGS

    text = markdown(
        facts=run["facts"], command=run["command"],
        configs=[CONFIGS[name] for name in run["configs"]], skipped=run["skipped"],
        agreements=[Agreement(*a) for a in run["agreements"]], results=run["results"],
        repeats=run["repeats"], min_time=run["min_time"],
        targets=targets(run["results"], run["fit_compiles"]))
    if run.get("transformer"):  # benchmarks/transformer.py: its own section, its own targets
        from benchmarks import transformer

        text += "\n" + transformer.markdown(run["transformer"])
    return text


def markdown(*, facts, command, configs, skipped, agreements, results, repeats, min_time,
             targets) -> str:
    from benchmarks.check import format_agreements

    met = sum(t.met is True for t in targets)
    missed = sum(t.met is False for t in targets)
    out = [
        "# Benchmarks",
        "",
        "_This file is written by `python -m benchmarks.run`; edit `benchmarks/`, not this file._",
        "",
        f"Command: `{command}`",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in facts.items()],
        "| accelerator | none: the timings are CPU only. No GPU was lent to the session that "
        "produced this run, so there are no GPU figures. |",
        "",
        "The machine has 2 cores that other jobs may share: read the load averages above, and "
        "the ± columns (half the interquartile range of the samples), before trusting a "
        "difference of a few percent.",
        "",
        "## Configurations",
        "",
        "| name | network | steps per epoch |",
        "|---|---|---:|",
        *[f"| {c.name} | {c.description} | {c.steps} |" for c in configs],
        *[f"| {name} | skipped: {why} | — |" for name, why in skipped.items()],
        "",
        "All timings in float32. SGD learning rate per config as in `benchmarks/configs.py`, "
        "Adam 1e-3.",
        "",
        "## Method",
        "",
        "- Same initial parameters, same batches, same loss and optimizer in every "
        "implementation; checked before timing (below).",
        "- `scan`: one jitted call runs the whole epoch with `lax.scan`; `loop`: a Python loop "
        "calls the jitted step once per batch. Both are the library's own compiled functions "
        "(`bp.make_train_epoch`, `bp.make_train_step`, with `compiler_options=\"auto\"`: "
        "per-step speed over compile time; the library's default is XLA's options) and "
        "donate the parameter and optimizer-state buffers. They are compiled ahead of time "
        "(`.lower(...).compile()`).",
        "- `sgd` is the hand-written optimizer (`θ ← θ − α ∇θ J`); `optax.sgd`, `optax.adam` "
        "are optax's. NumPy: hand-written backprop, SGD in place. PyTorch: eager, "
        "`nn.Sequential`, `torch.optim.SGD` / `Adam`, default threads.",
        f"- Each implementation is warmed up by one epoch, then timed in {repeats} samples of at "
        f"least {min_time} s each (whole epochs), taken round-robin across implementations so "
        "load from elsewhere hits all alike. Reported: median seconds per step over the samples.",
        "- FLOPs are the matmul FLOPs of a step (forward + backward; the first layer's unused "
        "`dx` not counted; elementwise work not counted).",
        "",
        "## Correctness: the same numbers everywhere",
        "",
        format_agreements(agreements),
        "",
        "## Step time (µs per training step, median ± half-IQR)",
        "",
        time_table(results),
        "",
        "## backprop / autodiff step-time ratio",
        "",
        ratio_table(results),
        "",
        "## What XLA compiled: op counts of the optimised HLO (bp.optim.sgd)",
        "",
        "From `jax.jit(...).lower(...).compile().as_text()`; dots and convolutions counted "
        "inside fusions too, other ops only outside (a fusion is one kernel). A "
        "*non-canonical conv* is a convolution in another layout than NHWC/HWIO "
        "(`b01f_01io->b01f`).",
        "",
        hlo_table(results),
        "",
        "## XLA options (`compiler_options=\"auto\"`)",
        "",
        "A program of at most 5e5 FLOPs per step (XLA's cost analysis) is compiled on CPU without "
        "matmul-library calls and threads; anything larger with XLA's defaults "
        "(`jaxbp/_compile.py`). Not the library's default: it trades up to ~0.25 s of compile "
        "time for 1-2 µs per step (`python -m benchmarks.small_programs`).",
        "",
        options_table(results),
        "",
        "## Achieved GFLOP/s (and % of the measured matmul peak)",
        "",
        "Matmul peak: a float32 2048×2048 @ 2048×2048 matmul in each library, timed as one more "
        "implementation in the same interleaved rounds as each config's training steps (so under "
        "the same load), median GFLOP/s; the best library's is the peak each percentage uses.",
        "",
        flops_table(results),
        "",
        "## First-call compile time (s: trace + lower + XLA compile; in brackets the XLA part)",
        "",
        compile_table(results),
        "",
        f"## Targets: {met} met, {missed} missed",
        "",
        target_table(targets),
        "",
    ]
    notes = _notes()
    if notes:
        out += [notes, ""]
    return "\n".join(out)


def _notes() -> str:
    """The hand-written analysis (profiling, why a target is missed), kept beside the code."""
    import os

    path = os.path.join(os.path.dirname(__file__), "analysis.md")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read().strip()
