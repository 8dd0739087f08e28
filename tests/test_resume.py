"""Exact resume: 10 epochs straight = 5 epochs, stop, resume to 10 — bit for bit, from the API
and from the ``jaxbp train`` command line."""

from __future__ import annotations

import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxbp as bp
from jaxbp import checkpoint
from jaxbp.checkpoint import CheckpointError
from jaxbp.train import fit, read_log


def _net(hidden: int = 8):
    # Dropout makes the per-step keys matter: a resume that lost the key would differ.
    return bp.serial(bp.dense(hidden), bp.tanh(), bp.dropout(0.2), bp.dense(3))


# One network, loss and optimizer for every run, so they all share one compiled epoch.
NET, LOSS, OPTIMIZER = _net(), bp.softmax_cross_entropy(), bp.optim.adam(0.05)


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2))
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0).astype(np.int32)
    return x, y


def _fit(net, epochs, **kw):
    x, y = _data()
    params, _ = net.init(jax.random.key(0), (2,))
    # 40 examples in batches of 16: shuffled each epoch, the last batch ragged (masked).
    return fit(net, LOSS, OPTIMIZER, params, x, y, key=1, epochs=epochs, batch_size=16,
               validation=(x[:8], y[:8]), accuracy=None, progress=False, **kw)


def _leaves(tree):
    out = []
    for leaf in jax.tree_util.tree_leaves(tree):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        out.append(np.asarray(leaf))
    return out


def _assert_bit_identical(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    for u, v in zip(la, lb):
        assert u.dtype == v.dtype and u.shape == v.shape
        assert np.array_equal(u, v), f"differs by {np.max(np.abs(u - v))}"


def _without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def test_api_resume_is_bit_identical(tmp_path):
    net = NET
    straight = _fit(net, 10)
    first = _fit(net, 5, checkpoint_dir=tmp_path)
    assert checkpoint.latest(tmp_path).name == "checkpoint_00000005.npz"
    resumed = _fit(net, 10, checkpoint_dir=tmp_path, resume=True)
    assert first.history["epoch"] == [1, 2, 3, 4, 5]
    assert int(resumed.state.epoch) == 10 and int(resumed.state.step) == 30
    _assert_bit_identical(resumed.state, straight.state)  # params, opt_state, step, epoch, key
    assert _without_seconds(resumed.history) == _without_seconds(straight.history)
    assert _leaves(straight.params)[0].std() > 0 and not np.array_equal(
        _leaves(first.params)[0], _leaves(straight.params)[0])  # the second half did train
    # Resuming a finished run trains nothing more and returns the saved state.
    again = _fit(net, 10, checkpoint_dir=tmp_path, resume=True)
    _assert_bit_identical(again.state, straight.state)


def test_early_stopping_state_survives_resume(tmp_path):
    net = NET
    straight = _fit(net, 8, patience=2, min_delta=10.0)  # no epoch improves by 10: stops at 3
    _fit(net, 2, patience=2, min_delta=10.0, checkpoint_dir=tmp_path)
    resumed = _fit(net, 8, patience=2, min_delta=10.0, checkpoint_dir=tmp_path, resume=True)
    assert straight.best_epoch == resumed.best_epoch == 1
    assert resumed.history["epoch"] == straight.history["epoch"] == [1, 2, 3]
    _assert_bit_identical(resumed.params, straight.params)


def test_resume_errors_are_clear(tmp_path):
    net = NET
    with pytest.raises(ValueError, match=r"resume=True needs checkpoint_dir="):
        _fit(net, 1, resume=True)
    _fit(net, 1, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match=r"already holds checkpoint_00000001\.npz; pass "
                                         r"resume=True"):
        _fit(net, 2, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"leaf \['state'\]\.params\[0\]\.w has shape "
                                              r"\(2, 8\) in the file but \(2, 4\)"):
        _fit(_net(hidden=4), 2, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"keep_checkpoints=0 must be an int >= 1"):
        _fit(net, 1, checkpoint_dir=tmp_path / "new", keep_checkpoints=0)


# ---- the command line: three real `jaxbp train` processes ------------------------------

def _cli(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "jaxbp.cli", "train", "xor", "--no-progress",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def _finish(proc):
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-2000:]
    return out


def _saved_state(path):
    with np.load(path, allow_pickle=False) as npz:
        return [npz[k] for k in sorted(npz.files) if k.startswith("leaf_")]


def test_cli_resume_is_bit_identical(tmp_path):
    straight, half = tmp_path / "straight", tmp_path / "half"
    logs = {name: tmp_path / f"{name}.csv" for name in ("straight", "half")}
    a = _cli("--epochs", "10", "--checkpoint", str(straight), "--log", str(logs["straight"]))
    b = _cli("--epochs", "5", "--checkpoint", str(half),  # the two run side by side
             "--log", str(logs["half"]))
    _finish(a)
    assert "trained 5 epochs" in _finish(b)
    out = _finish(_cli("--epochs", "10", "--checkpoint", str(half), "--resume",
                       "--log", str(logs["half"])))
    assert re.search(r"resuming from .*checkpoint_00000005\.npz \(epoch 5\)", out), out
    assert "trained 5 epochs" in out  # epochs 6..10: --epochs counts the total
    want = _saved_state(checkpoint.step_path(straight, 10))
    got = _saved_state(checkpoint.step_path(half, 10))
    assert len(got) == len(want) > 5
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    # --log continues on --resume: the same records as the uninterrupted run, seconds aside
    straight_log, half_log = (read_log(logs[k]) for k in ("straight", "half"))
    assert half_log["epoch"] == list(range(1, 11))
    for name in set(straight_log) - {"seconds"}:
        assert half_log[name] == straight_log[name], name


def test_cli_refuses_to_overwrite_a_run(tmp_path, capsys):
    from jaxbp.cli import main

    checkpoint.save_step(tmp_path, 3, {"w": np.zeros(2)})
    assert main(["train", "xor", "--epochs", "10", "--checkpoint", str(tmp_path)]) == 2
    assert re.search(r"already holds checkpoint_00000003\.npz; pass --resume to continue",
                     capsys.readouterr().err)
    assert main(["train", "xor", "--resume"]) == 2
    assert "--resume needs --checkpoint DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "xor", "--devices", "0"])
    assert "'0' is not a positive integer" in capsys.readouterr().err
    n = jax.device_count()
    assert main(["train", "xor", "--devices", str(n + 1)]) == 2
    assert f"devices={n + 1} but this process sees {n} device" in capsys.readouterr().err
