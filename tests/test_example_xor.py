"""examples/xor.py runs and shows what it claims: one unit cannot learn XOR, a hidden layer can."""

import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "xor.py"


def test_xor_example():
    spec = importlib.util.spec_from_file_location("xor_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = []
    result = module.main(steps=1500, seed=0, out=lines.append)
    assert result["single_at_origin"] == 0.5            # sigmoid(0 . w) whatever w
    assert result["single_correct"] < 4 and result["biased_correct"] < 4
    assert result["single_mse"] > 0.2 and result["biased_mse"] > 0.15
    assert result["hidden_correct"] == 4 and result["hidden_mse"] < 0.01
    assert any("hidden layer" in line for line in lines)
