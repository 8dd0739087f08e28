"""Checks in the user's dtype: a rule written for float32 only is checked in float32 (x64 off,
tolerances from float32's epsilon) and passes; slips are still caught and named in float32 and
bfloat16; float64 stays the default and unchanged."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.check.point import derived

RNG = np.random.default_rng(0)


def softplus_rule(factor=1.0, to_float32=True):
    """softplus with a hand-written bwd; ``to_float32``: written for float32 only — it returns
    its cotangent in float32 (as mixed-precision code does), so a float64 check rejects it."""
    @jax.custom_vjp
    def f(x):
        return jnp.logaddexp(x, 0.0)

    def fwd(x):
        return f(x), x

    def bwd(x, ct):
        g = factor * ct * jax.nn.sigmoid(x)
        return (g.astype(jnp.float32) if to_float32 else g,)

    f.defvjp(fwd, bwd)
    return f


X = {"h": RNG.standard_normal((3, 4)).astype(np.float32)}


def test_float32_only_rule_passes_in_float32_and_is_rejected_in_float64():
    f = softplus_rule()
    report = bp.check_vjp(f, X["h"], dtype="float32")
    assert report.ok, report
    assert "computed in float32" in report.settings
    with pytest.raises(TypeError, match="dtype"):
        bp.check_vjp(f, X["h"])  # float64: the rule's float32 cotangent is named


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_slip_caught_in_narrow_dtype(dtype):
    report = bp.check_vjp(softplus_rule(2.0, to_float32=False), X["h"], dtype=dtype)
    assert not report.ok
    assert report.failures[0].path == "args[0]"


def test_layer_slip_caught_and_located_in_float32():
    good = bp.tanh()
    wrong = good._replace(backward=lambda p, c, dy: (p, good.backward(p, c, dy)[1] * 2.0))
    net = bp.serial(bp.dense(4), wrong, bp.dense(2))
    params, _ = net.init(jax.random.key(0), (3,))
    x, y = RNG.standard_normal((5, 3)), RNG.standard_normal((5, 2))
    report = bp.check_gradients(net, bp.mse(), params, x, y, dtype="float32")
    assert not report.ok and report.location.startswith("layer 1 (tanh)")
    right = bp.serial(bp.dense(4), good, bp.dense(2))
    assert bp.check_gradients(right, bp.mse(), params, x, y, dtype="float32").ok


@pytest.mark.parametrize("name", ["layer_norm", "softmax"])
def test_built_in_cases_pass_in_float32(name):
    from jaxbp import cases

    case = next(c for c in cases.LAYER_CASES if c.name == name)
    report = bp.check_layer(case.make(), case.input_shape, draws=1, input_fn=case.draw,
                            dtype="float32")
    assert report.ok, report


def test_float32_runs_with_x64_off_and_restores_the_callers_setting():
    seen = []

    def fun(x):
        seen.append(jnp.zeros(()).dtype)  # the user's code creates arrays in the default dtype
        return jnp.sin(x)

    bp.check_vjp(fun, np.ones(3, np.float32), vjp=lambda x, ct: (ct * jnp.cos(x),),
                 dtype="float32")
    assert set(seen) == {jnp.dtype(jnp.float32)}
    assert jax.config.jax_enable_x64  # the test session's setting, untouched


def test_tolerances_derive_from_epsilon():
    assert derived("float64") == pytest.approx((1e-8, 1e-6, 1e-6))
    rtol, fd_rtol, step = derived("float32")
    eps = float(jnp.finfo(jnp.float32).eps)
    assert rtol == pytest.approx(1e-8 * (eps / np.finfo(np.float64).eps) ** 0.5)
    assert 1e-4 < fd_rtol == step < 1e-3


def test_bad_dtype_is_named():
    with pytest.raises(ValueError, match=r"check_layer: dtype='int32'"):
        bp.check_layer(bp.tanh(), (3,), dtype="int32")
