"""Robustness beyond a single message: gradients in the params' dtype, files with the user's
umask, divergence stopping with the last finite parameters, and resuming past damage."""

from __future__ import annotations

import os
import re
import stat
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbp as bp
from jaxbp import checkpoint
from jaxbp.cli import UsageError, main
from jaxbp.train import fit
from jaxbp.train.diverge import TrainingDiverged

NET = bp.serial(bp.dense(8), bp.tanh(), bp.dense(3))
PARAMS = NET.init(jax.random.key(0), (2,))[0]
X = np.random.default_rng(0).standard_normal((12, 2))
Y = (X[:, 0] > 0).astype(np.int32)


@pytest.mark.parametrize("grad", [bp.backprop, bp.autodiff], ids=["backprop", "autodiff"])
def test_bfloat16_params_get_bfloat16_gradients(grad):
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), PARAMS)
    x, y = jnp.ones((4, 2), jnp.float32), jnp.zeros((4,), jnp.int32)
    _, grads = grad(NET, bp.softmax_cross_entropy())(params, x, y)
    assert [g.dtype for g in jax.tree_util.tree_leaves(grads)] == [jnp.bfloat16] * 4
    want = bp.autodiff(NET, bp.softmax_cross_entropy())(params, x, y)[1]
    for g, w in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(np.float32(g), np.float32(w), rtol=2e-2, atol=1e-3)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o640
    os.umask(old)


def test_plot_and_checkpoint_files_honour_the_umask(tmp_path, umask_027):
    pytest.importorskip("matplotlib")
    from jaxbp import plot

    png = plot.save_training_plot(tmp_path / "c.png", {"train_loss": [1.0, 0.5]})
    npz = checkpoint.save(tmp_path / "s.npz", {"w": np.zeros(2)})
    for path in (png, npz):
        assert stat.S_IMODE(os.stat(path).st_mode) == umask_027, oct(os.stat(path).st_mode)


def _diverging(**kw):
    net = bp.serial(bp.dense(8), bp.relu(), bp.dense(1))
    x = np.random.default_rng(0).standard_normal((40, 3))
    params = net.init(jax.random.key(0), (3,))[0]
    return fit(net, bp.mse(), bp.optim.sgd(kw.pop("lr")), params, x, 3 * x[:, :1], key=0,
               batch_size=8, progress=False, **kw)


def test_divergence_stops_with_the_last_finite_parameters(tmp_path):
    _diverging(lr=0.01, epochs=1, checkpoint_dir=tmp_path)  # a finite epoch 1 on disk
    with pytest.raises(TrainingDiverged, match=r"training diverged in epoch 2 at step \d of 5"
                                               r" \(step \d+ of the run\)") as info:
        _diverging(lr=1e3, epochs=4, checkpoint_dir=tmp_path, resume=True)
    e = info.value
    assert e.epoch == 2 and 1 <= e.step <= 5 and e.leaf
    leaves = jax.tree_util.tree_leaves((e.result.params, e.result.opt_state))
    assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in leaves)
    assert int(e.result.state.step) == 5 + e.step - 1 and e.result.history["epoch"] == [1]
    assert [p.name for p in checkpoint.checkpoints(tmp_path)] == ["checkpoint_00000001.npz"]


def test_a_gradient_that_goes_nan_is_named():
    def nan_grad_loss():
        base = bp.mse()
        return bp.Loss(base.value, lambda p, t: base.grad(p, t) * jnp.nan, "nan_grad")

    net = bp.serial(bp.dense(2))
    params = net.init(jax.random.key(0), (2,))[0]
    with pytest.raises(TrainingDiverged, match=r"epoch 1 at step 1 of 3 .*the gradient of "
                                               r"params\[0\]\.w went non-finite"):
        fit(net, nan_grad_loss(), bp.optim.sgd(0.1), params, X, np.zeros((12, 2)), key=0,
            epochs=1, batch_size=4, progress=False)


CE, SGD = bp.softmax_cross_entropy(), bp.optim.sgd(0.1)  # one object each: one compiled epoch


def _run(tmp_path, epochs):
    return fit(NET, CE, SGD, PARAMS, X, Y, key=0, epochs=epochs, batch_size=4, progress=False,
               checkpoint_dir=tmp_path, resume=True)


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path):
    _run(tmp_path, 2)
    newest = checkpoint.checkpoints(tmp_path)[0]
    data = bytearray(newest.read_bytes())
    with zipfile.ZipFile(newest) as z:
        end_of_first = z.infolist()[1].header_offset
    data[end_of_first - 40] ^= 0xFF  # one flipped byte in the first leaf's data: a bad CRC
    newest.write_bytes(bytes(data))
    with pytest.warns(checkpoint.DamagedCheckpointWarning,
                      match=r"skipping a damaged checkpoint: .*checkpoint_00000002\.npz.* "
                            r"Resuming from checkpoint_00000001\.npz"):
        resumed = _run(tmp_path, 3)
    assert resumed.history["epoch"] == [1, 2, 3]


def test_cli_warns_starts_afresh_and_debug_shows_the_traceback(tmp_path, capsys):
    ck = str(tmp_path / "ck")
    assert main(["train", "xor", "--epochs", "2", "--checkpoint", ck, "--resume",
                 "--no-progress"]) == 0
    assert "--resume: no checkpoint in" in capsys.readouterr().out
    newest = checkpoint.checkpoints(ck)[0]
    newest.write_bytes(newest.read_bytes()[:50])
    assert main(["train", "xor", "--epochs", "3", "--checkpoint", ck, "--resume",
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert re.fullmatch(r"jaxbp train: warning: skipping a damaged checkpoint: "
                        r".*checkpoint_00000002\.npz.*\n", captured.err), captured.err
    assert "resuming from" in captured.out and "checkpoint_00000001.npz (epoch 1)" in captured.out
    with pytest.raises(UsageError, match="cannot be written") as info:  # the traceback's end
        main(["train", "--checkpoint", "/proc/ck", "--debug"])
    assert isinstance(info.value.__cause__, ValueError)  # chained to where it was raised
