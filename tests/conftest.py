"""Strict JAX for every test: float64 for gradient comparisons, no implicit rank promotion."""

import os

# Compiling is most of the suite's time: thousands of small programs (one per layer, shape and
# dtype), each run a few times on tiny data. LLVM's optimisation of their machine code costs
# more than it saves, so tests compile at -O0: the same XLA programs (HLO passes and all), less
# tuned machine code; compiles take ~40 % less time, the suite ~20 % less. Set before JAX starts
# its CPU backend (and inherited by the xdist workers and subprocesses that do not set
# XLA_FLAGS themselves); a choice in XLA_FLAGS wins, e.g. XLA's default:
# XLA_FLAGS=--xla_backend_optimization_level=2 python -m pytest
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"),
                                                     "--xla_backend_optimization_level=0"]))

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

# JIT compiles make the first examples slow; deadlines would flake on a busy 2-core machine.
settings.register_profile(
    "jaxbp", deadline=None, max_examples=12, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("jaxbp")
