"""The project's own hygiene, in the test suite (so CI runs it): ruff with the rule set of
pyproject.toml is clean on the whole repository, and mypy at the strictness stated there is
clean on jaxbp/."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_is_clean():
    run = _run("ruff", "check", ".")
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_is_clean():
    run = _run("mypy", "jaxbp")
    assert run.returncode == 0, run.stdout + run.stderr
