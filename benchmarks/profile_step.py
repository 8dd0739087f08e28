"""Where the transformer step's time goes: each library's own profiler, kernel by kernel.

Usage::

    python -m benchmarks.profile_step              # jaxbp backprop, and PyTorch if installed
    python -m benchmarks.profile_step --grad autodiff --top 30

The step is :mod:`benchmarks.transformer`'s (same model, data and SGD), run ``--steps`` times
under a profiler. For XLA, ``jax.profiler`` records each thunk of the compiled step
(``xla_cpu_enable_xprof_traceme``); the times below add up each HLO instruction's events over
all threads and divide by the steps. ``ynn_fusion`` instructions run in XLA:CPU's matmul library
(YNNPACK); a bare ``dot_general`` runs on a generic Eigen kernel; ``*_fusion`` without ``ynn``
are XLA's own loops (elementwise work, reductions, transposes). For PyTorch,
``torch.profiler`` gives each ATen op's self CPU time. Profiling slows both sides a little;
read the shares, and time with ``python -m benchmarks.run --configs transformer``.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax

from benchmarks import transformer

_TRACE_OPTIONS = {"xla_cpu_enable_xprof_traceme": True}
_NOT_KERNELS = ("ThunkExecutor", "SlinkyThreadPool", "ThreadpoolListener", "end: ")


def xla_profile(grad: str, steps: int) -> tuple[float, list[tuple[str, float, str]]]:
    """``(wall µs per step, [(instruction, µs per step, its HLO line), ...])``, slowest first."""
    bench = transformer.Bench()
    params = transformer.init_params(bench)
    xs, ys = transformer.make_data(bench, steps=1)
    runner = transformer.Runner(bench, grad, params, xs.repeat(steps, 0), ys.repeat(steps, 0),
                                compiler_options=_TRACE_OPTIONS)
    runner.run()
    with tempfile.TemporaryDirectory() as logdir:
        jax.profiler.start_trace(logdir)
        runner.run()
        jax.profiler.stop_trace()
        path, = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
        profile = jax.profiler.ProfileData.from_file(path)
    per_op: collections.Counter = collections.Counter()
    wall = 0
    for plane in profile.planes:
        for line in plane.lines:
            for event in line.events:
                if event.name == "ThunkExecutor::Execute (wait for completion)":
                    wall += event.duration_ns
                elif line.name.startswith("tf_XLAEigen") and not event.name.startswith(
                        _NOT_KERNELS):
                    per_op[event.name] += event.duration_ns
    hlo = runner.hlo_text()
    rows = []
    for name, ns in per_op.most_common():
        match = re.search(r"%" + re.escape(name) + r" = (\S+ \w+(?:-\w+)?)\(", hlo)
        rows.append((name, ns / steps / 1e3, match.group(1) if match else ""))
    return wall / steps / 1e3, rows


def _kind(name: str) -> str:
    base = re.sub(r"[.\d]+$", "", name)
    if base == "ynn_fusion":
        return "matmul library (ynn_fusion)"
    if base in ("dot_general", "dot"):
        return "Eigen matmul (bare dot)"
    return "transpose / copy" if "transpose" in base or "copy" in base else "other XLA loops"


def torch_profile(steps: int, top: int) -> str:
    """``torch.profiler``'s table of the PyTorch step's ops by self CPU time."""
    import torch

    from benchmarks.torch_transformer import TorchTransformer

    bench = transformer.Bench()
    params = transformer.init_params(bench)
    xs, ys = transformer.make_data(bench, steps=steps)
    model = TorchTransformer(bench, params, xs, ys)
    model.run()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        model.run()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grad", choices=("backprop", "autodiff"), default="backprop")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)
    wall, rows = xla_profile(args.grad, args.steps)
    total = sum(us for _, us, _ in rows)
    print(f"jaxbp {args.grad}: {wall:,.0f} µs per step (wall); kernel time summed over threads "
          f"{total:,.0f} µs")
    kinds: collections.Counter = collections.Counter()
    for name, us, _ in rows:
        kinds[_kind(name)] += us
    for kind, us in kinds.most_common():
        print(f"  {us:8,.0f} µs  {us / total:4.0%}  {kind}")
    print("\n| µs per step | instruction | HLO |\n|---:|---|---|")
    for name, us, line in rows[:args.top]:
        print(f"| {us:,.1f} | {name} | `{line}` |")
    if not args.no_torch:
        try:
            table = torch_profile(args.steps, args.top)
        except ImportError:
            print("\ntorch not installed: no PyTorch profile")
        else:
            print(f"\nPyTorch eager, {args.steps} steps (divide by the steps for per-step times):")
            print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
