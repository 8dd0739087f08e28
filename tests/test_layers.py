"""Every built-in layer's hand-derived backward equals jax.vjp of its forward (float64), over
random shapes: each case of ``jaxbp.cases.LAYER_CASES`` that accepts any shape of its rank."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxbp.cases import LAYER_CASES
from support import assert_layer_matches_vjp

LAYERS = [c for c in LAYER_CASES if c.any_shape]
CASES = pytest.mark.parametrize("case", LAYERS, ids=[c.name for c in LAYERS])


def _shape(case, dims):
    return tuple(dims[: len(case.input_shape)])


def _options(case):
    """Off the kinks: float inputs standard normal with ``|x| >= kink_margin``; integer inputs
    (tokens) from the case's own draw."""
    integer = not np.issubdtype(case.draw(np.random.default_rng(0), (1, 1)).dtype, np.floating)
    return dict(away_from_zero=case.kink_margin, make_input=case.draw if integer else None,
                stochastic=case.training)


@CASES
# Each draw is a new shape, hence new compiles: 4 draws per case, the first the smallest
# (batch 1, sizes 1); test_backward_matches_vjp_jit covers batches 1 and 3 under jit.
@settings(max_examples=4)
@given(batch=st.integers(1, 4), dims=st.lists(st.integers(1, 5), min_size=3, max_size=3),
       seed=st.integers(0, 2**16), jit=st.booleans())
def test_backward_matches_vjp_random_shapes(case, batch, dims, seed, jit):
    """Random shapes and values, batch size 1 included; eagerly or under jit (drawn)."""
    assert_layer_matches_vjp(case.make(), _shape(case, dims), batch=batch, seed=seed, jit=jit,
                             **_options(case))


@CASES
@pytest.mark.parametrize("batch", [1, 3])
def test_backward_matches_vjp_jit(case, batch):
    assert_layer_matches_vjp(case.make(), _shape(case, [5, 3, 4]), batch=batch, seed=batch,
                             jit=True, **_options(case))


@CASES
def test_float32_path(case):
    assert_layer_matches_vjp(case.make(), _shape(case, [4, 3, 2]), batch=2, seed=7, rtol=1e-5,
                             dtype=jnp.float32, **_options(case))
