"""examples/digits_mlp.py runs end to end on small settings, both ways side by side."""

import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "examples" / "digits_mlp.py"


def test_digits_example_small(capsys):
    spec = importlib.util.spec_from_file_location("digits_mlp", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = module.main(["--epochs", "5", "--hidden", "32"])
    out = capsys.readouterr().out
    assert [r["name"] for r in rows] == ["backprop + bp.optim.momentum", "autodiff + optax.adam"]
    for r in rows:
        assert r["name"] in out
        # Five epochs of a small MLP already beat chance (0.1) by far.
        assert 0.6 < r["test_accuracy"] <= 1.0, rows
