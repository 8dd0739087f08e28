"""Checkpoints: any pytree (params, optimizer state, step, key) plus JSON metadata, saved safely.

Format: one ``.npz`` (a zip of ``.npy`` arrays) holding ``leaf_00000``, ``leaf_00001``, ... and
``manifest``, a UTF-8 JSON document stored as a ``uint8`` array that describes every leaf
(key path, kind, dtype, shape), the tree's structure and the caller's metadata (e.g. training
history). It is read with ``np.load(..., allow_pickle=False)``: a checkpoint never runs code.
Typed PRNG keys are stored as their raw ``jax.random.key_data`` with the implementation's name
and rebuilt with ``jax.random.wrap_key_data``.

Writes are atomic: the archive goes to a temporary file in the target's directory, is flushed
and ``fsync``-ed, given the mode ``0o666 & ~umask`` a plain ``open`` would give it, then
``os.replace``-d over the target (and the directory is ``fsync``-ed), so a process killed
mid-save leaves the previous checkpoint intact and never a torn file.

Restoring needs a *template* (e.g. freshly initialised params and optimizer state, or
``jax.eval_shape`` of them): the file must match its structure, shapes and dtypes exactly, and
a mismatch names the first leaf that differs.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxbp._files import atomic_write
from jaxbp._validate import int_at_least

FORMAT = "jaxbp-checkpoint"
VERSION = 1
_MANIFEST = "manifest"
_PYTHON_SCALARS = {"bool": bool, "int": int, "float": float}


class CheckpointError(ValueError):
    """A file that is not a loadable jaxbp checkpoint, or one that does not fit the template."""


class CheckpointDamaged(CheckpointError):
    """A file that cannot be read as a jaxbp checkpoint: truncated, corrupted or foreign."""


class CheckpointMismatch(CheckpointError):
    """A readable checkpoint that does not fit the template (another network or optimizer)."""


class DamagedCheckpointWarning(UserWarning):
    """Resuming skipped a damaged checkpoint for an older valid one (see ``runs.to_resume``)."""


def _is_key(leaf: Any) -> bool:
    dtype = getattr(leaf, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _host_value(leaf: jax.Array) -> np.ndarray:
    """The full value of a (possibly sharded, possibly multi-host) array as a NumPy array."""
    if leaf.is_fully_addressable:
        return np.asarray(jax.device_get(leaf))
    if leaf.is_fully_replicated:
        return np.asarray(leaf.addressable_data(0))
    raise CheckpointError(
        f"a leaf of shape {leaf.shape} is sharded across processes ({leaf.sharding}); this "
        f"format stores whole arrays. Fix: replicate it before saving (data-parallel params "
        f"and optimizer state already are).")


def _describe(path: str, leaf: Any) -> tuple[dict, np.ndarray]:
    """The manifest entry and stored array of one leaf."""
    if _is_key(leaf):
        data = _host_value(jax.random.key_data(leaf))
        impl = str(jax.random.key_impl(leaf))
        return {"path": path, "kind": "key", "impl": impl, "dtype": f"key<{impl}>",
                "shape": list(leaf.shape)}, data
    if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
        kind = type(leaf).__name__
        return {"path": path, "kind": kind, "dtype": kind, "shape": []}, np.asarray(leaf)
    if isinstance(leaf, jax.Array):
        value = _host_value(leaf)
    elif isinstance(leaf, (np.ndarray, np.generic)):
        value = np.asarray(leaf)
    else:
        raise CheckpointError(
            f"leaf {path} is a {type(leaf).__name__}; a checkpoint stores arrays, Python "
            f"bool/int/float and PRNG keys. Fix: convert it to an array or move it to metadata=.")
    if value.dtype == object:
        raise CheckpointError(f"leaf {path} has dtype object, which cannot be stored safely.")
    return {"path": path, "kind": "array", "dtype": value.dtype.name,
            "shape": list(value.shape)}, value


def _flatten(tree: Any) -> tuple[list[tuple[str, Any]], Any]:
    with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in with_path], treedef


def save(path: str | os.PathLike, tree: Any, *, metadata: dict | None = None) -> Path:
    """Atomically writes ``tree`` (and JSON-serialisable ``metadata``) to ``path``.

    Args:
      path: the file to write (``.npz`` is conventional); its directory must exist.
      tree: a pytree whose leaves are arrays, PRNG keys or Python bool/int/float, e.g.
        ``{"params": params, "opt_state": opt_state, "step": 5, "key": key}``.
      metadata: JSON data kept beside the arrays (history, configuration); read back by
        :func:`load` and :func:`read_manifest`.

    Returns:
      ``path`` as a :class:`Path`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"save: the directory {str(path.parent)!r} of path={str(path)!r} "
                                f"does not exist. Fix: create it first (os.makedirs).")
    leaves, treedef = _flatten(tree)
    entries, arrays = [], {}
    for i, (name, leaf) in enumerate(leaves):
        entry, value = _describe(name, leaf)
        entries.append(entry)
        arrays[f"leaf_{i:05d}"] = value
    try:
        meta_json = json.loads(json.dumps(metadata or {}))
    except (TypeError, ValueError) as e:
        raise TypeError(f"save: metadata must be JSON-serialisable (dicts, lists, str, numbers): "
                        f"{e}. Fix: convert arrays with .tolist() or float().") from None
    manifest = {"format": FORMAT, "version": VERSION, "treedef": str(treedef),
                "leaves": entries, "metadata": meta_json}
    arrays[_MANIFEST] = np.frombuffer(json.dumps(manifest).encode("utf-8"), np.uint8)

    # numpy's stub checks **arrays against savez's allow_pickle: bool; the keys are leaf_* names
    return atomic_write(path, lambda f: np.savez(f, **arrays),  # type: ignore[arg-type]
                        prefix=f".{path.name}.")


