"""fit's progress bar: one line on a terminal, redrawn in place each epoch."""

from __future__ import annotations

import sys
import time


class Progress:
    """``epoch 3/10 [###---] 1.2s train_loss ...``, redrawn at most every ``every`` seconds."""

    def __init__(self, total: int, stream, width: int = 24, every: float = 0.1):
        self.total, self.stream, self.width, self.every = total, stream, width, every
        self.start = self.last = time.perf_counter()

    def update(self, epoch: int, record: dict) -> None:
        now = time.perf_counter()
        if now - self.last < self.every and epoch < self.total:
            return  # a fast loop would spend its time redrawing the terminal
        self.last = now
        filled = int(self.width * epoch / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        shown = " ".join(f"{k} {v:.4f}" for k, v in record.items()
                         if k not in ("epoch", "seconds", "objective"))
        self.stream.write(f"\repoch {epoch}/{self.total} [{bar}] "
                          f"{now - self.start:.1f}s {shown}\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def progress_bar(progress: bool | None, stream, total: int, start: int) -> Progress | None:
    """The bar :func:`fit` draws on ``stream`` (default stderr) for epochs ``start+1..total``:
    ``progress=None`` shows it only on a terminal; ``None`` when nothing is to be drawn."""
    stream = sys.stderr if stream is None else stream
    if progress is None:
        progress = bool(getattr(stream, "isatty", lambda: False)())
    return Progress(total, stream) if progress and start < total else None


__all__ = ["Progress", "progress_bar"]
