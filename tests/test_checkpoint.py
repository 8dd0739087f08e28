"""Checkpoints: exact round trips, validation that names the leaf, damaged and foreign files,
and a writer killed (SIGKILL, a real process) in the middle of a save."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbp as bp
from jaxbp import checkpoint as ck
from jaxbp.checkpoint import CheckpointError

NET = bp.serial(bp.dense(4), bp.tanh(), bp.dense(2))


def _state(seed: int = 0, d_in: int = 3, optimizer=None):
    rng = np.random.default_rng(seed)
    params, _ = NET.init(jax.random.key(0), (d_in,))
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.standard_normal(a.shape)), params)
    opt_state = (optimizer or optax.adam(1e-3)).init(params)
    return {"params": params, "opt_state": opt_state, "step": 7 + seed, "loss": 0.25,
            "done": False, "key": jax.random.fold_in(jax.random.key(1), seed),
            "raw_key": jax.random.PRNGKey(seed), "f32": np.float32(rng.standard_normal(5))}


def _assert_identical(got, want):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got),
                            jax.tree_util.tree_leaves(want)):
        name = jax.tree_util.keystr(path)
        assert type(a) is type(b) or (isinstance(a, jax.Array) and isinstance(b, jax.Array)), name
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            assert jax.random.key_impl(a) == jax.random.key_impl(b), name
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert np.array_equal(a, b), f"{name} changed in the round trip"


def test_round_trip_is_bit_exact(tmp_path):
    state = _state(seed=1)
    history = {"loss": [0.5, 0.25, 1 / 3], "epoch": [1, 2, 3]}
    path = ck.save(tmp_path / "a.npz", state, metadata={"history": history})
    back, meta = ck.load(path, _state(seed=0))  # the template's values do not matter
    _assert_identical(back, state)
    assert meta == {"history": history}
    assert float(jax.random.uniform(back["key"])) == float(jax.random.uniform(state["key"]))
    # An abstract template (no arrays allocated) works too, and decides the leaf kinds.
    back2, _ = ck.load(path, jax.eval_shape(lambda: _state()))
    assert np.array_equal(back2["params"][0].w, state["params"][0].w)
    assert back2["step"].dtype == jnp.asarray(7).dtype and int(back2["step"]) == 8


def test_manifest_describes_every_leaf(tmp_path):
    path = ck.save(tmp_path / "a.npz", _state(), metadata={"note": "x"})
    manifest = ck.read_manifest(path)
    leaves = {e["path"]: e for e in manifest["leaves"]}
    assert leaves["['params'][0].w"] == {"path": "['params'][0].w", "kind": "array",
                                         "dtype": "float64", "shape": [3, 4]}
    assert leaves["['key']"]["dtype"] == "key<threefry2x32>"
    assert leaves["['step']"]["kind"] == "int" and manifest["metadata"] == {"note": "x"}
    with zipfile.ZipFile(path) as z:  # plain .npy members: no pickle anywhere
        assert all(n.endswith(".npy") for n in z.namelist())


@pytest.mark.parametrize("change, message", [
    (lambda s: {**s, "params": _state(d_in=5)["params"]},
     r"leaf \['params'\]\[0\]\.w has shape \(3, 4\) in the file but \(5, 4\) in the template"),
    (lambda s: {**s, "params": jax.tree_util.tree_map(lambda a: a.astype(jnp.float32),
                                                      s["params"])},
     r"leaf \['params'\]\[0\]\.w has dtype float64 in the file but float32 in the template"),
    (lambda s: {**s, "opt_state": optax.sgd(0.1, momentum=0.9).init(s["params"])},
     r"structure: leaf \['opt_state'\]\[0\]\.count is in the file but not in the template"),
    (lambda s: {**s, "extra": jnp.zeros(2)},
     r"leaf \['extra'\] is in the template but not in the file"),
    (lambda s: {**s, "key": jnp.zeros((), jnp.uint32)},
     r"leaf \['key'\] is a PRNG key in the file but not one in the template"),
    (lambda s: {**s, "step": 1.5},
     r"leaf \['step'\] holds an int in the file but a float in the template"),
], ids=["shape", "dtype", "optimizer", "extra_leaf", "key", "scalar"])
def test_restore_names_the_leaf_that_differs(tmp_path, change, message):
    state = _state()
    path = ck.save(tmp_path / "a.npz", state)
    with pytest.raises(CheckpointError, match=message):
        ck.load(path, change(state))


def test_damaged_files_give_clear_errors(tmp_path):
    good = ck.save(tmp_path / "good.npz", _state()).read_bytes()
    for cut in (len(good) // 2, len(good) - 30, 100):
        (tmp_path / "cut.npz").write_bytes(good[:cut])
        with pytest.raises(CheckpointError, match=r"not an \.npz \(zip\) archive — truncated"):
            ck.load(tmp_path / "cut.npz", _state())
    # A flipped byte inside an array's data: the zip CRC-32 catches it on reading.
    with zipfile.ZipFile(tmp_path / "good.npz") as z:
        info = z.getinfo("leaf_00000.npy")
    data = bytearray(good)
    data[info.header_offset + 30 + len(info.filename) + info.file_size - 1] ^= 0xFF
    (tmp_path / "flip.npz").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"is damaged.*leaf .* cannot be read"):
        ck.load(tmp_path / "flip.npz", _state())
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at"):
        ck.load(tmp_path / "missing.npz", _state())


class _Evil:
    """Unpickling this would create a file: the proof that nothing was unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_foreign_files_are_never_unpickled(tmp_path):
    sentinel = tmp_path / "pwned"
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"params": _Evil(sentinel)}, f)
    with pytest.raises(CheckpointError, match=r"not a jaxbp checkpoint: it is not an \.npz"):
        ck.load(tmp_path / "evil.pkl", _state())
    # An .npz with an object (pickled) array under a checkpoint's own member names.
    real = ck.save(tmp_path / "real.npz", _state())
    with np.load(real) as npz:
        members = {k: npz[k] for k in npz.files}
    members["leaf_00000"] = np.array([_Evil(sentinel)], dtype=object)
    np.savez(tmp_path / "evil.npz", **members)
    with pytest.raises(CheckpointError, match=r"is damaged: leaf .* cannot be read"):
        ck.load(tmp_path / "evil.npz", _state())
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(CheckpointError, match=r"not a jaxbp checkpoint: it has no 'manifest'"):
        ck.load(tmp_path / "plain.npz", _state())
    assert not sentinel.exists(), "a pickle was executed"


