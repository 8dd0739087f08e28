"""Runs every benchmark side by side, prints the tables and writes ``docs/benchmarks.md``.

Usage::

    python -m benchmarks.run                 # full run (a few minutes on 2 cores)
    python -m benchmarks.run --quick         # correctness checks only, no timing, no file
    python -m benchmarks.run --configs xor,digits --repeats 5   # printed, not written
    python -m benchmarks.run --render benchmarks/last_run.json   # report from saved numbers

Before timing anything, every implementation is checked to compute the same loss and gradients
(and the same parameters after two optimizer steps); a mismatch stops the run. A partial run
(``--configs``) prints its report and writes nothing unless ``--out`` / ``--save`` say where:
the full report and its measurements stay as they are.

OpenBLAS: where ``OPENBLAS_CORETYPE`` / ``OPENBLAS_L2_SIZE`` are set (they pin an old kernel on
some processors, for safety elsewhere), a timing run re-executes itself with both removed, so
NumPy runs the kernel OpenBLAS picks for this CPU; the report names the kernel.
``--keep-openblas-env`` keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

if __package__ in (None, ""):  # run as a file: python benchmarks/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ALL_CONFIGS = ("xor", "digits", "mnist-shaped", "large", "digits-cnn", "transformer")
DEFAULT_SAVE = os.path.join(os.path.dirname(__file__), "last_run.json")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--configs", default=",".join(ALL_CONFIGS),
                   help="comma-separated configurations (default: all; transformer: "
                        "benchmarks/transformer.py)")
    p.add_argument("--repeats", type=int, default=7, help="timed samples per implementation")
    p.add_argument("--min-time", type=float, default=0.25,
                   help="seconds each sample lasts at least (epochs are repeated to reach it)")
    p.add_argument("--quick", action="store_true",
                   help="correctness checks only: no timing, nothing written")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out even if installed")
    p.add_argument("--out", default=None,
                   help="markdown report path (default docs/benchmarks.md for a run of every "
                        "configuration, printed only for a partial one; '-' for none)")
    p.add_argument("--save", default=None,
                   help="where the measurements are saved (default benchmarks/last_run.json for "
                        "a run of every configuration, nowhere for a partial one)")
    p.add_argument("--render", metavar="JSON", default=None,
                   help="only rewrite the report from saved measurements (no timing)")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="do not remove OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for the NumPy timings")
    return p.parse_args(argv)


def _reexec_without_openblas_pins(args) -> None:
    if args.quick or args.keep_openblas_env or os.environ.get("JAXBP_BENCH_REEXEC"):
        return
    if not any(v in os.environ for v in _OPENBLAS_VARS):
        return
    env = {k: v for k, v in os.environ.items() if k not in _OPENBLAS_VARS}
    env["JAXBP_BENCH_REEXEC"] = " ".join(f"{v}={os.environ[v]}" for v in _OPENBLAS_VARS
                                         if v in os.environ)
    print(f"re-running without {', '.join(_OPENBLAS_VARS)} so NumPy uses its native kernel",
          flush=True)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        from benchmarks import report

        with open(args.render) as f:
            return _write(report.render(json.load(f)), args.out)
    if argv is None:
        _reexec_without_openblas_pins(args)

    from benchmarks import check, configs, jaxbp_nets, report, torch_nets
    from benchmarks import transformer

    use_torch = not args.no_torch and torch_nets.available()
    chosen, skipped = [], {}
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    with_transformer = transformer.NAME in names
    for name in [n for n in names if n != transformer.NAME]:
        if name not in configs.CONFIGS:
            raise SystemExit(f"--configs: unknown configuration {name!r}; expected some of "
                             f"{', '.join(configs.CONFIGS)}.")
        config = configs.CONFIGS[name]
        if config.kind == "cnn" and not jaxbp_nets.has_conv():
            skipped[name] = "the CNN of the CNN/RNN issue needs bp.conv2d, not in jaxbp yet"
        else:
            chosen.append(config)
    for name, why in skipped.items():
        print(f"skipping {name}: {why}")

    with open("/proc/loadavg") as f:  # before this process adds its own load
        load_before = " ".join(f.read().split()[:3])
    print("checking that every implementation computes the same numbers ...", flush=True)
    agreements = [a for c in chosen for a in check.check_config(c, use_torch=use_torch)]
    if with_transformer:
        agreements += transformer.check(use_torch=use_torch)
    print(check.format_agreements(agreements))
    bad = [a for a in agreements if not a.ok]
    if bad:
        print(f"{len(bad)} mismatch(es): timings would not compare like with like; stopping.")
        return 1
    print(f"all {len(agreements)} checks agree.")
    if args.quick:
        return 0

    from benchmarks import measure

    data = measure.measure(chosen, repeats=args.repeats, min_time=args.min_time,
                           use_torch=use_torch, agreements=agreements, skipped=skipped,
                           load_before=load_before,
                           command=" ".join(["python -m benchmarks.run", *sys.argv[1:]]))
    if with_transformer:
        print(f"timing {transformer.NAME} ...", flush=True)
        data[transformer.NAME] = transformer.measure(repeats=args.repeats,
                                                     min_time=args.min_time, use_torch=use_torch)
        print(transformer.markdown(data[transformer.NAME]), flush=True)
    out, save = destinations(names, args.out, args.save)
    if save is None:
        print("a partial run (--configs): the measurements are not saved and "
              "benchmarks/last_run.json is left as it is (pass --save FILE to save them).")
    else:
        from jaxbp._files import atomic_write

        atomic_write(save, lambda f: f.write(json.dumps(data, indent=1).encode()))
        print(f"saved the measurements to {save}")
    return _write(report.render(data), out)


def destinations(names, out: str | None, save: str | None) -> tuple[str | None, str | None]:
    """``(report path, measurements path)``; ``"-"`` / ``None``: not written. A run of every
    configuration writes to the defaults; a partial run only where ``--out`` / ``--save`` say,
    so that it never replaces the full report and its measurements."""
    if set(names) != set(ALL_CONFIGS):
        return "-" if out is None else out, save
    return out, DEFAULT_SAVE if save is None else save


def _write(markdown: str, out: str | None) -> int:
    from jaxbp._files import atomic_write

    print(markdown)
    out = "docs/benchmarks.md" if out is None else out
    if out != "-":
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        atomic_write(out, lambda f: f.write(markdown.encode()))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
