"""Writing files: atomically (everything cin-style writes appears whole or not at all), and
checking before any work that an output can be written where it is asked for."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["OutputError", "atomic_path", "check_writable", "check_output"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``.

    A crash, an exception or Ctrl-C inside the block leaves any previous file intact and no
    temporary file behind. The temporary name keeps the target's suffix, so writers that pick
    a format from the suffix (Pillow, FFmpeg) behave as for the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have:
        # the replaced file's, or 0666 less the umask.
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class OutputError(ValueError):
    """An output path that cannot be used; the message says why."""


def check_writable(folder: str | os.PathLike) -> None:
    """Create ``folder`` if needed and prove that a file can be written there, before any work."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise OutputError(f"cannot write to {folder}: {err.strerror or err}") from None


def check_output(path: str | os.PathLike, *, folder: bool, suffixes: Collection[str]) -> None:
    """Check an output before any work: a writable folder (``folder``), or a file name whose
    suffix is one of ``suffixes`` in a writable folder."""
    path = Path(path)
    if folder:
        if path.suffix.lower() in suffixes:
            raise OutputError(f"{path}: several outputs need a folder, not a file name")
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path}: exists and is not a folder")
        check_writable(path)
        return
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if path.suffix.lower() not in suffixes:
        raise OutputError(f"{path}: the output's suffix must be one of {', '.join(sorted(suffixes))}")
    check_writable(path.parent)
