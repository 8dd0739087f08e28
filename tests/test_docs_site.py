"""The documentation site builds with warnings as errors (a broken link, a bad anchor, a docstring
griffe cannot read fail it), and every public name has a rendered, documented reference entry.

Needs the ``docs`` extra, which the ``test`` extra includes (``pip install -e '.[test]'``);
without MkDocs they fail with the install command, so CI cannot skip them.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pathlib
import re
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Every public module: the API reference (docs/api/) has a page for each.
PUBLIC_MODULES = ["jaxbp", "jaxbp.layers", "jaxbp.layers.initializers", "jaxbp.losses",
                  "jaxbp.gradients", "jaxbp.check", "jaxbp.train", "jaxbp.optim", "jaxbp.data",
                  "jaxbp.models", "jaxbp.checkpoint", "jaxbp.parallel", "jaxbp.cases",
                  "jaxbp.summarize", "jaxbp.plot", "jaxbp.cli"]

# mkdocs, mkdocs-material, mkdocstrings and its Python handler (which brings griffe).
_MISSING = [m for m in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers", "griffe")
            if importlib.util.find_spec(m) is None]
assert not _MISSING, (f"the docs extra is not installed ({', '.join(_MISSING)} missing): "
                     "pip install -e '.[test]'")


def public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, v in vars(module).items()
            if not n.startswith("_") and getattr(v, "__module__", None) == module_name]


def _anchors(site_dir: pathlib.Path) -> set[str]:
    ids: set[str] = set()
    for page in (site_dir / "api").rglob("*.html"):
        ids |= set(re.findall(r'id="([^"]+)"', page.read_text(encoding="utf-8")))
    return ids


def _canonical(obj) -> str | None:
    if inspect.ismodule(obj):
        return obj.__name__
    if getattr(obj, "__module__", None) and getattr(obj, "__qualname__", None):
        return f"{obj.__module__}.{obj.__qualname__}"
    return None


def test_api_reference_lists_the_public_modules():
    """Each public module has its page, and each module `jaxbp` exports is listed here."""
    import jaxbp
    pages = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md"))
    for module_name in PUBLIC_MODULES:
        assert re.search(rf"^::: {re.escape(module_name)}$", pages, re.M), (
            f"no docs/api page renders {module_name}: add '::: {module_name}' to one")
    exported = [n for n in jaxbp.__all__ if inspect.ismodule(getattr(jaxbp, n))]
    assert {f"jaxbp.{n}" for n in exported} <= set(PUBLIC_MODULES)


def test_site_builds_strict_with_an_entry_for_every_public_name(tmp_path):
    """One build (it takes a few seconds), so one test: strict, then every anchor present."""
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--clean",
                          "--site-dir", str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    seconds = time.perf_counter() - start
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout}\n{run.stderr}"
    assert "WARNING" not in run.stderr, run.stderr
    assert (tmp_path / "index.html").is_file() and (tmp_path / "tutorial" / "index.html").is_file()
    # The derivations' math is marked up for MathJax, and the links to code are published.
    assert "arithmatex" in (tmp_path / "derivations" / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "_source" / "jaxbp" / "layers" / "dense.py").is_file()

    ids = _anchors(tmp_path)
    modules = {m: importlib.import_module(m) for m in PUBLIC_MODULES}
    missing = []
    for module_name, module in modules.items():
        for name in public_names(module_name):
            obj = getattr(module, name)
            # The entry may sit where the name is defined or in any public module exporting it.
            where = {f"{module_name}.{name}", _canonical(obj)} | {
                f"{m}.{name}" for m, mod in modules.items() if getattr(mod, name, None) is obj}
            if not ids & where:
                missing.append(f"{module_name}.{name}")
    assert not missing, (
        f"no rendered reference entry for {missing}. A name is rendered when its module's page "
        "(docs/api/) lists it and it has a docstring (for a constant: a string literal on the "
        "line after the assignment, or `#:` comment lines right above it).")
    print(f"site built in {seconds:.1f} s")


@pytest.fixture(scope="module")
def package():
    """jaxbp as griffe reads it for the reference: docstrings from the source, constants too."""
    import griffe

    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)  # the extension mkdocs.yml gives griffe (reads `#:` comments)
    return griffe.load("jaxbp", search_paths=[str(ROOT)], resolve_aliases=True,
                       extensions=griffe.load_extensions(hooks.JaxbpDocstrings()))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(package, module_name):
    module = importlib.import_module(module_name)
    undocumented = []
    for name in public_names(module_name):
        obj = getattr(module, name)
        path = _canonical(obj) or f"{module_name}.{name}"
        try:
            entry = package[path.removeprefix("jaxbp").lstrip(".")] if path != "jaxbp" else package
        except KeyError:
            entry = package[f"{module_name}.{name}".removeprefix("jaxbp.")]
        text = entry.docstring.value.strip() if entry.docstring else ""
        if not text:
            undocumented.append(name)
    assert not undocumented, (
        f"{module_name}: no docstring for {undocumented} (for a constant: a string literal on the "
        "line after the assignment, or `#:` comment lines right above it)")
