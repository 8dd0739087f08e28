"""`jaxbp check`: every built-in layer and loss, its table printed; exit 1 on any failure."""

import jax.numpy as jnp
import pytest

import jaxbp as bp
from jaxbp import cases, cli


CASES = cases.LAYER_CASES + cases.LOSS_CASES


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_builtin_passes_over_several_draws(case):
    """No false failure on a correct built-in: batch 1 and 3, three draws each; ReLU-type
    layers with a third of their inputs exactly 0, max-pool with exact ties. (One test per
    case, so that pytest-xdist spreads the compiles over workers.)"""
    report = cases.check_case(case, key=1, draws=3)
    assert report.ok, report


def test_jaxbp_check_prints_a_table_per_case_and_exits_0(capsys):
    assert cli.main(["check", "--only", "relu", "--draws", "1"]) == 0
    out = capsys.readouterr().out
    for name in ("relu", "leaky_relu"):
        assert f"[{name}] gradient check of " in out
    assert "checked 2 built-in layers and losses: all ok" in out
    assert "max rel err" in out and "kink" in out and "FAIL" not in out


def test_jaxbp_check_exits_1_and_explains_a_failure(capsys, monkeypatch):
    slipped = bp.sigmoid()._replace(backward=lambda p, y, dy: ((), dy))
    monkeypatch.setattr(cases, "LAYER_CASES",
                        [cases.LayerCase("slipped_sigmoid", lambda: slipped, (3,)),
                         cases.LayerCase("tanh", bp.tanh, (3,))])
    monkeypatch.setattr(cases, "LOSS_CASES", [])
    assert cli.main(["check"]) == 1
    out = capsys.readouterr().out
    assert "[slipped_sigmoid] gradient check of sigmoid: FAILED" in out
    assert "missing activation derivative" in out
    assert "[tanh] gradient check of tanh: ok" in out
    assert "checked 2 built-in layers and losses: 1 FAILED: slipped_sigmoid" in out
    assert cli.main(["check", "--only", "no-such-case"]) == 1
    assert "no built-in case matches" in capsys.readouterr().out


def test_builtin_case_draws():
    import numpy as np
    rng = np.random.default_rng(0)
    x = cases.with_zeros(rng, (200,))
    assert 30 < np.sum(x == 0) < 110
    ids = cases.tokens(7)(rng, (3, 5))
    assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 7
    assert cases.labels(rng, (6, 4)).shape == (6,)
    assert np.all(cases.one_hot(rng, (6, 4)).sum(1) == 1)
    assert jnp.all(jnp.asarray(cases.probabilities(rng, (50,))) > 0.04)


def test_verify_my_layer_example_catches_explains_and_fixes():
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "examples" / "verify_my_layer.py"
    spec = importlib.util.spec_from_file_location("verify_my_layer", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    lines = []
    buggy, in_net, fixed = example.main(out=lines.append)
    assert [r.path for r in buggy.failures] == ["gamma"]
    assert "mean instead of sum over the batch" in buggy.row("gamma").hint
    assert in_net.location == "layer 2 (scale_shift): dgamma wrong"
    assert fixed.ok
    text = "\n".join(lines)
    assert "located: layer 2 (scale_shift): dgamma wrong" in text
    assert "dgamma = [" in text
