"""Strict JAX for every test: float64 for gradient comparisons, no implicit rank promotion."""

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