# What zipfile and NumPy raise on a damaged archive: a flipped flag bit reads as encryption
# (RuntimeError) or an unsupported feature (NotImplementedError), a flipped method as deflate.
_UNREADABLE = (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError,
               RuntimeError, zlib.error, struct.error)


def _open(path: Path):
    """The open ``NpzFile`` and its manifest, or a :class:`CheckpointError` saying why not."""
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}.")
    if not zipfile.is_zipfile(path):
        raise CheckpointDamaged(
            f"{str(path)!r} is not a jaxbp checkpoint: it is not an .npz (zip) archive — "
            f"truncated, corrupted, or a different format. It was not unpickled or executed. "
            f"Fix: load a file that checkpoint.save wrote (an older checkpoint of the run).")
    try:
        npz = np.load(path, allow_pickle=False)
        manifest = json.loads(bytes(npz[_MANIFEST]).decode("utf-8"))
    except KeyError:
        raise CheckpointDamaged(f"{str(path)!r} is an .npz archive but not a jaxbp checkpoint: "
                                f"it has no {_MANIFEST!r} entry.") from None
    except _UNREADABLE as e:
        raise CheckpointDamaged(f"{str(path)!r} is damaged (truncated or corrupted) and cannot "
                                f"be read: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointDamaged(
            f"{str(path)!r} is not a jaxbp checkpoint: its manifest has format "
            f"{manifest.get('format') if isinstance(manifest, dict) else None!r}.")
    if manifest.get("version") != VERSION:
        raise CheckpointDamaged(f"{str(path)!r} has checkpoint format version "
                                f"{manifest.get('version')!r}; this jaxbp reads version "
                                f"{VERSION}.")
    if not (isinstance(manifest.get("leaves"), list) and isinstance(manifest.get("treedef"), str)
            and all(isinstance(e, dict) and {"path", "kind", "dtype", "shape"} <= set(e)
                    for e in manifest["leaves"])):
        raise CheckpointDamaged(f"{str(path)!r} is damaged: its manifest does not describe the "
                                f"leaves (path, kind, dtype, shape) and the tree structure.")
    return npz, manifest


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of a checkpoint: ``leaves`` (path, kind, dtype, shape), ``metadata``, ..."""
    npz, manifest = _open(Path(path))
    npz.close()
    return manifest


def _template_entry(name: str, leaf: Any) -> dict:
    if _is_key(leaf):
        impl = str(jax.random.key_impl(leaf)) if isinstance(leaf, jax.Array) else None
        return {"kind": "key", "dtype": f"key<{impl}>" if impl else "key",
                "shape": list(leaf.shape)}
    if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
        kind = type(leaf).__name__
        return {"kind": kind, "dtype": kind, "shape": []}
    if hasattr(leaf, "dtype") and hasattr(leaf, "shape"):
        return {"kind": "array", "dtype": np.dtype(leaf.dtype).name, "shape": list(leaf.shape)}
    raise CheckpointError(f"template leaf {name} is a {type(leaf).__name__}, not an array, "
                          f"Python scalar, PRNG key or jax.ShapeDtypeStruct.")


def _check(path: Path, manifest: dict, names: list[str], template_leaves: list, treedef) -> None:
    stored = manifest["leaves"]
    stored_names = [e["path"] for e in stored]
    if stored_names != names:
        only_file = [n for n in stored_names if n not in names]
        only_tmpl = [n for n in names if n not in stored_names]
        detail = (f"leaf {only_file[0]} is in the file but not in the template" if only_file else
                  f"leaf {only_tmpl[0]} is in the template but not in the file" if only_tmpl else
                  "the leaves are in a different order")
        raise CheckpointMismatch(
            f"{str(path)!r} does not match the template's structure: {detail} "
            f"({len(stored_names)} leaves in the file, {len(names)} in the template). Fix: "
            f"restore into a template built like the saved state (same network and optimizer).")
    if manifest["treedef"] != str(treedef):
        raise CheckpointMismatch(
            f"{str(path)!r} has the template's leaf paths but different containers: file "
            f"{manifest['treedef']} vs template {treedef}. Fix: use the same NamedTuple/state "
            f"types.")
    for entry, name, leaf in zip(stored, names, template_leaves):
        want = _template_entry(name, leaf)
        problem = _mismatch(entry, want)
        if problem:
            raise CheckpointMismatch(
                f"{str(path)!r}: leaf {name} {problem}. Fix: restore into a template built like "
                f"the saved state (the same layer sizes, optimizer, dtype and jax_enable_x64).")


_FAMILY = {"bool": "b", "int": "iu", "float": "f"}


def _a(word: str) -> str:
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def _mismatch(entry: dict, want: dict) -> str:
    """Why a stored leaf cannot fill a template leaf, or ``""`` if it can.

    A Python scalar and a 0-d array of the same family (bool, integer, float) are
    interchangeable, so a ``jax.eval_shape`` template (which turns scalars into
    ``ShapeDtypeStruct``s) works; the template decides what comes back.
    """
    if (entry["kind"] == "key") != (want["kind"] == "key"):
        return (f"is {'a PRNG key' if entry['kind'] == 'key' else 'not a PRNG key'} in the file "
                f"but {'a PRNG key' if want['kind'] == 'key' else 'not one'} in the template")
    if entry["shape"] != want["shape"]:
        return (f"has shape {tuple(entry['shape'])} in the file but {tuple(want['shape'])} in "
                f"the template")
    if entry["kind"] == "key":
        if want["dtype"] not in ("key", entry["dtype"]):  # a ShapeDtypeStruct names no impl
            return (f"is a {entry['dtype']} key in the file but a {want['dtype']} key in the "
                    f"template")
        return ""
    if entry["kind"] in _FAMILY or want["kind"] in _FAMILY:
        family = [_FAMILY.get(e["kind"]) or np.dtype(e["dtype"]).kind for e in (entry, want)]
        if not set(family[0]) & set(family[1]):
            return (f"holds {_a(entry['dtype'])} in the file but {_a(want['dtype'])} in the "
                    f"template")
        return ""
    if entry["dtype"] != want["dtype"]:
        return f"has dtype {entry['dtype']} in the file but {want['dtype']} in the template"
    return ""


def _rebuild(entry: dict, value: np.ndarray, leaf: Any) -> Any:
    kind = entry["kind"]
    if isinstance(leaf, (bool, int, float)) and not isinstance(leaf, np.generic):
        return type(leaf)(value.item())
    if kind in _PYTHON_SCALARS:
        value = value.astype(np.dtype(leaf.dtype))
    sharding = getattr(leaf, "sharding", None)
    if kind == "key":
        bits: Any = value  # wrap_key_data takes any uint32 array; its annotation says jax.Array
        if sharding is not None:  # the raw bits are placed like the template, then wrapped
            bits = jax.make_array_from_callback(value.shape, sharding, lambda i: value[i])
        return jax.random.wrap_key_data(bits, impl=entry["impl"])
    if isinstance(leaf, np.ndarray):
        return value
    if sharding is not None:  # each process supplies the shards its devices hold
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])
    return jax.numpy.asarray(value)


def _read_leaf(path: Path, npz, i: int, entry: dict) -> np.ndarray:
    """Leaf ``i`` of an open checkpoint, checked against its manifest ``entry``."""
    try:
        value = npz[f"leaf_{i:05d}"]
    except (KeyError, *_UNREADABLE) as e:
        raise CheckpointDamaged(f"{str(path)!r} is damaged: leaf {entry['path']} cannot be read "
                                f"({type(e).__name__}: {e}).") from None
    expect = entry["shape"] + ([2] if entry["kind"] == "key" else [])
    if entry["kind"] == "array" and (value.dtype.name != entry["dtype"]
                                     or list(value.shape) != expect):
        raise CheckpointDamaged(f"{str(path)!r} is damaged: leaf {entry['path']} holds "
                                f"{value.dtype}{list(value.shape)}, its manifest says "
                                f"{entry['dtype']}{expect}.")
    return value


def load(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Reads a checkpoint into the structure of ``template``; returns ``(tree, metadata)``.

    Every leaf must match the template's leaf at the same key path in kind, dtype and shape;
    otherwise a :class:`CheckpointError` names that path. Array leaves come back as JAX arrays
    placed like the template's (with its sharding, if it has one), NumPy leaves as NumPy, Python
    scalars as Python scalars and keys as typed keys.

    Raises:
      FileNotFoundError: nothing at ``path``.
      CheckpointDamaged: a truncated, corrupted or foreign file (a :class:`CheckpointError`).
      CheckpointMismatch: a readable checkpoint that does not fit ``template`` (another
        network, optimizer or dtype; a :class:`CheckpointError` too).

    Examples:
      >>> import os, tempfile, jax, jaxbp as bp
      >>> from jaxbp import checkpoint
      >>> net = bp.serial(bp.dense(3))
      >>> params, _ = net.init(jax.random.key(0), (2,))
      >>> path = os.path.join(tempfile.mkdtemp(), "state.npz")
      >>> _ = checkpoint.save(path, {"params": params, "step": 5}, metadata={"note": "hi"})
      >>> state, metadata = checkpoint.load(path, {"params": params, "step": 0})
      >>> state["step"], metadata
      (5, {'note': 'hi'})
      >>> other, _ = bp.serial(bp.dense(4)).init(jax.random.key(0), (2,))
      >>> checkpoint.load(path, {"params": other, "step": 0})  # doctest: +NORMALIZE_WHITESPACE
      Traceback (most recent call last):
      ...
      jaxbp.checkpoint.CheckpointMismatch: '...state.npz': leaf ['params'][0].w has shape (2, 3)
      in the file but (2, 4) in the template. Fix: ...
    """
    path = Path(path)
    names_leaves, treedef = _flatten(template)
    names = [n for n, _ in names_leaves]
    template_leaves = [leaf for _, leaf in names_leaves]
    npz, manifest = _open(path)
    with npz:
        _check(path, manifest, names, template_leaves, treedef)
        out = []
        for i, (entry, leaf) in enumerate(zip(manifest["leaves"], template_leaves)):
            out.append(_rebuild(entry, _read_leaf(path, npz, i, entry), leaf))
    return jax.tree_util.tree_unflatten(treedef, out), manifest["metadata"]


