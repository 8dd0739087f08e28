"""Data parallelism: 4 simulated CPU devices give the single-device parameters (float64).

JAX fixes its device count when it starts, so the 4-device checks run in a subprocess started
with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``: this file run as a script is
that worker; it prints one JSON line of measurements that the test below judges.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.parallel import data_parallel, make_mesh, masked, pad_rows

D_IN, D_OUT, STEPS, LEARNING_RATE = 5, 3, 6, 0.5


def _problem(batch: int, seed: int = 0):
    net = bp.serial(bp.dense(8), bp.tanh(), bp.dense(D_OUT))
    params, _ = net.init(jax.random.key(seed), (D_IN,))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, D_IN)))
    y = jnp.asarray(rng.integers(0, D_OUT, batch))
    return net, params, x, y


def _train(grad_fn, params, x, y):
    """``STEPS`` of gradient descent ``θ ← θ − α ∇J(θ)`` in one jitted scan.

    Returns ``(params, values, compiled program text)``.
    """
    def step(p, _):
        value, grads = grad_fn(p, x, y)
        return jax.tree_util.tree_map(lambda a, g: a - LEARNING_RATE * g, p, grads), value

    compiled = jax.jit(lambda p: jax.lax.scan(step, p, None, length=STEPS)).lower(params).compile()
    return (*compiled(params), compiled.as_text())


def _max_rel(a, b) -> float:
    errs = [float(jnp.max(jnp.abs(u - v)) / jnp.maximum(jnp.max(jnp.abs(v)), 1e-300))
            for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]
    return max(errs)


def _worker() -> dict:
    """Runs under 4 devices: data-parallel vs single-device, both gradient sources."""
    out = {"devices": jax.device_count()}
    loss = bp.softmax_cross_entropy()
    for batch in (8, 10):  # 10 rows do not divide by 4: padded to 12 and masked
        net, params, x, y = _problem(batch)
        for source in (bp.backprop, bp.autodiff):
            name = f"{source.__name__}_b{batch}"
            single = source(net, loss, l2=0.01)
            parallel = data_parallel(source, devices=4)(net, loss, l2=0.01)
            (p1, v1, _), (p4, v4, hlo) = (_train(single, params, x, y),
                                          _train(parallel, params, x, y))
            out[f"params_{name}"] = _max_rel(p4, p1)
            out[f"values_{name}"] = _max_rel(v4, v1)  # the objective at every step
            out[f"moved_{name}"] = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
                jax.tree_util.tree_leaves(p1), jax.tree_util.tree_leaves(params)))
            out[f"replicated_{name}"] = tuple(jax.tree_util.tree_leaves(p4)[0].sharding.spec) == ()
            out[f"all_reduce_{name}"] = "all-reduce" in hlo
    out.update(_fit_worker())
    out.update(_sweep_worker())
    return out


def _sweep_worker() -> dict:
    """``bp.sweep(devices=4)`` against one device: 4 runs sharded one per device, and 3 runs
    (padded to 4 with a copy of the last: the same compiled program as the 4 runs')."""
    net, _, x, y = _problem(27)
    loss, rates = bp.softmax_cross_entropy(), [0.05, 0.1, 0.2, 0.4]

    def run(rates, **kw):
        return bp.sweep(net, loss, bp.optim.momentum, x, y, epochs=2, batch_size=10,
                        learning_rates=rates, accuracy=None, **kw)

    single, four, padded = run(rates), run(rates, devices=4), run(rates[:3], devices=4)
    first3 = jax.tree_util.tree_map(lambda a: a[:3], single.params)
    leaf = jax.tree_util.tree_leaves(four.params)[0]
    return {"sweep_params": _max_rel(four.params, single.params),
            "sweep_padded_params": _max_rel(padded.params, first3),
            "sweep_loss": max(abs(a["train_loss"][-1] - b["train_loss"][-1])
                              for a, b in zip(four.histories, single.histories)),
            "sweep_sharded": tuple(leaf.sharding.spec)[:1] == ("batch",)
            and len(leaf.sharding.device_set) == 4,
            "sweep_runs": [len(padded.settings), len(padded.histories)]}


def _fit_worker() -> dict:
    """``fit(devices=4)`` against ``fit()``; then a 4-device run stopped and resumed."""
    import tempfile

    from jaxbp.train import fit

    net, params, x, y = _problem(27)  # batches of 10: 10, 10, 7 real rows, each padded to 12
    opt = bp.optim.momentum(0.1)
    out = {}

    def run(source, epochs, **kw):
        return fit(net, bp.softmax_cross_entropy(), opt, params, x, y, key=3, epochs=epochs,
                   batch_size=10, grad=source, accuracy=None, progress=False, **kw)

    # Both gradient sources are compared step by step above; one suffices through fit.
    single, four = run("backprop", 3), run("backprop", 3, devices=4)
    out["fit_params"] = _max_rel(four.params, single.params)
    out["fit_loss"] = _max_rel(jnp.asarray(four.history["train_loss"]),
                               jnp.asarray(single.history["train_loss"]))
    out["fit_moved"] = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(
        jax.tree_util.tree_leaves(single.params), jax.tree_util.tree_leaves(params)))
    out["fit_on_4"] = all(len(a.sharding.device_set) == 4 and a.sharding.is_fully_replicated
                          for a in jax.tree_util.tree_leaves(four.params))
    with tempfile.TemporaryDirectory() as d:
        run("backprop", 2, devices=4, checkpoint_dir=d)
        resumed = run("backprop", 3, devices=4, checkpoint_dir=d, resume=True)
    out["fit_resume_bitwise"] = all(
        np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(resumed.params),
                                             jax.tree_util.tree_leaves(four.params)))
    # batch norm: its statistics over the whole batch, sharded 3 rows per device
    bn = bp.serial(bp.dense(8), bp.tanh(), bp.batch_norm(), bp.dense(D_OUT))
    bn_params, _ = bn.init(jax.random.key(1), (D_IN,))
    bn_single, bn_four = (fit(bn, bp.softmax_cross_entropy(), opt, bn_params, x, y, key=3,
                              epochs=2, batch_size=12, progress=False, **kw)
                          for kw in ({}, {"devices": 4}))
    out["fit_bn"] = _max_rel((bn_four.params, bn_four.layer_state),
                             (bn_single.params, bn_single.layer_state))
    out["fit_bn_moved"] = float(jnp.max(jnp.abs(bn_single.layer_state[2].mean)))
    state, k = bp.init_layer_state(bn, bn_params), jax.random.key(4)
    one_dp, four_dp = (source(bn, bp.softmax_cross_entropy())(bn_params, x[:12], y[:12], key=k,
                                                              state=state)
                       for source in (bp.backprop, data_parallel(bp.backprop, devices=4)))
    out["data_parallel_bn"] = _max_rel(four_dp, one_dp)
    # ... and a batch that does not split evenly is refused, not padded into the statistics
    out["uneven_bn_errors"] = [_error_of(lambda: fit(bn, bp.softmax_cross_entropy(), opt,
                                                     bn_params, x, y, epochs=1, batch_size=10,
                                                     devices=4, progress=False)),
                               _error_of(lambda: data_parallel(bp.backprop, devices=4)(
                                   bn, bp.softmax_cross_entropy())(bn_params, x[:10], y[:10],
                                                                   key=k, state=state))]
    return out


