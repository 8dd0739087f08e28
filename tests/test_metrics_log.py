"""Metrics logs: fit's records appended per epoch (JSON lines or CSV), read back as the same
history, continued after a resume without gaps or duplicates, torn lines dropped, other runs'
logs refused; `jaxbp plot FILE` redraws the curves."""

import json

import jax
import numpy as np
import pytest

import jaxbp as bp
from jaxbp.cli import main
from jaxbp.train import MetricsLog, read_log

X = np.random.default_rng(0).standard_normal((24, 2))
Y = (X[:, :1] * X[:, 1:] > 0).astype(np.float64)
NET = bp.serial(bp.dense(4), bp.tanh(), bp.dense(1), bp.sigmoid())
PARAMS = NET.init(jax.random.key(0), (2,))[0]


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_fit_callback_logs_its_history(tmp_path, suffix):
    log = MetricsLog(tmp_path / f"run{suffix}")
    result = bp.fit(NET, bp.binary_cross_entropy(), bp.optim.sgd(0.5), PARAMS, X, Y, key=0,
                    epochs=3, batch_size=8, validation=(X[:8], Y[:8]), callback=log)
    assert read_log(log.path) == result.history


def test_resume_fills_the_gap_and_skips_what_is_logged(tmp_path):
    path = tmp_path / "run.jsonl"
    records = [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 6)]
    log = MetricsLog(path)
    for r in records[:2]:
        log(None, r)
    restored = {k: [r[k] for r in records[:4]] for k in records[0]}  # a checkpoint of epoch 4
    log = MetricsLog(path, resume=True, history=restored)  # writes epochs 3 and 4
    log(None, records[3])  # already logged: skipped
    log(None, records[4])
    assert read_log(path) == {k: [r[k] for r in records] for k in records[0]}


def test_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text(json.dumps({"epoch": 1, "train_loss": 0.5}) + '\n{"epoch": 2, "tr')
    assert read_log(path) == {"epoch": [1], "train_loss": [0.5]}
    log = MetricsLog(path, resume=True)
    assert log.last == 1


def test_bad_logs_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "run.csv"
    MetricsLog(path)(None, {"epoch": 1, "train_loss": 0.5})
    with pytest.raises(FileExistsError, match=r"already holds 1 record\(s\).*Fix: a new file"):
        MetricsLog(path)
    with pytest.raises(ValueError, match=r"has columns \['epoch', 'train_loss'\]"):
        MetricsLog(path, resume=True)(None, {"epoch": 2, "val_loss": 0.1})
    with pytest.raises(IsADirectoryError, match="is a directory"):
        MetricsLog(tmp_path)
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(ValueError, match=r"line 1 of .* is not JSON"):
        read_log(tmp_path / "bad.jsonl")


def test_plot_command_draws_a_log(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    log = MetricsLog(path)
    for e in (1, 2, 3):
        log(None, {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e})
    assert main(["plot", str(path)]) == 0
    assert (tmp_path / "run.png").stat().st_size > 0
    assert "read 3 epoch(s)" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "missing.jsonl")]) == 2
    assert "no log file at" in capsys.readouterr().err


def test_read_log_names_a_missing_or_empty_log(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"read_log: no log file at .*Fix: pass the FILE"):
        read_log(tmp_path / "missing.jsonl")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ValueError, match=r"holds no record yet. Fix: pass a log of a run"):
        read_log(tmp_path / "empty.csv")


def test_a_log_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "a_file").write_text("")
    with pytest.raises(PermissionError, match=r"cannot write path=.*is not a directory. Fix: a "
                                              r"path in a writable folder"):
        MetricsLog(tmp_path / "a_file" / "run.jsonl")
