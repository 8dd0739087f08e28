"""fan_out, branches, add, concat: hand-derived backward vs jax.vjp (float64 and float32) with
tuple inputs; serial, backprop and a training step through tuple activations; localisation
through every combinator by its wiring (seeded slips in a branch, a residual block, a
transformer block, a user's combinator with and without wiring); summary and print; errors."""

import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxbp as bp
from jaxbp.check.localize import COMBINES, NO_WIRING
from support import assert_trees_close, layer_vjp_pair

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "derivations-combinators.md"


def _draw(rng, shapes, batch, dtype=jnp.float64):
    if isinstance(shapes[0], tuple):
        return tuple(jnp.asarray(rng.standard_normal((batch, *s)), dtype) for s in shapes)
    return jnp.asarray(rng.standard_normal((batch, *shapes)), dtype)


def _matches_vjp(layer, input_shape, batch, seed, rtol=1e-10, dtype=jnp.float64):
    """Manual (dparams, dx) against jax.vjp, eagerly, for an array or a tuple input."""
    rng = np.random.default_rng(seed)
    params, out_shape = layer.init(jax.random.key(seed), input_shape)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), params)
    x = _draw(rng, input_shape, batch, dtype)
    y, _ = layer.forward(params, x)
    assert jax.tree_util.tree_map(lambda a: a.shape[1:], y) == out_shape
    dy = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.standard_normal(a.shape), dtype), y)
    got, want = layer_vjp_pair(layer, params, x, dy)
    assert_trees_close(got, want, rtol, f"{layer.name} at {input_shape}, batch {batch}")


@settings(max_examples=6, deadline=None)
@given(kind=st.sampled_from(["add", "concat", "fan_out", "branches"]), n=st.integers(1, 3),
       batch=st.integers(1, 3), dims=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       data=st.data(), seed=st.integers(0, 2**16))
def test_every_merge_and_split_matches_vjp_random_shapes(kind, n, batch, dims, data, seed):
    """add, concat (a random feature axis, sizes differing on it), fan_out and branches, with
    one to three paths, batch 1 included, in float64 to 1e-10."""
    shape = tuple(dims)
    if kind == "add":
        _matches_vjp(bp.add(), (shape,) * n, batch, seed)
    elif kind == "concat":
        rank = len(shape) + 1
        axis = data.draw(st.sampled_from([a for a in range(-rank + 1, rank) if a % rank]))
        sizes = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
        a = axis % rank - 1
        _matches_vjp(bp.concat(axis=axis), tuple((*shape[:a], k, *shape[a + 1:]) for k in sizes),
                     batch, seed)
    elif kind == "fan_out":
        _matches_vjp(bp.fan_out(n), shape, batch, seed)
    else:
        _matches_vjp(bp.branches(*(bp.dense(2), bp.tanh(), bp.layer_norm())[:n]), (shape,) * n,
                     batch, seed)


def test_float32_paths():
    """(fan_out and branches in float32: the branches_add case of tests/test_layers.py.)"""
    for layer, shape in ((bp.add(), ((3,), (3,))), (bp.concat(axis=1), ((2, 3), (1, 3)))):
        _matches_vjp(layer, shape, 2, 5, rtol=1e-5, dtype=jnp.float32)


def test_the_adjoints_written_out():
    """fan-out sums, add copies, concat splits — on numbers small enough to read."""
    a, b, c = jnp.ones((1, 2)), 2 * jnp.ones((1, 2)), jnp.asarray([[3.0, 4.0, 5.0]])
    _, cache = bp.fan_out(3).forward((), a)
    np.testing.assert_array_equal(bp.fan_out(3).backward((), cache, (a, b, a))[1], 4.0)
    _, cache = bp.add().forward((), (a, b))
    assert all(np.array_equal(d, c[:, :2]) for d in bp.add().backward((), cache, c[:, :2])[1])
    _, cache = bp.concat().forward((), (jnp.ones((1, 1)), a))
    d0, d1 = bp.concat().backward((), cache, c)[1]
    np.testing.assert_array_equal(d0, [[3.0]])
    np.testing.assert_array_equal(d1, [[4.0, 5.0]])


