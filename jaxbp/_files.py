"""Files written safely: atomically, with the user's umask, and checked for writability early.

:func:`atomic_write` is shared by checkpoints and plots: the bytes go to a temporary file in the
target's directory, are flushed and ``fsync``-ed, the file gets the mode a plain ``open`` would
give it (``0o666 & ~umask``; ``mkstemp`` creates ``0o600``), and it is ``os.replace``-d over the
target, so a reader never sees a torn file and a crash leaves the previous one intact.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO
from collections.abc import Callable


def umask() -> int:
    """The process's umask (read by setting it and restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None], *,
                 prefix: str = ".tmp-", suffix: str = ".tmp") -> Path:
    """Writes ``path`` atomically: ``write(f)`` fills a temporary file beside it, which is then
    given mode ``0o666 & ~umask`` and renamed over ``path``; the directory is ``fsync``-ed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(directory: Path) -> None:
    """Makes a rename in ``directory`` durable; not every platform lets a directory be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unwritable(directory: str | os.PathLike) -> str | None:
    """Why no file can be created in ``directory`` (or, if it does not exist yet, in the
    nearest folder above it, where it would be created), or ``None`` if one can.

    Tries it (a temporary file, removed at once): permission bits do not tell, e.g. for root,
    or for ``/proc`` and read-only file systems.
    """
    folder = Path(os.path.abspath(directory))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{str(folder)!r} is not a directory"
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".jaxbp-write-test-")
    except OSError as e:
        return f"{str(folder)!r} does not accept new files ({e.strerror or e})"
    os.close(fd)
    os.unlink(tmp)
    return None


__all__ = ["atomic_write", "fsync_dir", "umask", "unwritable"]
