"""Every registered layer's hand-derived backward equals jax.vjp of its forward (float64)."""

import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry import LAYERS
from support import assert_layer_matches_vjp

CASES = pytest.mark.parametrize("case", LAYERS, ids=[c.id for c in LAYERS])


def _shape(case, dims):
    return tuple(dims[: case.rank])


@CASES
@settings(max_examples=6)
@given(batch=st.integers(1, 4), dims=st.lists(st.integers(1, 5), min_size=3, max_size=3),
       seed=st.integers(0, 2**16), jit=st.booleans())
def test_backward_matches_vjp_random_shapes(case, batch, dims, seed, jit):
    """Random shapes and values, batch size 1 included; eagerly or under jit (drawn)."""
    assert_layer_matches_vjp(case.make(), _shape(case, dims), batch=batch, seed=seed, jit=jit,
                             away_from_zero=case.away_from_zero, make_input=case.make_input,
                             stochastic=case.stochastic)


@CASES
@pytest.mark.parametrize("batch", [1, 3])
def test_backward_matches_vjp_jit(case, batch):
    assert_layer_matches_vjp(case.make(), _shape(case, [5, 3, 4]), batch=batch, seed=batch,
                             jit=True, away_from_zero=case.away_from_zero,
                             make_input=case.make_input, stochastic=case.stochastic)


@CASES
def test_float32_path(case):
    assert_layer_matches_vjp(case.make(), _shape(case, [4, 3, 2]), batch=2, seed=7, rtol=1e-5,
                             dtype=jnp.float32, away_from_zero=case.away_from_zero,
                             make_input=case.make_input, stochastic=case.stochastic)