# --------------------------------------------------------------------------------------
# serial, backprop and training through tuple-valued activations

BLOCK = bp.serial(bp.fan_out(2), bp.branches(bp.dense(4), bp.serial(bp.dense(4), bp.relu())),
                  bp.add())


def test_serial_chains_tuple_activations_and_trains():
    params, shape = BLOCK.init(jax.random.key(0), (3,))
    assert shape == (4,)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)))
    (pa, (pb, _)) = params[1]
    want = x @ pa.w + pa.b[None] + jnp.maximum(x @ pb.w + pb.b[None], 0)
    np.testing.assert_allclose(BLOCK.forward(params, x)[0], want, rtol=1e-12)
    y = jnp.zeros((5, 4))
    both = jax.jit(lambda p: (bp.backprop(BLOCK, bp.mse())(p, x, y),
                              bp.autodiff(BLOCK, bp.mse())(p, x, y)))
    (v_m, g_m), (v_a, g_a) = both(params)
    np.testing.assert_allclose(v_m, v_a, rtol=1e-14)
    assert_trees_close(g_m, g_a, 1e-10, "backprop vs autodiff")
    step = bp.make_train_step(BLOCK, bp.mse(), bp.optim.sgd(0.1))
    opt_state = bp.optim.sgd(0.1).init(params)
    new, _, metrics = step(params, opt_state, x, y)
    assert float(bp.objective(BLOCK, bp.mse())(new, x, y)) < float(metrics["loss"])
    # A serial may start from a tuple input: init takes a tuple of shapes.
    merge = bp.serial(bp.add(), bp.dense(2))
    assert merge.init(jax.random.key(0), ((3,), (3,)))[1] == (2,)


# --------------------------------------------------------------------------------------
# Seeded wrong derivations in the combinators themselves: caught, located to them.

def _slip(layer, backward):
    return layer._replace(backward=backward)


SLIPS = {
    "fan_out_keeps_one_path": (_slip(bp.fan_out(2), lambda p, c, dy: ((), dy[0])),
                               "layer 0 (fan_out(2)): dx wrong"),
    "add_averages": (_slip(bp.add(), lambda p, c, dy: ((), (dy / 2, dy / 2))),
                     "layer 2 (add): dx[0], dx[1] wrong"),
    "concat_reads_from_0": (_slip(bp.concat(), lambda p, c, dy: ((), (dy[:, :2], dy[:, :3]))),
                            "layer 2 (concat(axis=-1)): dx[1] wrong"),
}


@pytest.mark.parametrize("slip", SLIPS)
def test_seeded_combinator_slips_are_caught_and_located(slip):
    layer, location = SLIPS[slip]
    merge = layer if slip != "fan_out_keeps_one_path" else bp.concat()
    split = layer if slip == "fan_out_keeps_one_path" else bp.fan_out(2)
    paths = (bp.dense(3), bp.tanh()) if "add" in slip else (bp.dense(2), bp.tanh())
    net = bp.serial(split, bp.branches(*paths), merge)
    report = bp.check_layer(net, (3,), batch_sizes=(2,), draws=1)
    assert not report.ok and report.location == location, report


# --------------------------------------------------------------------------------------
# Localisation through every combinator, by its wiring

def _data(net, shape=(3,), batch=3, out=None):
    params, out_shape = net.init(jax.random.key(0), shape)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, *shape)))
    return params, x, jnp.asarray(rng.standard_normal((batch, *out_shape)))


def _scaled_dw(layer):
    """``layer`` with its hand-derived weight gradient 10% off (a slip in dparams)."""
    def backward(params, cache, dy):
        dparams, dx = layer.backward(params, cache, dy)
        return dparams._replace(**{dparams._fields[0]: 1.1 * dparams[0]}), dx
    return layer._replace(backward=backward)


