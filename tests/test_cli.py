"""The main job: `jaxbp train` with no arguments learns XOR after checking its gradients."""

import re
import subprocess
import sys


def test_jaxbp_train_learns_xor():
    out = subprocess.run([sys.executable, "-m", "jaxbp.cli", "train"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert re.search(r"gradient check: .* -> OK", out), out
    assert "correct: 4/4" in out, out
    loss = float(re.search(r"^train_loss: ([0-9.e-]+)$", out, re.M).group(1))
    assert loss < 0.01, out


# --------------------------------------------------------------------------------------
# jaxbp train with arguments, run in-process (strict JAX: float64, no rank promotion).

import os  # noqa: E402

import pytest  # noqa: E402

import jaxbp as bp  # noqa: E402
from jaxbp.cli import main  # noqa: E402


def _metrics(out: str) -> dict:
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^(\w+_(?:loss|accuracy)): ([0-9.e+-]+)$", out, re.M)}


def _strict_cli_at_o2(*args: str) -> str:
    """``jaxbp train ARGS`` in a process of its own under the same strict JAX (float64, no rank
    promotion), its stdout; compiled at XLA's default -O2 instead of the suite's -O0 (see
    conftest.py), which costs little in compiling but runs convolutions ~6x slower: this run
    trains 117 steps of a CNN (a minute at -O0, seconds at -O2; the same numbers)."""
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_NUMPY_RANK_PROMOTION="raise",
               XLA_FLAGS=" ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                  if not f.startswith("--xla_backend_optimization_level"))
               + " --xla_backend_optimization_level=2")
    run = subprocess.run([sys.executable, "-m", "jaxbp.cli", "train", *args], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_train_spirals_fits_and_writes_metrics_and_an_atomic_plot(tmp_path, capsys):
    path = tmp_path / "curves.png"
    assert main(["train", "spirals", "--no-progress", "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"gradient check: .* -> OK", out), out
    metrics = _metrics(out)
    assert set(metrics) == {f"{s}_{m}" for s in ("train", "val", "test")
                            for m in ("loss", "accuracy")}, out
    assert metrics["train_accuracy"] >= 0.99, out  # the default spirals network fits them
    # The metrics are the last lines, one per line.
    assert out.strip().splitlines()[-1].startswith("test_accuracy: ")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curves.png"], "a temporary file was left behind"


def test_train_with_optax_autodiff_penalties_and_patience(capsys):
    assert main(["train", "spirals", "--optax", "adamw", "--grad", "autodiff", "--lr", "0.01",
                 "--epochs", "3", "--hidden", "8,8", "--activation", "relu", "--l1", "1e-4",
                 "--l2", "1e-3", "--patience", "2", "--batch-size", "64",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "optax.adamw(learning_rate=0.01)" in out and "jax.grad (autodiff)" in out, out
    assert "dense(8), relu, dense(8), relu, dense(2)" in out, out
    assert "early stopping: kept the parameters of epoch" in out, out
    assert 0.0 <= _metrics(out)["test_accuracy"] <= 1.0


@pytest.mark.skipif(not hasattr(bp, "dropout"), reason="dropout layer not in this tree")
def test_train_with_dropout(capsys):
    assert main(["train", "moons", "--dropout", "0.2", "--epochs", "2", "--hidden", "8",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "dropout(0.2)" in out and re.search(r"gradient check: .* -> OK", out), out


@pytest.mark.parametrize("argv, match", [
    (["--hidden", "a,b"], r"argument --hidden: 'a,b' is not a list of positive layer widths"),
    (["--lr", "-1"], r"argument --lr: '-1' is not a positive learning rate"),
    (["--optimizer", "adam", "--optax", "adam"], r"not allowed with argument"),
    (["--epochs", "0"], r"argument --epochs: '0' is not a positive integer"),
])
def test_bad_flags_are_rejected_by_the_parser(argv, match, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", *argv])
    assert e.value.code == 2
    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize("argv, match", [
    (["--optax", "nosuch"], r"--optax 'nosuch' is not an optax optimizer"),
    (["--plot", "curves.jpg"], r"path='curves.jpg' must end in .png"),
    (["--dropout", "1.5"], r"--dropout 1.5 must be a probability in \[0, 1\)"),
])
def test_bad_settings_are_named_before_training(argv, match, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert re.search(match, err), err


def test_plot_errors_say_how_to_fix(tmp_path, monkeypatch):
    from jaxbp import plot

    history = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_accuracy": [0.5, 0.9]}
    with pytest.raises(ValueError, match=r"the folder of path=.* does not exist"):
        plot.save_training_plot(tmp_path / "missing" / "a.png", history)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxbp\[plot\]'"):
        plot.save_training_plot(tmp_path / "a.png", history)
    assert os.listdir(tmp_path) == []


def test_train_digits_cnn(capsys):
    """--model cnn wiring on a short run; the full default run (30 epochs) reaches >= 98 %
    test accuracy (measured 98.1-99.3 % over seeds 0-4)."""
    assert main(["train", "digits", "--model", "cnn", "--epochs", "3", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "conv2d(16, 3), relu, max_pool(2), conv2d(32, 3)" in out, out
    assert re.search(r"gradient check: .* -> OK", out), out
    assert _metrics(out)["test_accuracy"] >= 0.9, out   # 0.956 after 3 epochs (seed 0)


def test_train_digits_resnet():
    """--model resnet (batch norm's state through fit, evaluation and the gradient check in
    training mode) on a narrow short run; the default run (32 channels, 20 epochs) reaches
    98.9-100 % test accuracy over seeds 0-4 (measured, see docs/training.md)."""
    out = _strict_cli_at_o2("digits", "--model", "resnet", "--hidden", "16", "--epochs", "3",
                            "--no-progress")
    assert "conv2d(16, 3), batch_norm, relu, serial(residual(serial(conv2d(16, 3), batch_norm" \
        in out, out
    assert re.search(r"gradient check: .* -> OK", out), out
    assert "trained 3 epochs (117 steps)" in out, out  # 1257 examples: 39 full batches of 32
    assert _metrics(out)["test_accuracy"] >= 0.75, out  # 0.867 (seed 0)


@pytest.mark.parametrize("argv, match", [
    (["spirals", "--model", "cnn"], r"--model cnn works on image data, i.e. digits"),
    (["digits", "--model", "cnn", "--hidden", "16"], r"must give the channels of the two"),
    (["moons", "--model", "resnet"], r"--model resnet works on image data, i.e. digits"),
    (["digits", "--model", "resnet", "--hidden", "8,16"], r"one channel count per residual "
                                                         r"block, all equal"),
])
def test_train_cnn_errors(argv, match, capsys):
    assert main(["train", *argv, "--no-progress"]) == 2
    assert re.search(match, capsys.readouterr().err)
