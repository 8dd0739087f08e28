"""check_vjp / check_jvp: any JAX function's custom rule against autodiff of its undecorated
primal and finite differences, over the user's own pytrees; seeded slips named to their leaf;
malformed rules rejected with the leaf named."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.check import report as _report
from test_check_shared_rules import LSE_RIGHT, LSE_WRONG

RNG = np.random.default_rng(0)
PARAMS = {"encoder": {"w": RNG.standard_normal((3, 4)), "b": RNG.standard_normal(4)}}
X = RNG.standard_normal((2, 3))


class Affine(NamedTuple):
    w: np.ndarray
    b: np.ndarray


AFFINE = Affine(RNG.standard_normal((3,)), RNG.standard_normal((3,)))


def encoder(slip=None):
    """``out = {"h": tanh(x W + b), "s": Σ h²}`` with a hand-written bwd; ``slip`` seeds one
    classic mistake into it."""
    @jax.custom_vjp
    def enc(params, x):
        e = params["encoder"]
        h = jnp.tanh(x @ e["w"] + e["b"][None])
        return {"h": h, "s": jnp.sum(h ** 2)}

    def enc_fwd(params, x):
        out = enc(params, x)
        return out, (params, x, out["h"])

    def enc_bwd(res, g):
        params, x, h = res
        dh = g["h"] + (0.0 if slip == "dropped_s" else 2 * h * g["s"])
        dz = dh if slip == "no_tanh_derivative" else dh * (1 - h ** 2)
        dw = dz.T @ x if slip == "transposed" else x.T @ dz
        db = dz.mean(0) if slip == "mean_bias" else dz.sum(0)
        dx = dz @ params["encoder"]["w"].T
        if slip == "sign_dx":
            dx = -dx
        if slip == "float32":
            dw = dw.astype(jnp.float32)
        grads = {"encoder": {"w": dw, "b": db}}
        if slip == "structure":
            grads = {"enc": {"w": dw, "b": db}}
        return (grads, dx) if slip != "one_cotangent" else (grads,)

    enc.defvjp(enc_fwd, enc_bwd)
    return enc


def affine_sin(slip=None):
    """``y = p.w · sin(x) + p.b`` over a NamedTuple ``p``, with a hand-written tangent rule."""
    @jax.custom_jvp
    def f(p, x):
        return p.w * jnp.sin(x) + p.b

    @f.defjvp
    def f_jvp(primals, tangents):
        (p, x), (dp, dx) = primals, tangents
        dy = dp.w * jnp.sin(x) + p.w * jnp.cos(x) * dx
        if slip != "dropped_db":
            dy = dy + dp.b
        if slip == "cos_sign":
            dy = dy - 2 * p.w * jnp.cos(x) * dx
        return f(p, x), dy

    return f


def test_a_correct_rule_passes_with_the_users_leaf_paths():
    report = bp.check_vjp(encoder(), PARAMS, X)
    assert report.ok, report
    assert [r.path for r in report.rows] == ["args[0]['encoder']['b']",
                                             "args[0]['encoder']['w']", "args[1]"]
    assert all(r.max_rel_err < 1e-12 and r.verdict == _report.AGREE for r in report.rows)
    assert report.subject == "custom_vjp rule of enc"
    assert bp.check_jvp(affine_sin(), AFFINE, X[0]).ok


@pytest.mark.parametrize("slip, failing, hint", [
    ("dropped_s", {"args[0]['encoder']['b']", "args[0]['encoder']['w']", "args[1]"}, ""),
    ("no_tanh_derivative", {"args[0]['encoder']['b']", "args[0]['encoder']['w']", "args[1]"},
     ""),
    ("mean_bias", {"args[0]['encoder']['b']"}, "manual = reference / 2"),
    ("sign_dx", {"args[1]"}, "sign error"),
])
def test_seeded_slips_in_a_custom_vjp_over_nested_dicts_are_named(slip, failing, hint):
    report = bp.check_vjp(encoder(slip), PARAMS, X)
    assert {r.path for r in report.failures} == failing, report
    assert all(r.verdict == _report.DERIVATION for r in report.failures), report
    if hint:
        assert any(hint in h for h in report.hints), report.hints


@pytest.mark.parametrize("slip, failing, hint", [
    ("dropped_db", {"args[0].b"}, "manual gradient is zero"),
    ("cos_sign", {"args[1]"}, "sign error"),
])
def test_seeded_slips_in_a_custom_jvp_over_a_namedtuple_are_named(slip, failing, hint):
    report = bp.check_jvp(affine_sin(slip), AFFINE, X[0])
    assert {r.path for r in report.failures} == failing, report
    assert any(hint in h for h in report.hints), report.hints


def test_the_research_log_sum_exp_slip_is_caught():
    report = bp.check_vjp(LSE_WRONG, X)  # g · exp(x − max): the softmax's normalisation lost
    assert report.failures and report.row("args[0]").verdict == _report.DERIVATION, report
    assert "located" not in str(report)
    assert bp.check_vjp(LSE_RIGHT, X).ok


def test_explicit_vjp_and_jvp_rules():
    def fun(a, b):
        return {"p": a["u"] * b, "q": jnp.sin(a["u"])}

    a, b = {"u": RNG.standard_normal(3)}, RNG.standard_normal(3)
    good = lambda a, b, ct: ({"u": ct["p"] * b + ct["q"] * jnp.cos(a["u"])}, ct["p"] * a["u"])  # noqa: E731
    assert bp.check_vjp(fun, a, b, vjp=good).ok
    bad = lambda a, b, ct: ({"u": ct["p"] * b}, ct["p"] * a["u"])  # noqa: E731
    assert {r.path for r in bp.check_vjp(fun, a, b, vjp=bad).failures} == {"args[0]['u']"}
    jvp = lambda p, t: (fun(*p), {"p": t[0]["u"] * p[1] + p[0]["u"] * t[1],  # noqa: E731
                                  "q": jnp.cos(p[0]["u"]) * t[0]["u"]})
    assert bp.check_jvp(fun, a, b, jvp=jvp).ok


@jax.custom_vjp
def relu_rule(x):
    return jnp.maximum(x, 0.0)


relu_rule.defvjp(lambda x: (relu_rule(x), x), lambda x, g: (g * (x > 0),))


def test_a_correct_rule_at_kinks_passes():
    report = bp.check_vjp(relu_rule, np.asarray([0.0, 1.5, 0.0, -0.3]))
    assert report.ok and report.row("args[0]").kinks == 2, report


@jax.custom_vjp
def newton_sqrt(x):
    """sqrt by Newton iterations in a while_loop: not reverse-differentiable."""
    def body(c):
        y, i = c
        return 0.5 * (y + x / y), i + 1
    return jax.lax.while_loop(lambda c: c[1] < 30, body, (jnp.ones_like(x), 0))[0]


newton_sqrt.defvjp(lambda x: (newton_sqrt(x), x),
                   lambda x, g: (g * 0.5 / newton_sqrt(x),))


def test_a_primal_that_autodiff_cannot_differentiate_is_checked_against_finite_differences():
    report = bp.check_vjp(newton_sqrt, np.asarray([0.5, 2.0, 9.0]))
    assert report.ok and "autodiff of the primal unavailable" in report.settings, report
    wrong = jax.custom_vjp(newton_sqrt.fun)
    wrong.defvjp(lambda x: (newton_sqrt(x), x), lambda x, g: (g / newton_sqrt(x),))
    assert not bp.check_vjp(wrong, np.asarray([0.5, 2.0, 9.0])).ok


def test_malformed_rules_are_rejected_naming_the_leaf():
    with pytest.raises(ValueError, match=r"check_vjp\(enc\): the rule's cotangent for "
                       r"args\[0\]\['encoder'\]\['w'\] has shape \(4, 3\), but .* has shape "
                       r"\(3, 4\) \(transposed\?\)"):
        bp.check_vjp(encoder("transposed"), PARAMS, X)
    with pytest.raises(TypeError, match=r"cotangent for args\[0\]\['encoder'\]\['w'\] has dtype "
                       r"float32, but .* is float64"):
        bp.check_vjp(encoder("float32"), PARAMS, X)
    with pytest.raises(TypeError, match=r"cotangent for args\[0\] has structure .*'enc'.*but "
                       r"args\[0\] has .*'encoder'"):
        bp.check_vjp(encoder("structure"), PARAMS, X)
    with pytest.raises(TypeError, match=r"returned 1 cotangent\(s\) for 2 positional"):
        bp.check_vjp(encoder("one_cotangent"), PARAMS, X)
    with pytest.raises(TypeError, match=r"must return a tuple with one cotangent per"):
        bp.check_vjp(jnp.sin, X, vjp=lambda x, ct: ct * jnp.cos(x))
    with pytest.raises(TypeError, match=r"check_vjp\(sin\): f must be a jax.custom_vjp "
                       r"function, or give vjp="):
        bp.check_vjp(jnp.sin, X)
    with pytest.raises(TypeError, match=r"check_jvp\(sin\): f must be a jax.custom_jvp"):
        bp.check_jvp(jnp.sin, X)
    with pytest.raises(ValueError, match=r"check_jvp\(sin\): the rule's tangent output for out "
                       r"has shape \(3,\), but out has shape \(2, 3\)"):
        bp.check_jvp(jnp.sin, X, jvp=lambda p, t: (jnp.sin(p[0]), t[0][0]))
    with pytest.raises(TypeError, match=r"must return a pair \(primal_out, tangent_out\)"):
        bp.check_jvp(jnp.sin, X, jvp=lambda p, t: jnp.sin(p[0]))


def test_large_arguments_are_sampled_and_a_slip_still_named():
    w = RNG.standard_normal((130, 100))
    params = {"encoder": {"w": w, "b": np.zeros(100)}}
    x = RNG.standard_normal((4, 130))
    report = bp.check_vjp(encoder("sign_dx"), params, x)
    assert "sampled" in report.settings and {r.path for r in report.failures} == {"args[1]"}


def test_check_custom_rule_example_catches_explains_and_fixes():
    import pathlib
    import runpy
    example = runpy.run_path(str(pathlib.Path(__file__).resolve().parents[1] / "examples"
                                 / "check_custom_rule.py"))
    lines = []
    slipped, in_layer, fixed = example["main"](out=lines.append)
    assert [r.path for r in slipped.failures] == ["args[0]['scores']"]
    assert in_layer.row("x").verdict == _report.SHARED
    assert in_layer.forward.custom_rules[0].startswith("lse (custom_vjp at check_custom_rule.py")
    assert fixed.ok and "custom rules in the forward: lse" in "\n".join(lines)