def test_save_errors_name_the_argument(tmp_path):
    with pytest.raises(TypeError, match=r"metadata must be JSON-serialisable"):
        ck.save(tmp_path / "a.npz", _state(), metadata={"w": np.ones(2)})
    with pytest.raises(FileNotFoundError, match=r"directory .*nope.* does not exist"):
        ck.save(tmp_path / "nope" / "a.npz", _state())
    with pytest.raises(CheckpointError, match=r"leaf \['name'\] is a str"):
        ck.save(tmp_path / "a.npz", {"name": "adam"})
    with pytest.raises(ValueError, match=r"keep=0 must be an int >= 1"):
        ck.save_step(tmp_path, 1, _state(), keep=0)
    assert list(tmp_path.iterdir()) == [], "a failed save must leave nothing behind"


def test_docstring_examples():
    import doctest

    result = doctest.testmod(ck, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_directory_keeps_the_newest(tmp_path):
    assert ck.latest(tmp_path / "none") is None
    (tmp_path / ".checkpoint_00000009.npz.abc.tmp").write_bytes(b"partial")
    for step in (1, 2, 3):
        ck.save_step(tmp_path, step, _state(seed=step), keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint_00000002.npz", "checkpoint_00000003.npz"]
    assert ck.latest(tmp_path) == ck.step_path(tmp_path, 3)
    _assert_identical(ck.load(ck.latest(tmp_path), _state())[0], _state(seed=3))


# The child saves ever newer checkpoints to one path, in a loop, each 32 MB; every leaf of
# save number k holds the value k, so a torn file could not pass for a whole one.
_WRITER = """
import sys, numpy as np
from jaxbp import checkpoint as ck
for k in range(1, 10**6):
    ck.save(sys.argv[1], {"k": k, "w": [np.full(1_000_000, float(k)) for _ in range(4)]})
    print(k, flush=True)
"""


def test_writer_killed_mid_save_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "state.npz"
    template = {"k": 0, "w": [np.zeros(1_000_000)] * 4}
    for _ in range(5):  # a retry only if the kill landed between two saves (no file open)
        child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "1"  # one complete save exists
            deadline = time.monotonic() + 30
            while not any(p.stat().st_size > 0 for p in tmp_path.glob(".state.npz.*.tmp")):
                assert time.monotonic() < deadline, "the writer never started a second save"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait()
        assert child.returncode == -signal.SIGKILL
        leftovers = list(tmp_path.glob(".state.npz.*.tmp"))
        if leftovers:
            break
    assert leftovers, "the kill never landed inside a save"
    tree, _ = ck.load(path, template)  # the previous checkpoint, whole
    assert tree["k"] >= 1
    assert all(np.all(w == float(tree["k"])) for w in tree["w"])
    partial = leftovers[0]
    if partial.stat().st_size < path.stat().st_size:  # the torn write itself is refused
        with pytest.raises(CheckpointError, match=r"truncated"):
            ck.load(partial, template)
