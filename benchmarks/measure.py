"""The timing run: machine facts, matmul peak, every implementation per config, the report."""

from __future__ import annotations

import datetime
import os
import platform
import time

import jax
import jaxlib
import numpy as np
import optax

from benchmarks import check, hlo, jaxbp_nets, report, timing, torch_nets
from benchmarks.compiles import count_compiles
from benchmarks.configs import CONFIGS, Config, make_data, matmul_flops


def machine_facts(use_torch: bool) -> dict[str, str]:
    """What the numbers depend on: CPU, versions, thread settings, load."""
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    facts = {
        "date (UTC)": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{cpu}, {os.cpu_count()} logical cores",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "jax / jaxlib": f"{jax.__version__} / {jaxlib.__version__}",
        "JAX devices": ", ".join(str(d) for d in jax.devices()),
        "optax": optax.__version__,
        "numpy": np.__version__,
    }
    facts["NumPy BLAS"] = _blas()
    if use_torch:
        import torch

        facts["torch"] = (f"{torch.__version__} (intra-op threads {torch.get_num_threads()}, "
                          f"inter-op {torch.get_num_interop_threads()})")
    env = {k: os.environ[k] for k in ("XLA_FLAGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                      "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
                                      "OPENBLAS_L2_SIZE") if k in os.environ}
    facts["thread settings"] = (", ".join(f"{k}={v}" for k, v in env.items()) or
                                "none set (every library uses its default: all cores)")
    if os.environ.get("JAXBP_BENCH_REEXEC"):
        facts["thread settings"] += (f"; removed for this run: {os.environ['JAXBP_BENCH_REEXEC']}")
    with open("/proc/loadavg") as f:
        facts["load average (1, 5, 15 min) after the checks"] = " ".join(f.read().split()[:3])
    return facts


def _blas() -> str:
    """The BLAS libraries loaded, with the kernel each picked for this CPU (threadpoolctl)."""
    try:
        import threadpoolctl
    except ImportError:
        return "unknown (pip install threadpoolctl to see the kernel)"
    blas = [f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
            f"threads={i.get('num_threads')} ({os.path.basename(i.get('filepath', ''))})"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    return "; ".join(blas) or "unknown"


def runners_for(config: Config, use_torch: bool) -> dict:
    """Every implementation of one config, built (and compiled) on the same data and params."""
    params, np_params = jaxbp_nets.init_params(config)
    xs, ys = make_data(config)
    out = {v.label: jaxbp_nets.Runner(config, v, params, xs, ys) for v in jaxbp_nets.VARIANTS}
    out[report.NUMPY] = check.numpy_net(config, np_params, xs, ys)
    if use_torch:
        out[report.TORCH_SGD] = torch_nets.TorchNet(config, np_params, xs, ys, "sgd")
        out[report.TORCH_ADAM] = torch_nets.TorchNet(config, np_params, xs, ys, "adam")
    return out


MATMUL = "matmul 2048 (float32)"


def measure_config(config: Config, *, repeats: int, min_time: float, use_torch: bool) -> dict:
    runners = runners_for(config, use_torch)
    libraries = ["jax", "numpy"] + (["torch"] if use_torch else [])
    matmuls = {f"{lib} {MATMUL}": timing.Matmul(lib) for lib in libraries}
    runners.update(matmuls)
    times = timing.time_interleaved(runners, repeats=repeats, min_time=min_time)
    peaks = {label: m.flops / timing.median(times.pop(label)) / 1e9 for label, m in matmuls.items()}
    compiles = {k: (r.compile_s, r.xla_compile_s) for k, r in runners.items()
                if hasattr(r, "compile_s")}
    ops = {k: hlo.op_counts(r.hlo_text()) for k, r in runners.items()
           if hasattr(r, "hlo_text") and "bp.optim.sgd" in k}
    options = {k: r.compiler_options for k, r in runners.items()
               if hasattr(r, "compiler_options")}
    return {"times": times, "compile": compiles, "flops": matmul_flops(config),
            "steps": config.steps, "hlo": ops, "peaks": peaks, "options": options}


def fit_compiles() -> int | None:
    """XLA compiles that epochs 2 and 3 of ``bp.fit`` on digits add; None without ``bp.fit``."""
    import jaxbp as bp

    if not hasattr(bp, "fit"):
        return None
    config = CONFIGS["digits"]
    params, _ = jaxbp_nets.init_params(config)
    xs, ys = make_data(config)
    after_epoch = []
    with count_compiles() as seen:
        bp.fit(jaxbp_nets.build_net(config), jaxbp_nets.LOSS[config.loss](),
               bp.optim.sgd(config.learning_rate), params, xs.reshape(-1, xs.shape[-1]),
               ys.reshape(-1), key=0, epochs=3, batch_size=config.batch, progress=False,
               callback=lambda state, record: after_epoch.append(len(seen)))
    return len(seen) - after_epoch[0]


def measure(configs: list[Config], *, repeats: int, min_time: float, use_torch: bool,
            agreements, skipped: dict, command: str, load_before: str = "?") -> dict:
    """Times everything; returns the run as plain data (JSON-ready) for :func:`report.render`."""
    facts = machine_facts(use_torch)
    facts = {**facts, "load average (1, 5, 15 min) before the run": load_before}
    t_start = time.perf_counter()
    results = {}
    for config in configs:
        print(f"timing {config.name} ...", flush=True)
        results[config.name] = measure_config(config, repeats=repeats, min_time=min_time,
                                              use_torch=use_torch)
        print(report.time_table({config.name: results[config.name]}), flush=True)
    n_fit = fit_compiles()
    with open("/proc/loadavg") as f:
        facts["load average (1, 5, 15 min) at the end (this run included)"] = " ".join(
            f.read().split()[:3])
    facts["benchmark wall time"] = f"{time.perf_counter() - t_start:.0f} s"
    return {"facts": facts, "command": command, "configs": [c.name for c in configs],
            "skipped": skipped, "agreements": [list(a) for a in agreements], "results": results,
            "repeats": repeats, "min_time": min_time, "fit_compiles": n_fit}
