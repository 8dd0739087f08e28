"""conv2d, max_pool, avg_pool, flatten: hand-derived backward vs jax.vjp, geometry, ties, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import jaxbp as bp
from jaxbp.layers._windows import conv_transpose_input, resolve_padding
from jaxbp.layers.conv import conv_kernel_grad
from support import assert_layer_matches_vjp, layer_vjp_pair, rel_err

PADDINGS = st.one_of(
    st.sampled_from(["SAME", "VALID"]),
    st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
              st.tuples(st.integers(0, 2), st.integers(0, 2))))


@st.composite
def geometries(draw):
    """A window that fits: (H, W, kh, kw, sh, sw, padding), odd sizes and strides included."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    padding = draw(PADDINGS)
    h, w = draw(st.integers(kh, 7)), draw(st.integers(kw, 7))  # >= window, so VALID fits
    return h, w, kh, kw, draw(st.integers(1, 3)), draw(st.integers(1, 3)), padding


@settings(max_examples=5)
@given(geometry=geometries(), batch=st.integers(1, 3), c_in=st.integers(1, 3),
       seed=st.integers(0, 999))
def test_conv2d_matches_vjp_over_random_geometry(geometry, batch, c_in, seed):
    h, w, kh, kw, sh, sw, padding = geometry
    layer = bp.conv2d(2, (kh, kw), stride=(sh, sw), padding=padding)
    assert_layer_matches_vjp(layer, (h, w, c_in), batch=batch, seed=seed, jit=True)


@settings(max_examples=4)
@given(geometry=geometries(), batch=st.integers(1, 3), seed=st.integers(0, 999),
       kind=st.sampled_from(["max_pool", "avg_pool"]))
def test_pooling_matches_vjp_over_random_geometry(geometry, batch, seed, kind):
    h, w, kh, kw, sh, sw, padding = geometry
    if kind == "max_pool" and not isinstance(padding, str):
        padding = tuple(tuple(min(p, k - 1) for p in side) for side, k in zip(padding, (kh, kw)))
    layer = getattr(bp, kind)((kh, kw), stride=(sh, sw), padding=padding)
    assert_layer_matches_vjp(layer, (h, w, 2), batch=batch, seed=seed, jit=True)


# Odd sizes whose SAME padding is asymmetric (odd total): (H, W, k, stride) -> pads.
ASYMMETRIC = [((7, 6, 4, 2), ((1, 2), (1, 1))), ((1, 4, 2, 1), ((0, 1), (0, 1)))]


@pytest.mark.parametrize("case,pads", ASYMMETRIC, ids=["7x6k4s2", "1x4k2s1"])
def test_same_padding_is_asymmetric_like_xla(case, pads):
    h, w, k, s = case
    assert resolve_padding("SAME", (h, w), (k, k), (s, s)) == pads
    layer = bp.conv2d(3, k, stride=s)
    params, shape = layer.init(jax.random.key(0), (h, w, 2))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, h, w, 2)))
    y, _ = layer.forward(params, x)
    want = lax.conv_general_dilated(x, params.w, (s, s), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))
    assert y.shape == (1, *shape) == want.shape
    assert rel_err(y, want) < 1e-12
    assert_layer_matches_vjp(layer, (h, w, 2), batch=1, seed=h * w + k, jit=True)


def test_conv2d_forward_matches_loop_reference():
    """The forward itself, against a NumPy loop over positions (strided, explicitly padded)."""
    rng = np.random.default_rng(3)
    x, pads, stride = rng.standard_normal((2, 5, 6, 3)), ((2, 0), (1, 1)), (2, 3)
    layer = bp.conv2d(4, (3, 2), stride=stride, padding=pads)
    params, (ho, wo, _) = layer.init(jax.random.key(1), (5, 6, 3))
    w, b = np.asarray(params.w), np.asarray(params.b) + 0.5
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    want = np.zeros((2, ho, wo, 4))
    for p in range(ho):
        for q in range(wo):
            patch = xp[:, p * stride[0]:p * stride[0] + 3, q * stride[1]:q * stride[1] + 2, :]
            want[:, p, q, :] = np.einsum("nijc,ijco->no", patch, w) + b
    y, _ = layer.forward(bp.Conv2DParams(params.w, jnp.asarray(b)), jnp.asarray(x))
    assert rel_err(y, want) < 1e-12


def test_seeded_wrong_conv_derivations_are_caught():
    """Two classic slips: the transposed convolution without the kernel flip, and SAME's odd
    extra padding row put on top instead of the bottom. Both must fail the check."""
    good = bp.conv2d(2, 4, stride=2)      # on 7x7: SAME pads ((1, 2), (1, 2))
    pads = ((1, 2), (1, 2))

    def no_flip(params, x, dy):
        dparams, _ = good.backward(params, x, dy)
        w_unflipped = jnp.flip(params.w, axis=(0, 1))    # flipped again inside: net no flip
        return dparams, conv_transpose_input(dy, w_unflipped, x.shape[1:3], (2, 2), pads)

    def extra_row_on_top(params, x, dy):
        flipped = ((2, 1), (2, 1))
        dw = conv_kernel_grad(x, dy, (4, 4), (2, 2), flipped)
        dx = conv_transpose_input(dy, params.w, x.shape[1:3], (2, 2), flipped)
        return bp.Conv2DParams(dw, jnp.sum(dy, axis=(0, 1, 2))), dx

    assert_layer_matches_vjp(good, (7, 7, 1), batch=2, seed=0)
    for wrong in (no_flip, extra_row_on_top):
        with pytest.raises(AssertionError, match="relative error"):
            assert_layer_matches_vjp(good._replace(backward=wrong), (7, 7, 1), batch=2, seed=0)


