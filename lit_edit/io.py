"""Atomic file writes: a reader never sees a half-written result, and a crash keeps the previous file.

A write that fails because the disk (or the user's quota) is full raises :class:`DiskFullError`, naming the file and
saying what was kept, instead of the bare ``OSError`` (or torch's ``RuntimeError`` around it).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from lit_edit.errors import UserError

NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(UserError):
    """No space was left on the device during a write; the message names the file and what was kept."""


def no_space(error: BaseException) -> OSError | None:
    """The "no space left" ``OSError`` behind ``error``, if any (torch.save wraps it in a ``RuntimeError``)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            return error
        error = error.__cause__ or error.__context__
    return None


def disk_full(path: Path | str, kept: str, error: OSError) -> DiskFullError:
    """The error to raise when writing ``path`` ran out of space: the path, the system's words and what was kept."""
    return DiskFullError(f"no space left on the device writing {path} ({error.strerror or error}); {kept}")


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
    existed = path.exists()
    tmp = _temporary_sibling(path, ".tmp")
    try:
        with _create_temporary(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        if os.path.exists(tmp):
            os.unlink(tmp)
        full = no_space(error)
        if full is not None:
            kept = f"{path} keeps its previous content" if existed else f"{path} was not written"
            raise disk_full(path, kept, full) from error
        raise
    _fsync_folder(path.parent)


def _create_temporary(tmp: Path) -> IO[bytes]:
    """Create ``tmp`` exclusively (a clash raises) for binary writing, as ``open`` creates files."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "wb")


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
def atomic_directory(path: Path | str, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it takes ``path``'s place, on error it is removed (the
    previous ``path`` stays). The folder is created as ``mkdir`` creates folders (0o777 less the umask), and a file
    the fill created more privately than ``open`` would (safetensors writes 0600) gets the usual mode.

    An existing ``path`` is replaced only when it is an empty folder, or when ``replace`` is true: the caller has
    checked that the folder is its own to replace (``lit_edit.export_folder``). Otherwise, and for a symbolic
    link, ``FileExistsError``, before the fill and again before the swap. The swap moves the old folder aside, the new
    one in, and only then removes the old one, so a failure at any point keeps one of them whole.
    """
    path = Path(path)
    _check_replaceable(path, replace)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        _usual_file_modes(tmp)
        _check_replaceable(path, replace)
        if os.path.lexists(path):
            old = _temporary_sibling(path, ".old")
            os.rename(path, old)
            try:
                os.rename(tmp, path)
            except BaseException:
                os.rename(old, path)
                raise
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _check_replaceable(path: Path, replace: bool) -> None:
    """Refuse a symbolic link, a file, or (unless ``replace``) a folder that is not empty."""
    if path.is_symlink():
        raise FileExistsError(f"{path} is a symbolic link; a folder written atomically would replace the link")
    if path.exists() and (not path.is_dir() or (not replace and any(path.iterdir()))):
        raise FileExistsError(f"{path} exists and is {'a file' if not path.is_dir() else 'not empty'}")


def _usual_file_modes(folder: Path) -> None:
    """Give every file under ``folder`` at least the permissions ``open`` gives new files (0o666 less the umask,
    read from ``folder``'s own mode: ``mkdir`` made it 0o777 less the umask; the umask itself is not touched)."""
    usual = stat.S_IMODE(folder.stat().st_mode) & 0o666
    for file in folder.rglob("*"):
        if file.is_file() and not file.is_symlink():
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & usual != usual:
                os.chmod(file, mode | usual)
