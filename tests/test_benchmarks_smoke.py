"""The benchmark harness runs, and its start-of-run check catches an implementation that differs.

No timing is asserted: these tests only keep ``python -m benchmarks.run`` working and honest.
"""

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # benchmarks/ is no package
from benchmarks import check, jaxbp_nets, numpy_mlp, report, run, torch_nets
from benchmarks.configs import CONFIGS, make_data, matmul_flops


QUICK = ["xor", "digits"]  # sigmoid + MSE, tanh + softmax CE; the others differ in sizes


def test_quick_mode_checks_every_implementation_agrees(capsys):
    assert run.main(["--quick", "--configs", ",".join(QUICK)]) == 0
    out = capsys.readouterr().out
    impls = ["jaxbp backprop", "numpy", "jaxbp backprop, bp.optim.sgd, scan", "numpy, sgd"]
    if torch_nets.available():
        impls += ["torch", "torch, sgd", "torch, adam"]
    for config in QUICK:
        for impl in impls:
            assert f"| {config} | " in out and f"| {impl} |" in out, (config, impl, out)
    assert "MISMATCH" not in out
    assert "checks agree" in out


def test_check_catches_a_wrong_numpy_derivative(monkeypatch):
    # Seeded bug: sigmoid'(z) written as a instead of a (1 - a).
    wrong = dict(numpy_mlp._ACT)
    wrong["sigmoid"] = (numpy_mlp._sigmoid, lambda z, a: a)
    monkeypatch.setattr(numpy_mlp, "_ACT", wrong)
    rows = check.check_start(CONFIGS["xor"], np.float64, use_torch=False)
    by_impl = {r.impl: r for r in rows}
    assert by_impl["jaxbp backprop"].ok
    assert not by_impl["numpy"].ok and by_impl["numpy"].error > 1e-3


@pytest.mark.skipif(not jaxbp_nets.has_conv(), reason="jaxbp has no conv2d yet")
def test_numpy_and_torch_cnns_match_jaxbp_in_float64():
    import jax

    with jax.enable_x64(True):
        rows = check.check_start(CONFIGS["digits-cnn"], np.float64,
                                 use_torch=torch_nets.available())
    assert {r.impl for r in rows} >= {"jaxbp backprop", "numpy"}
    assert all(r.ok for r in rows), check.format_agreements(rows)


def test_quick_mode_fails_on_a_mismatch(monkeypatch, capsys):
    monkeypatch.setattr(numpy_mlp.NumpyMLP, "sgd_step",
                        lambda self, x, y, learning_rate: self.loss_and_grads(x, y)[0])  # no update
    assert run.main(["--quick", "--configs", "xor", "--no-torch"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_unknown_config_is_rejected_with_the_choices():
    with pytest.raises(SystemExit, match=r"unknown configuration 'mnist'.*mnist-shaped"):
        run.main(["--quick", "--configs", "mnist"])


def test_flop_count_and_data_shapes():
    c = CONFIGS["mnist-shaped"]
    # forward 2*B*sum(d_in*d_out); backward twice that, less the first layer's dx.
    b = c.batch
    assert matmul_flops(c) == 2 * b * (3 * 784 * 256 + 3 * 256 * 256 + 3 * 256 * 10 - 784 * 256)
    xs, ys = make_data(c, steps=3)
    assert xs.shape == (3, b, 784) and xs.dtype == np.float32
    assert ys.shape == (3, b) and ys.dtype == np.int32


def test_targets_report_missed_and_met_honestly():
    fast, slow = [1e-6] * 3, [2e-6] * 3
    results = {"xor": {"times": {report.PRIMARY: fast, report.AUTODIFF: slow,
                                 report.NUMPY: slow, report.TORCH_SGD: [50e-6] * 3},
                       "compile": {}, "flops": 100, "peaks": {"jax matmul": 1.0}}}
    rows = {(t.what, t.config): t for t in report.targets(results, fit_compiles=2)}
    assert rows[("backprop step ≤ 1.03 × autodiff (scanned epoch, SGD)", "xor")].met
    vs_torch = rows[("scanned epoch per step vs PyTorch eager (SGD)", "xor")]
    assert vs_torch.measured == "50.00×" and vs_torch.met is False  # needs >= 80x
    assert rows[("`fit` compiles nothing after its first epoch", "digits")].met is False


def test_compile_counter_sees_a_fresh_compile_and_nothing_on_a_cached_call():
    import jax

    from benchmarks.compiles import count_compiles

    f = jax.jit(lambda v: v * 3.0 + 1.0)
    x = np.ones(3)
    with count_compiles() as first:
        f(x)
    with count_compiles() as second:
        f(x)
    assert len(first) >= 1 and len(second) == 0


def test_a_partial_run_does_not_overwrite_the_full_report():
    from benchmarks import transformer

    assert (*CONFIGS, transformer.NAME) == run.ALL_CONFIGS
    assert run.destinations(list(run.ALL_CONFIGS), None, None) == (None, run.DEFAULT_SAVE)
    assert run.destinations(["transformer"], None, None) == ("-", None)
    assert run.destinations(["xor"], "r.md", None) == ("r.md", None)
    assert run.destinations(["xor"], None, "s.json") == ("-", "s.json")
