"""The CNN and RNN examples run end to end on small settings and learn."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_cnn_checks_gradients_and_learns():
    lines = []
    result = _load("digits_cnn").main(epochs=8, out=lines.append)
    assert result["grad_error"] <= 1e-10
    assert any("gradient check" in line and line.endswith("OK") for line in lines), lines
    # 8 epochs here; the full settings (30 epochs) reach >= 98 % (see the example's docstring).
    assert result["test_accuracy"] >= 0.95, lines
    assert result["history"]["train_loss"][-1] < result["history"]["train_loss"][0]


def test_sequence_rnn_bptt_agrees_and_meets_the_stated_error():
    module = _load("sequence_rnn")
    lines = []
    result = module.main(steps=6, d_hidden=16, n_train=2048, epochs=25, learning_rate=2e-2,
                         out=lines.append)
    assert result["grad_error"] <= 1e-10
    assert result["test_mse"] < module.TARGET_MSE < result["baseline_mse"], lines


def test_sequence_rnn_rejects_too_short_sequences():
    with pytest.raises(ValueError, match=r"steps=1 must be at least 2"):
        _load("sequence_rnn").adding_problem(4, 1, seed=0)


def test_derivations_page_links_and_cited_tests_exist():
    import re
    page = ROOT / "docs" / "derivations-conv-rnn.md"
    text = page.read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (page.parent / target).exists(), f"broken link {target}"
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for name in set(re.findall(r"`(test_\w+)`", text)):
        assert f"def {name}(" in tests, f"docs cite {name}, which no test defines"


@pytest.mark.parametrize("module", ["conv", "dropout", "recurrent"])
def test_docstring_examples(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(f"jaxbp.layers.{module}"))
    assert result.attempted > 0 and result.failed == 0
