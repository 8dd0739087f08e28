"""The CPU arrangements chosen for speed compute the same numbers, and keep their layout.

``dense``'s weight gradient ``x^T dy`` is rearranged on CPU by shape (``_weight_grad_cpu``) so
XLA picks its fast matmul kernel. These tests check every branch against the plain product and
that the compiled program really has no batch-contracted product left where one was removed.
"""

import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp  # noqa: F401  (loads the module below)

dense_module = sys.modules["jaxbp.layers._matmul"]  # dense's weight gradient

# (batch, d_in, d_out) hitting each branch of _weight_grad_cpu, and the form it takes.
BRANCHES = {"narrow": (128, 40, 3), "big": (256, 256, 256), "small": (64, 64, 128),
            "tiny": (5, 7, 9), "wide_input": (32, 784, 96)}
FORMS = {"narrow": "(dy^T x)^T", "big": "(x^T) dy", "small": "(x^T) dy", "tiny": "x^T dy",
         "wide_input": "x^T dy"}


@pytest.mark.parametrize("branch", sorted(BRANCHES))
def test_each_case_takes_its_branch(branch):
    assert dense_module.weight_grad_form(*BRANCHES[branch]) == FORMS[branch]


@pytest.mark.parametrize("branch", sorted(BRANCHES))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_weight_grad_equals_the_plain_product(branch, dtype):
    b, d_in, d_out = BRANCHES[branch]
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(b, d_in)).astype(dtype), rng.normal(size=(b, d_out)).astype(dtype)
    want = x.astype(np.float64).T @ dy.astype(np.float64)
    for fn in (dense_module.weight_grad, jax.jit(dense_module.weight_grad)):
        got = np.asarray(fn(jnp.asarray(x), jnp.asarray(dy)))
        assert got.shape == (d_in, d_out) and got.dtype == dtype
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


def _batch_contracted_dots(hlo: str) -> list[str]:
    """Product instructions whose left operand is contracted over its first (batch) axis."""
    return [line for line in hlo.splitlines()
            if re.search(r"\bdot\(", line) and "lhs_contracting_dims={0}" in line]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the rearrangement is CPU only")
@pytest.mark.parametrize("branch", ["narrow", "big", "small"])
def test_rearranged_branches_compile_without_a_batch_contracted_product(branch):
    b, d_in, d_out = BRANCHES[branch]
    x, dy = jnp.ones((b, d_in), jnp.float32), jnp.ones((b, d_out), jnp.float32)
    hlo = jax.jit(dense_module.weight_grad).lower(x, dy).compile().as_text()
    assert not _batch_contracted_dots(hlo), "\n".join(_batch_contracted_dots(hlo))
    # the check itself can fail: the plain product compiles to exactly such a dot
    plain = jax.jit(lambda x, dy: x.T @ dy).lower(x, dy).compile().as_text()
    assert _batch_contracted_dots(plain)