FORGOT_TANH = bp.tanh()._replace(backward=lambda p, y, dy: ((), dy))


def test_a_slip_in_a_branch_is_located_to_that_branch():
    net = bp.serial(bp.dense(3), bp.fan_out(2), bp.branches(_scaled_dw(bp.dense(4)),
                                                           bp.serial(bp.dense(4), bp.tanh())),
                    bp.add())
    report = bp.check_gradients(net, bp.mse(), *_data(net))
    assert report.location == ("layer 2 (branches(dense(4), serial(dense(4), tanh))) › branch 0 "
                               "(dense(4)): dw wrong"), report


def test_a_slip_in_a_transformer_block_is_located_to_the_attention():
    attention = _scaled_dw(bp.multi_head_attention(2, causal=True))
    net = bp.serial(bp.residual(bp.serial(bp.layer_norm(), attention)),
                    bp.residual(bp.serial(bp.layer_norm(), bp.dense(8), bp.gelu(), bp.dense(4))))
    report = bp.check_gradients(net, bp.mse(), *_data(net, (3, 4), batch=2))
    assert report.location == (
        "layer 0 (residual(serial(layer_norm, multi_head_attention(2, causal)))) › layer 0 "
        "(serial(layer_norm, multi_head_attention(2, causal))) › layer 1 "
        "(multi_head_attention(2, causal)): dw_qkv wrong"), report


def _pair(f, g, wired):
    """A user's two-branch combinator ``y = f(x) + g(x)``, with or without its wiring."""
    def init(key, shape):
        kf, kg = jax.random.split(key)
        return (f.init(kf, shape)[0], g.init(kg, shape)[0]), shape

    def forward(params, x, *, key=None):
        (yf, cf), (yg, cg) = f.forward(params[0], x), g.forward(params[1], x)
        return yf + yg, (cf, cg)

    def backward(params, cache, dy):
        (dpf, dxf), (dpg, dxg) = (f.backward(params[0], cache[0], dy),
                                  g.backward(params[1], cache[1], dy))
        return (dpf, dpg), dxf + dxg

    def apply(run, params, x, key=None):
        return run(0, params[0], x, None) + run(1, params[1], x, None)

    return bp.Layer(init, forward, backward, f"pair({f.name}, {g.name})", (f, g),
                    apply if wired else None)


def test_a_users_combinator_without_wiring_is_checked_as_one_layer():
    """Two branches, not a chain: walked as one before, this crashed; now it is one layer."""
    net = bp.serial(bp.dense(3), _pair(bp.dense(3), FORGOT_TANH, wired=False), bp.dense(2))
    report = bp.check_gradients(net, bp.mse(), *_data(net))
    assert report.location == (f"layer 1 (pair(dense(3), tanh)): dx wrong ({NO_WIRING})"), report


def test_a_right_users_combinator_with_wiring_passes():
    """No false failure through a user's wiring. (A slip inside one, located through its
    wiring, is the second code block of docs/derivations-combinators.md, run by test_docs.py.)"""
    good = bp.serial(bp.dense(3), _pair(bp.dense(3), bp.tanh(), wired=True), bp.dense(2))
    assert bp.check_gradients(good, bp.mse(), *_data(good)).ok


def test_a_combinator_right_in_its_parts_but_not_as_a_whole_is_named():
    pair = _pair(bp.dense(3), bp.tanh(), wired=True)
    dropped = pair._replace(backward=lambda p, c, dy: (pair.backward(p, c, dy)[0], dy))
    report = bp.check_layer(bp.serial(bp.dense(3), dropped), (3,), batch_sizes=(2,), draws=1)
    assert report.location == f"layer 1 (pair(dense(3), tanh)): dx wrong ({COMBINES})", report