def test_max_pool_ties_go_to_the_first_maximum():
    """Tie rule: each window sends dy to its first max in row-major order; as jax.vjp does."""
    x = jnp.asarray([[1., 3., 3.],
                     [3., 0., 1.],
                     [2., 3., 3.]]).reshape(1, 3, 3, 1)
    layer = bp.max_pool(2, stride=1)       # four overlapping 2x2 windows, every one tied
    y, cache = layer.forward((), x)
    assert np.array_equal(y[0, :, :, 0], [[3., 3.], [3., 3.]])
    dy = jnp.asarray([[1., 10.], [100., 1000.]]).reshape(1, 2, 2, 1)
    _, dx = layer.backward((), cache, dy)
    # windows (0,0) and (0,1) both pick x[0,1]; (1,0) picks x[1,0]; (1,1) picks x[2,1].
    want = np.array([[0., 11., 0.],
                     [100., 0., 0.],
                     [0., 1000., 0.]])
    assert np.array_equal(dx[0, :, :, 0], want)
    (dx_vjp,) = jax.vjp(lambda x: layer.forward((), x)[0], x)[1](dy)
    assert np.array_equal(dx_vjp, dx)


def test_max_pool_constant_input_and_padding_never_win():
    """All-equal windows (a kink everywhere): the gradient goes to each window's top-left real
    element, never to -inf padding; total gradient is conserved."""
    x = jnp.zeros((1, 3, 3, 2))
    layer = bp.max_pool(2, padding="SAME")   # 3x3 -> 2x2, pads ((0, 1), (0, 1))
    y, cache = layer.forward((), x)
    dy = jnp.ones_like(y)
    _, dx = layer.backward((), cache, dy)
    want = np.zeros((3, 3))
    want[0, 0] = want[0, 2] = want[2, 0] = want[2, 2] = 1.0
    assert np.array_equal(dx[0, :, :, 0], want) and np.array_equal(dx[0, :, :, 1], want)
    got, oracle = layer_vjp_pair(layer, (), x, dy)
    assert np.array_equal(got[1], oracle[1])


def test_avg_pool_excludes_padding_from_the_count():
    x = jnp.ones((1, 3, 3, 1))
    y, _ = bp.avg_pool(2, padding="SAME").forward((), x)
    assert np.allclose(y, 1.0)        # border windows average their real elements only


def test_flatten_round_trip():
    layer = bp.flatten()
    params, shape = layer.init(None, (2, 3, 4))
    x = jnp.arange(48.0).reshape(2, 2, 3, 4)
    y, cache = layer.forward(params, x)
    assert shape == (24,) and y.shape == (2, 24)
    _, dx = layer.backward(params, cache, y)
    assert np.array_equal(dx, x)


@pytest.mark.parametrize("make", [lambda: bp.conv2d(3, (3, 2), stride=(2, 1), padding="VALID"),
                                  lambda: bp.max_pool(3, stride=2, padding="SAME"),
                                  lambda: bp.avg_pool((2, 3), stride=1)],
                         ids=["conv2d", "max_pool", "avg_pool"])
def test_float32_path(make):
    assert_layer_matches_vjp(make(), (5, 6, 2), batch=2, seed=5, rtol=1e-5, dtype=jnp.float32,
                             jit=True)


# --------------------------------------------------------------------------------------
# Errors name the argument, the bad value and the fix.

@pytest.mark.parametrize("make,match", [
    (lambda: bp.conv2d(0, 3), r"c_out=0 must be a positive int"),
    (lambda: bp.conv2d(4, (3, 0)), r"kernel_size=\(3, 0\) must be a positive int"),
    (lambda: bp.conv2d(4, 3, stride=1.5), r"stride=1.5 must be a positive int"),
    (lambda: bp.conv2d(4, 3, padding="FULL"), r"padding='FULL' is not understood"),
    (lambda: bp.conv2d(4, 3, padding=((1, -1), (0, 0))), r"non-negative ints"),
    (lambda: bp.max_pool(2, stride=0), r"stride=0 must be a positive int"),
])
def test_factory_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_shape_errors():
    with pytest.raises(ValueError, match=r"input_shape=\(64,\) must be \(H, W, c_in\)"):
        bp.conv2d(4, 3).init(jax.random.key(0), (64,))
    with pytest.raises(ValueError, match=r"height 2 \(padded to 2\) is smaller than the window 3"):
        bp.conv2d(4, 3, padding="VALID").init(jax.random.key(0), (2, 5, 1))
    params, _ = bp.conv2d(4, 3).init(jax.random.key(0), (5, 5, 1))
    with pytest.raises(ValueError, match=r"shape \(2, 5, 5, 3\).*\(batch, H, W, 1\)"):
        bp.conv2d(4, 3).forward(params, jnp.ones((2, 5, 5, 3)))
    with pytest.raises(ValueError, match=r"padding .* as wide as the window"):
        bp.max_pool(2, padding=((2, 0), (0, 0))).init(None, (4, 4, 1))