def _error_of(call) -> str:
    """The message of the ValueError ``call()`` raises (``""`` if it raises none)."""
    try:
        call()
    except ValueError as e:
        return str(e)
    return ""


def test_four_devices_match_one_device():
    """One test, so that under pytest-xdist the 4-device worker runs once, on one worker."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    run = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["devices"] == 4
    for source in ("backprop", "autodiff"):
        for batch in (8, 10):  # 10 rows are padded to 12 and masked
            name = f"{source}_b{batch}"
            assert r[f"moved_{name}"] > 1e-3, f"{name}: training must move the parameters"
            assert r[f"values_{name}"] <= 1e-10, f"{name}: objective differs from one device"
            assert r[f"params_{name}"] <= 1e-10, f"{name}: parameters differ from one device"
            assert r[f"replicated_{name}"], f"{name}: parameters must come back replicated"
            assert r[f"all_reduce_{name}"], f"{name}: no all-reduce, the batch was not split"
    assert r["fit_moved"] > 1e-3 and r["fit_on_4"], "fit(devices=4) did not train on 4 devices"
    assert r["fit_params"] <= 1e-10, "fit(devices=4) parameters differ from fit()"
    assert r["fit_loss"] <= 1e-10, "fit(devices=4) history differs from fit()"
    assert r["fit_resume_bitwise"], "a 4-device run resumed differs from the uninterrupted one"
    assert r["fit_bn_moved"] > 1e-3, "batch norm's running mean must move in training"
    assert r["fit_bn"] <= 1e-10, "batch norm on 4 devices differs from one device"
    assert r["data_parallel_bn"] <= 1e-10, "data_parallel's (value, grads, state) with batch norm"
    fit_error, dp_error = r["uneven_bn_errors"]
    assert re.search(r"fit: batch_size=10 does not split evenly over 4 devices, and .* has "
                     r"batch statistics.* e\.g\. batch_size=8\.", fit_error), fit_error
    assert re.search(r"data_parallel: a batch of 10 rows does not split evenly over 4 devices"
                     r".* a multiple of 4\.", dp_error), dp_error
    assert r["sweep_sharded"], "sweep(devices=4) did not shard its runs over the 4 devices"
    assert r["sweep_params"] <= 1e-10 and r["sweep_loss"] <= 1e-10, "sweep on 4 devices != 1"
    assert r["sweep_padded_params"] <= 1e-10, "3 runs padded to 4 devices differ from 1 device"
    assert r["sweep_runs"] == [3, 3], "the padding run must not be returned"


# ---- in this process (one device): padding, masking and argument errors ----------------


LOSSES = [
    (bp.mse, lambda rng, n: rng.standard_normal((n, 3))),
    (bp.binary_cross_entropy, lambda rng, n: rng.uniform(0.05, 0.95, (n, 3))),
    (bp.sigmoid_binary_cross_entropy, lambda rng, n: rng.integers(0, 2, (n, 3)).astype(float)),
    (bp.softmax_cross_entropy, lambda rng, n: rng.integers(0, 3, n)),
]


@pytest.mark.parametrize("make_loss, make_target", LOSSES, ids=[m.__name__ for m, _ in LOSSES])
def test_masked_loss_ignores_padding_exactly(make_loss, make_target):
    rng = np.random.default_rng(1)
    loss = make_loss()
    y_pred = jnp.asarray(rng.uniform(0.05, 0.95, (5, 3)))
    y_true = jnp.asarray(make_target(rng, 5))

    @jax.jit
    def compare(y_pred, y_true):
        (p_pad, t_pad), mask = pad_rows(4, y_pred, y_true)
        m = masked(loss, mask)
        # The masked gradient must also be the derivative of the masked value.
        return (mask, m.value(p_pad, t_pad), loss.value(y_pred, y_true), m.grad(p_pad, t_pad),
                loss.grad(y_pred, y_true), jax.grad(m.value)(p_pad, t_pad))

    mask, value_pad, value, dpad, dreal, dauto = compare(y_pred, y_true)
    assert mask.tolist() == [1] * 5 + [0] * 3
    assert abs(float(value_pad - value)) <= 1e-14 * abs(float(value))
    np.testing.assert_allclose(dpad[:5], dreal, rtol=1e-12, atol=0)
    assert np.all(np.asarray(dpad[5:]) == 0.0)
    np.testing.assert_allclose(dpad, dauto, rtol=1e-10, atol=1e-15)


def test_pad_rows_is_a_no_op_when_divisible():
    x = jnp.ones((8, 2))
    (same,), mask = pad_rows(4, x)
    assert same is x and float(jnp.sum(mask)) == 8


def test_one_device_data_parallel_matches():
    net, params, x, y = _problem(6)
    loss = bp.softmax_cross_entropy()
    _, want = jax.jit(bp.backprop(net, loss))(params, x, y)
    _, got = data_parallel("backprop", devices=1)(net, loss)(params, x, y)
    assert _max_rel(got, want) <= 1e-12


def test_docstring_examples():
    import doctest

    import jaxbp.parallel

    result = doctest.testmod(jaxbp.parallel, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_errors_name_the_argument():
    n = jax.device_count()
    with pytest.raises(ValueError, match=rf"devices={n + 1} but this process sees {n} device.*"
                                         r"xla_force_host_platform_device_count"):
        make_mesh(n + 1)
    with pytest.raises(ValueError, match=r"devices=0 .*expected 1 <= devices"):
        make_mesh(0)
    with pytest.raises(TypeError, match=r"devices=2.5 must be None"):
        make_mesh(2.5)
    with pytest.raises(ValueError, match=r"gradient='manual' is not a gradient source.*autodiff"):
        data_parallel("manual")
    with pytest.raises(TypeError, match=r"loss must be a jaxbp Loss"):
        data_parallel(bp.backprop, devices=1)(bp.serial(bp.dense(2)), bp.mse)
    with pytest.raises(ValueError, match=r"pad_rows: arrays have different batch sizes \[3, 4\]"):
        pad_rows(2, jnp.ones((3, 1)), jnp.ones((4, 1)))


if __name__ == "__main__":
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    print(json.dumps(_worker()))