def test_a_wiring_that_does_not_fit_its_forward_is_not_trusted():
    pair = _pair(bp.dense(3), FORGOT_TANH, wired=True)
    wrong = pair._replace(wiring=lambda run, params, x, key=None: run(0, params[0], x, None))
    report = bp.check_layer(wrong, (3,), batch_sizes=(2,), draws=1)
    assert report.location.endswith("(checked as one layer: its wiring does not reproduce its "
                                    "forward)"), report
    bad_index = pair._replace(wiring=lambda run, params, x, key=None: run(5, params[0], x, None))
    report = bp.check_layer(bad_index, (3,), batch_sizes=(2,), draws=1)
    assert "its wiring raised ValueError" in report.location
    assert "run(5, ...), but it has 2 sublayer(s)" in report.location, report


# --------------------------------------------------------------------------------------
# summary and print

def test_summary_shows_the_tree_with_shapes_and_params():
    net = bp.serial(bp.dense(3), BLOCK, bp.residual(bp.serial(bp.layer_norm(), bp.dense(4))),
                    _pair(bp.dense(4), bp.tanh(), wired=False))
    s = bp.summary(net, (2,))
    params, _ = net.init(jax.random.key(0), (2,))
    assert s.total == bp.count_params(params) == 9 + 32 + 28 + 20
    rows = {r.tree.split(": ")[-1] if r.depth else r.name: r for r in s.rows}
    assert rows["fan_out(2)"].output_shape == ((3,), (3,))
    assert rows["branches"].output_shape == ((4,), (4,)) and rows["branches"].params == 32
    assert [r.depth for r in s.rows] == [0, 1, 1, 2, 2, 3, 3, 4, 4, 2, 1, 2, 3, 3, 1]
    assert s.rows[-1].name == "pair(dense(4), tanh)"  # no wiring: one row, parts not shown
    text = str(s)
    assert "│     ├─ layer 0: dense(4)" in text and "total: 89 parameters" in text
    assert "\n│  │  ├─ branch 0: dense(4)   (4,)               16\n" in text
    shown = repr(net)
    assert shown.startswith("Layer serial\n├─ layer 0: dense(3)\n├─ layer 1: serial\n")
    assert "└─ layer 3: pair\n   ├─ sublayer 0: dense(4)" in shown
    assert "function" not in shown and "0x" not in shown and str(bp.dense(3)) == "Layer dense(3)"


# --------------------------------------------------------------------------------------
# errors: the argument, the value, what was expected, the fix

def test_errors_name_the_argument_and_the_fix():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"fan_out: n=0 must be a positive int"):
        bp.fan_out(0)
    with pytest.raises(ValueError, match=r"branches: no layers given.*Fix"):
        bp.branches()
    with pytest.raises(TypeError, match=r"branches: layer 1 must be a jaxbp Layer"):
        bp.branches(bp.dense(2), bp.relu)
    with pytest.raises(ValueError, match=r"branches\(dense\(2\), tanh\): input_shape=\(3,\) must "
                                         r"be a tuple of 2 shapes.*Fix: put bp.fan_out\(2\)"):
        bp.branches(bp.dense(2), bp.tanh()).init(key, (3,))
    with pytest.raises(ValueError, match=r"add: input_shape=\(\(3,\), \(2,\)\) has different "
                                         r"shapes.*Fix"):
        bp.add().init(key, ((3,), (2,)))
    with pytest.raises(ValueError, match=r"concat\(axis=0\): axis=0 must be a feature axis.*"
                                         r"batch axis"):
        bp.concat(axis=0).init(key, ((3,), (2,)))
    with pytest.raises(ValueError, match=r"cannot be concatenated on axis -1.*Fix"):
        bp.concat().init(key, ((2, 3), (1, 3)))
    with pytest.raises(TypeError, match=r"concat: axis='x' must be an int"):
        bp.concat(axis="x")
    with pytest.raises(ValueError, match=r"fan_out\(2\): dy must be a tuple of 2 arrays, one per "
                                         r"path, got ndarray"):
        _, cache = bp.fan_out(2).forward((), jnp.ones((1, 2)))
        bp.fan_out(2).backward((), cache, np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"add: inputs have shapes \(\(1, 2\), \(1, 3\)\)"):
        bp.add().forward((), (jnp.ones((1, 2)), jnp.ones((1, 3))))


