"""Metrics logs: one record per epoch, appended to a file as training goes.

``MetricsLog(path)`` is a :func:`~jaxbp.fit` callback. Each epoch's record (``epoch``,
``seconds``, ``objective``, ``train_loss``, ...) becomes one line — a JSON object (``.jsonl``,
``.json`` or any other suffix) or a CSV row (``.csv``, with a header line first). A line is
written with one ``write`` on a file opened for appending and ``fsync``-ed, so a crash leaves
whole lines only (a torn last line, from a full disk, is dropped when the log is read).

A log continues a run: ``MetricsLog(path, resume=True, history=restored)`` appends after the
last epoch already logged, first writing any epoch that ``restored`` (the history of the
checkpoint a run resumes from) holds but the log lacks, and skips epochs it already has. A fresh
run refuses a log that already holds records, so nothing is overwritten.

:func:`read_log` reads a log back as a history (``{name: [value per epoch]}``), the form
``fit`` returns and ``jaxbp.plot.save_training_plot`` draws.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from jaxbp._files import unwritable


def _format(path: Path) -> str:
    return "csv" if path.suffix.lower() == ".csv" else "jsonl"


def _lines(path: Path) -> list[str]:
    """The complete lines of ``path`` (a last line without its newline is torn: dropped)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return [line for line in lines[:-1] if line.strip()]  # lines[-1]: "" or a torn line


def _records(path: Path) -> list[dict]:
    lines = _lines(path)
    if _format(path) == "csv":
        if not lines:
            return []
        rows = csv.DictReader(io.StringIO("\n".join(lines) + "\n"))
        return [{k: _number(v) for k, v in row.items()} for row in rows]
    out = []
    for i, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"read_log: line {i} of {str(path)!r} is not JSON ({e.msg}). Fix: "
                             f"pass a log written by jaxbp train --log or MetricsLog.") from None
    return out


def _number(text: str):
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def read_log(path: str | os.PathLike) -> dict[str, list]:
    """The history a metrics log holds: ``{"epoch": [1, 2, ...], "train_loss": [...], ...}``.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: a line is not a record, or the log holds no record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"read_log: no log file at {str(path)!r}. Fix: pass the FILE "
                                f"given to jaxbp train --log FILE.")
    records = _records(path)
    if not records:
        raise ValueError(f"read_log: {str(path)!r} holds no record yet. Fix: pass a log of a "
                         f"run that finished at least one epoch.")
    history: dict[str, list] = {}
    for record in records:
        for k, v in record.items():
            history.setdefault(k, []).append(v)
    return history


class MetricsLog:
    """A :func:`~jaxbp.fit` callback appending each epoch's record to ``path``.

    Args:
      path: the log file; ``.csv`` writes CSV, any other suffix JSON lines.
      resume: continue a log that already holds records (a resumed run); without it such a
        log is refused, so a new run never mixes with or overwrites an old one.
      history: the history the run starts from (a resumed checkpoint's); epochs it holds past
        the log's last are written first, so a crash between a checkpoint and its log line
        loses nothing.

    Examples:
      >>> import tempfile, os, jaxbp as bp
      >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
      >>> log = bp.train.MetricsLog(path)
      >>> log(None, {"epoch": 1, "train_loss": 0.5})
      >>> bp.train.read_log(path)
      {'epoch': [1], 'train_loss': [0.5]}
    """

    def __init__(self, path: str | os.PathLike, *, resume: bool = False,
                 history: dict | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            example = str(self.path / 'metrics.jsonl')
            raise IsADirectoryError(f"MetricsLog: path={str(self.path)!r} is a directory. Fix: "
                                    f"name a file in it, e.g. {example!r}.")
        why = unwritable(self.path.parent)
        if why is not None:
            raise PermissionError(f"MetricsLog: cannot write path={str(self.path)!r}: {why}. "
                                  f"Fix: a path in a writable folder.")
        self.format = _format(self.path)
        records = _records(self.path)
        if records and not resume:
            raise FileExistsError(
                f"MetricsLog: {str(self.path)!r} already holds {len(records)} record(s) of "
                f"another run. Fix: a new file, or resume=True (jaxbp train --resume) to "
                f"continue it.")
        self.columns = list(records[0]) if records and self.format == "csv" else None
        self.last = max((int(r.get("epoch", 0)) for r in records), default=0)
        for record in _history_records(history or {}):
            self.write(record)

    def __call__(self, state, record: dict) -> None:
        """fit's callback: appends ``record`` unless its epoch is logged already."""
        self.write(record)

    def write(self, record: dict) -> None:
        """Appends ``record`` (a dict of numbers with an ``epoch``) as one line."""
        epoch = int(record.get("epoch", self.last + 1))
        if epoch <= self.last:
            return
        line = self._line({k: _plain(v) for k, v in record.items()})
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            data = line.encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self.last = epoch

    def _line(self, record: dict) -> str:
        if self.format == "jsonl":
            return json.dumps(record) + "\n"
        header = ""
        if self.columns is None:
            self.columns = list(record)
            header = ",".join(self.columns) + "\n"
        if list(record) != self.columns:
            raise ValueError(f"MetricsLog: {str(self.path)!r} has columns {self.columns}, but "
                             f"this record has {list(record)}. Fix: log each run to its own "
                             f"file.")
        return header + ",".join(repr(record[k]) for k in self.columns) + "\n"


def _plain(value):
    """A record's value as a JSON/CSV number (NumPy and JAX scalars included)."""
    if isinstance(value, (bool, int)):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else str(value)


def _history_records(history: dict) -> list[dict]:
    n = max((len(v) for v in history.values()), default=0)
    return [{k: v[i] for k, v in history.items() if i < len(v)} for i in range(n)]


__all__ = ["MetricsLog", "read_log"]
