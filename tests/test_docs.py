"""Docs are part of the product: every Python block of the README and docs/*.md runs, and the
core docstring examples run.

Each file's ```python blocks run in order in one namespace, notebook style (a later block may use
the names of an earlier one), in a scratch directory. A ```text block right after a Python block
is that block's printed output: it is compared with what the block prints, numbers masked (the
docs show a run with x64 off, the tests run with x64 on) and ``...`` matching anything.

Run as a script, ``python tests/test_docs.py docs/FILE.md`` runs one file's notebook; the tests
do that in a subprocess for the files of ``DEVICES`` (4 simulated CPU devices, which must be set
before JAX starts). The multi-process recipes (blocks calling ``jax.distributed.initialize``) run
as two real processes each, and their output must be the one the page states.
"""

from __future__ import annotations

import contextlib
import dataclasses
import doctest
import importlib
import importlib.util
import io
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import warnings

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]
DEVICES = {"docs/scale.md": 4}           # files whose notebook needs more than one device
OPTIONAL = ("torch", "chex")             # a block importing one of these runs where installed
MULTIPROCESS = "jax.distributed.initialize"

_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclasses.dataclass
class Block:
    path: str
    line: int               # the line of the opening fence
    code: str
    output: str | None      # the ```text block right after it, if any
    prose: str              # the text between the previous fence and this block


def blocks(path: str) -> list[Block]:
    """The ```python blocks of a Markdown file, with the output shown after each."""
    text = (ROOT / path).read_text(encoding="utf-8")
    fences = list(_FENCE.finditer(text))
    found = []
    for i, m in enumerate(fences):
        if m.group(1) != "python":
            continue
        nxt = fences[i + 1] if i + 1 < len(fences) else None
        output = (nxt.group(2) if nxt is not None and nxt.group(1) == "text"
                  and not text[m.end():nxt.start()].strip() else None)
        prose = text[fences[i - 1].end() if i else 0:m.start()]
        found.append(Block(path, text.count("\n", 0, m.start()) + 1, m.group(2), output, prose))
    return found


def _skeleton(text: str) -> str:
    return _NUMBER.sub("#", text)


def _missing_optional(code: str) -> str | None:
    for name in OPTIONAL:
        if re.search(rf"^\s*(import|from) {name}\b", code, re.M) and \
                importlib.util.find_spec(name) is None:
            return name
    return None


def run_notebook(path: str, namespace: dict | None = None) -> dict:
    """Runs the file's single-process Python blocks in order in one namespace; returns it."""
    namespace = {"__name__": "__docs__"} if namespace is None else namespace
    checker = doctest.OutputChecker()
    for block in blocks(path):
        if MULTIPROCESS in block.code:
            continue  # test_multiprocess_recipes runs these as real processes
        missing = _missing_optional(block.code)
        if missing:
            warnings.warn(f"{path}:{block.line}: skipped, it needs {missing} (not installed)",
                          stacklevel=2)
            continue
        # Pad with newlines so that a traceback names the line of the Markdown file.
        code = compile("\n" * block.line + block.code, path, "exec")
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(code, namespace)
        if block.output is not None:
            want, got = _skeleton(block.output), _skeleton(out.getvalue())
            assert checker.check_output(want, got, doctest.ELLIPSIS |
                                        doctest.NORMALIZE_WHITESPACE), (
                f"{path}:{block.line}: the block prints\n{out.getvalue()}\nbut the page shows\n"
                f"{block.output}")
    return namespace


def _check_readme(ns: dict) -> None:
    # The first block computes both gradient sources; they must agree.
    import jax
    import numpy as np
    for a, b in zip(jax.tree_util.tree_leaves(ns["g_m"]), jax.tree_util.tree_leaves(ns["g_a"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


AFTER = {"README.md": _check_readme}     # extra assertions on a file's final namespace


def _env(**extra) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu",
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                         os.environ.get("PYTHONPATH")])),
                **extra)


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p)])
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # blocks may write files (checkpoints, runs/)
    if path in DEVICES:
        flags = f"--xla_force_host_platform_device_count={DEVICES[path]}"
        run = subprocess.run([sys.executable, str(ROOT / "tests" / "test_docs.py"), path],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path,
                             env=_env(XLA_FLAGS=flags))
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        return
    namespace = run_notebook(path)
    if path in AFTER:
        AFTER[path](namespace)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multiprocess_recipes(tmp_path):
    """Each recipe runs as two processes, concurrently; each prints the line its page states.

    The page names the file ("Save as `NAME`"), and its next ```bash block shows the launch
    (``... python NAME ARGS & ...``) and, as a comment, what process 0 prints."""
    launched = []
    for path in DOCS:
        text = (ROOT / path).read_text(encoding="utf-8")
        for block in blocks(path):
            if MULTIPROCESS not in block.code:
                continue
            name = re.findall(r"Save as\s+`([\w.]+\.py)`", block.prose)[-1]
            launch = text.split(block.code, 1)[1]
            bash = re.search(r"```bash\n(.*?)```", launch, re.S).group(1)
            args = re.search(rf"JAXBP_PROCESS_ID=0 python {re.escape(name)}([^&\n]*)",
                             bash).group(1)
            if "$E" in args:  # a loop `for E in 10 20`: its first round
                args = args.replace("$E", re.search(r"for E in (\d+)", bash).group(1))
            args = args.split()
            want = re.search(r"^# (processes 2, .*)$", bash, re.M).group(1)
            (tmp_path / name).write_text(block.code)
            env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=1",
                       JAXBP_COORDINATOR=f"127.0.0.1:{_free_port()}")
            procs = [subprocess.Popen([sys.executable, name, *args], cwd=tmp_path, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=dict(env, JAXBP_PROCESS_ID=str(i)))
                     for i in range(2)]
            launched.append((f"{path}:{block.line} ({name})", want, procs))
    assert launched, "no multi-process recipe found"
    for where, want, procs in launched:
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outs):
            assert p.returncode == 0, f"{where}: exit {p.returncode}\n{err[-3000:]}"
        assert outs[0][0].strip().splitlines()[-1] == want, (where, outs[0][0], want)


@pytest.mark.parametrize("name", ["jaxbp._core", "jaxbp.gradients", "jaxbp.layers.dense"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0


if __name__ == "__main__":  # one file's notebook, as the tests run it (see DEVICES)
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    names = run_notebook(sys.argv[1])
    print(json.dumps({"ok": True, "names": len(names)}))