# --------------------------------------------------------------------------------------
# the derivation page

def test_derivation_page_links_and_cites_existing_tests():
    """(Its two code blocks run in tests/test_docs.py.)"""
    text = PAGE.read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (PAGE.parent / target).exists(), f"broken link {target}"
    for name in set(re.findall(r"::(test_\w+)", text)):
        assert f"def {name}(" in pathlib.Path(__file__).read_text(), f"cites missing {name}"
    assert len(re.findall(r"```python\n(.*?)```", text, re.S)) == 2


@pytest.mark.parametrize("module", ["jaxbp.layers.branching", "jaxbp.summarize"])
def test_docstring_examples(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


# ---- tuple inputs in the checker and the custom_vjp bridge; the fan-out hints ----------


def test_check_layer_takes_a_tuple_input_and_names_the_wrong_entry():
    assert bp.check_layer(bp.concat(), ((3,), (2,)), draws=1).ok
    add = bp.add()
    slip = add._replace(backward=lambda p, c, dy: ((), (dy, jnp.zeros_like(dy))))
    report = bp.check_layer(slip, ((3,), (3,)), draws=1)
    assert [r.path for r in report.failures] == ["x[1]"]
    x = (np.ones((2, 3)), np.full((2, 3), 0.5))
    assert bp.check_layer(add, inputs=[x]).ok


@pytest.mark.parametrize("kept, missing", [((0,), "1, 2"), ((0, 2), "1"), ((1,), "0, 2")])
def test_a_fan_out_that_drops_a_path_is_diagnosed(kept, missing):
    fan = bp.fan_out(3)
    slip = fan._replace(backward=lambda p, c, dy: ((), sum(dy[k] for k in kept)))
    (row,) = bp.check_layer(slip, (3,), draws=1).failures
    assert row.path == "x" and row.hint.startswith(
        f"missing fan-out path: reference − manual equals the cotangent of path(s) {missing} ")


def test_a_residual_that_drops_its_identity_path_is_diagnosed():
    res = bp.residual(bp.serial(bp.dense(3), bp.tanh()))

    def backward(params, cache, dy):
        dparams, dx_block = res.sublayers[0].backward(params[0], cache[0], dy)
        return (dparams,), dx_block  # dx = dy + dx_block without the dy

    (row,) = bp.check_layer(res._replace(backward=backward), (3,), draws=1).failures
    assert row.path == "x" and row.hint.startswith("missing skip path")


def test_as_custom_vjp_takes_a_tuple_input():
    net = bp.serial(bp.branches(bp.dense(2), bp.tanh()), bp.concat())
    params, _ = net.init(jax.random.key(0), ((3,), (2,)))
    x = (jnp.linspace(-1, 1, 12).reshape(4, 3), jnp.linspace(0, 1, 8).reshape(4, 2))
    apply = bp.as_custom_vjp(net)
    got = jax.grad(lambda p, x_: jnp.sum(apply(p, x_) ** 2), argnums=(0, 1))(params, x)
    want = jax.grad(lambda p, x_: jnp.sum(net.forward(p, x_)[0] ** 2), argnums=(0, 1))(params, x)
    assert_trees_close(got, want, 1e-5, "as_custom_vjp with a tuple x")
    wrong = net._replace(backward=lambda p, c, dy: (net.backward(p, c, dy)[0], dy))
    with pytest.raises(ValueError, match=r"x is a tuple of 2 arrays, but dx is"):
        jax.grad(lambda p: jnp.sum(bp.as_custom_vjp(wrong)(p, x)))(params)
