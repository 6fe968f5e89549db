"""Atomic file writes: a reader never sees a half-written result, and a crash keeps the previous file."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def _temporary_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh hidden name beside ``path`` (created exclusively by the caller, so a clash raises)."""
    return path.parent / f".{path.name}.{secrets.token_hex(8)}{suffix}"


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s folder, then rename it over ``path`` in one step.

    The temporary file is flushed and fsynced before the rename and the folder after it, so a kill (or a crash of
    the machine) at any moment leaves either the previous ``path`` or the complete new one, never a mix; a failed
    ``write`` removes the temporary file and leaves ``path`` as it was. The temporary file is created as ``open``
    creates files (0o666 less the umask), so the result is as readable as a plain write's.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path, ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_torch_save(path: Path | str, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` atomically, streamed to the temporary file (no second copy in memory)."""
    import torch

    atomic_write(path, lambda f: torch.save(obj, f))


@contextmanager
def atomic_directory(path: Path | str) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces ``path``, on error it is removed (the
    previous ``path`` stays). The folder is created as ``mkdir`` creates folders (0o777 less the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
