"""A wrong custom rule that manual and autodiff share is a failure, not a warning (issue 11).

``jax.grad`` of a forward that calls a ``jax.custom_vjp`` / ``jax.custom_jvp`` runs the rule, so
a wrong rule makes manual and autodiff agree on a wrong gradient; only finite differences see
it. The checker fails such a leaf and names the rules the forward contains.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.check import report as _report


def _lse_rule(bwd_factor):
    """Log-sum-exp over the last axis; its bwd returns ``g · exp(x − max) · bwd_factor(...)``:
    softmax when right, the unnormalised ``exp(x − max)`` when wrong."""
    @jax.custom_vjp
    def lse(x):
        m = jnp.max(x, -1, keepdims=True)
        return (m + jnp.log(jnp.sum(jnp.exp(x - m), -1, keepdims=True)))[..., 0]

    def lse_fwd(x):
        return lse(x), x

    def lse_bwd(x, g):
        e = jnp.exp(x - jnp.max(x, -1, keepdims=True))
        return (g[..., None] * e * bwd_factor(e),)

    lse.defvjp(lse_fwd, lse_bwd)
    return lse


LSE_WRONG = _lse_rule(lambda e: 1.0)
LSE_RIGHT = _lse_rule(lambda e: 1.0 / jnp.sum(e, -1, keepdims=True))


@jax.custom_jvp
def softplus_wrong(x):
    return jnp.logaddexp(x, 0.0)


@softplus_wrong.defjvp
def softplus_wrong_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return softplus_wrong(x), dx * jax.nn.sigmoid(x) * 3.0  # the 3 is the slip


@jax.custom_jvp
def relu_rule(x):
    return jnp.maximum(x, 0.0)


@relu_rule.defjvp
def relu_rule_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return relu_rule(x), jnp.where(x > 0, dx, 0.0)


def _scored(rule, name):
    """``y = rule(x @ w)``: a layer whose hand backward is the vjp of its forward, as a user
    would write it around a research rule (so manual and autodiff share the rule)."""
    def apply(w, x):
        return rule(x @ w)

    def init(key, shape):
        w = jax.random.normal(key, (shape[-1], 5)) / 2
        return {"w": w}, jax.eval_shape(apply, w, jnp.zeros((1, *shape))).shape[1:]

    def forward(params, x, *, key=None):
        return apply(params["w"], x), x

    def backward(params, x, dy):
        _, vjp = jax.vjp(apply, params["w"], x)
        dw, dx = vjp(dy)
        return {"w": dw}, dx

    return bp.Layer(init, forward, backward, name)


def test_wrong_custom_vjp_fails_naming_the_leaves_and_the_rule():
    report = bp.check_layer(_scored(LSE_WRONG, "lse_head"), (3,))
    assert not report.ok
    assert {r.path for r in report.failures} == {"['w']", "x"}, report
    for r in report.failures:
        assert r.verdict == _report.SHARED and r.max_rel_err < 1e-12  # manual == autodiff
        assert r.fd_err > 0.1
    rules = report.forward.custom_rules
    assert len(rules) == 1 and rules[0].startswith("lse (custom_vjp at test_check_shared_rules")
    assert "bwd lse_bwd" in rules[0]
    text = str(report)
    assert "autodiff runs a custom rule, or both are wrong" in text
    assert "custom rules in the forward: lse (custom_vjp" in text
    assert "located: lse_head:" in text and "bp.check_vjp" in text


def test_wrong_custom_jvp_fails_naming_the_rule_and_its_factor():
    layer = _scored(softplus_wrong, "softplus_head")
    report = bp.check_layer(layer, (3,), batch_sizes=(2,))
    assert not report.ok and report.row("x").verdict == _report.SHARED, report
    assert "softplus_wrong (custom_jvp at" in report.forward.custom_rules[0]
    assert "jvp softplus_wrong_jvp" in report.forward.custom_rules[0]
    assert "logaddexp" in report.forward.library_rules  # jax's own rule, listed apart
    # Every element has finite differences here, so the slip is read off against them.
    assert "manual = 3 × reference" in report.row("x").hint


def test_correct_custom_rules_pass_also_at_kinks():
    assert bp.check_layer(_scored(LSE_RIGHT, "lse_head"), (3,)).ok
    report = bp.check_layer(_scored(relu_rule, "relu_head"), (3,),
                            inputs=[np.zeros((2, 3)), np.asarray([[0.0, 1.0, -1.0]])])
    assert report.ok, report
    assert report.forward is None  # the jaxpr is walked only when a verdict needs it


def test_wrong_custom_rule_is_located_in_a_network():
    net = bp.serial(bp.dense(3), bp.tanh(), _scored(LSE_WRONG, "lse_head"))
    params, _ = net.init(jax.random.key(0), (4,))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3,))
    report = bp.check_gradients(net, bp.mse(), params, x, y)
    assert not report.ok and report.location.startswith("layer 2 (lse_head):"), report
    assert report.local.forward.custom_rules[0].startswith("lse (custom_vjp")
    assert report.forward.custom_rules[0].startswith("lse (custom_vjp")


def test_the_shared_rule_has_a_wide_margin_on_builtin_cases_at_large_magnitudes():
    # The rule overrules autodiff, so it must not fire on round-off: softmax, layer_norm and
    # the lstm at inputs of 10³ (or offset by 10⁴) still pass.
    for make, shape in ((bp.softmax, (4,)), (bp.layer_norm, (2, 5)), (lambda: bp.lstm(3), (3, 2))):
        for scale, offset in ((1e3, 0.0), (1.0, 1e4)):
            report = bp.check_layer(make(), shape, batch_sizes=(2,), draws=1, input_fn=(
                lambda rng, s, offset=offset, scale=scale: offset + scale * rng.standard_normal(s)))
            assert report.ok, report


def test_fd_mode_is_validated():
    with pytest.raises(ValueError, match=r"check_layer: fd='every' is not a finite-difference "
                       r"mode; expected one of \['auto', 'full', 'sampled'\]"):
        bp.check_layer(bp.relu(), (3,), fd="every")
