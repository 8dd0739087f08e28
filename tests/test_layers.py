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
# (batch 1, sizes 1). Under jit, manual and autodiff in one program: one compile per draw,
# where eagerly every primitive compiled anew for the shape (~5x the time);
# test_backward_matches_vjp_jit runs each case eagerly (batch 1) and under jit (batch 3).
@settings(max_examples=4)
@given(batch=st.integers(1, 4), dims=st.lists(st.integers(1, 5), min_size=3, max_size=3),
       seed=st.integers(0, 2**16))
def test_backward_matches_vjp_random_shapes(case, batch, dims, seed):
    """Random shapes and values, batch size 1 included."""
    assert_layer_matches_vjp(case.make(), _shape(case, dims), batch=batch, seed=seed, jit=True,
                             **_options(case))


@CASES
@pytest.mark.parametrize("batch, jit", [(1, False), (3, True)], ids=["eager-1", "jit-3"])
def test_backward_matches_vjp_jit(case, batch, jit):
    """A fixed shape, eagerly (batch 1) and under jit (batch 3)."""
    assert_layer_matches_vjp(case.make(), _shape(case, [5, 3, 4]), batch=batch, seed=batch,
                             jit=jit, **_options(case))


@CASES
def test_float32_path(case):
    assert_layer_matches_vjp(case.make(), _shape(case, [4, 3, 2]), batch=2, seed=7, rtol=1e-5,
                             dtype=jnp.float32, **_options(case))
