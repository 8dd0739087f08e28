"""Docs are part of the product: the README's code and the core docstring examples run."""

import doctest
import pathlib
import re

import pytest

import importlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_first_python_block_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    # The block computes both gradient sources; they must agree.
    import jax
    import numpy as np
    for a, b in zip(jax.tree_util.tree_leaves(namespace["g_m"]),
                    jax.tree_util.tree_leaves(namespace["g_a"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["jaxbp._core", "jaxbp.gradients", "jaxbp.layers.dense"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{module.__name__} has no examples"
    assert result.failed == 0