# --------------------------------------------------------------------------------------
# A directory of numbered checkpoints: checkpoint_00000005.npz, ... ; the newest wins.

_NAME = re.compile(r"^checkpoint_(\d{8})\.npz$")


def step_path(directory: str | os.PathLike, step: int) -> Path:
    """``directory/checkpoint_<step, 8 digits>.npz``."""
    return Path(directory) / f"checkpoint_{int(step):08d}.npz"


def latest(directory: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest step in ``directory``, or ``None`` if there is none.

    Leftover temporary files of an interrupted save are ignored.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def verify(path: str | os.PathLike) -> dict:
    """Reads every leaf of the checkpoint at ``path`` (checking its CRC, dtype and shape
    against the manifest) without a template; returns the manifest, or raises
    :class:`CheckpointDamaged` (``FileNotFoundError`` if nothing is there)."""
    path = Path(path)
    npz, manifest = _open(path)
    with npz:
        for i, entry in enumerate(manifest["leaves"]):
            _read_leaf(path, npz, i, entry)
    return manifest


def checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Every ``checkpoint_<step>.npz`` in ``directory``, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def save_step(directory: str | os.PathLike, step: int, tree: Any, *,
              metadata: dict | None = None, keep: int = 2) -> Path:
    """Saves ``tree`` as step ``step`` in ``directory`` (created if needed), keeping the newest
    ``keep`` checkpoints and removing older ones and temporary files that crashed saves left."""
    keep = int_at_least("save_step", "keep", keep, 1, "keep=2 (how many checkpoints to keep)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".checkpoint_*.npz.*.tmp"):
        stale.unlink(missing_ok=True)
    path = save(step_path(directory, step), tree, metadata=metadata)
    found = sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)))
    for _, old in found[:-keep]:
        old.unlink(missing_ok=True)
    return path


__all__ = ["CheckpointDamaged", "CheckpointError", "CheckpointMismatch",
           "DamagedCheckpointWarning", "checkpoints", "latest", "verify",
           "load", "read_manifest", "save", "save_step", "step_path"]
