"""Cache files (pre-edit references, pre-edit downstream scores, statistics): the identity of a model they are keyed
by, and reading one. A cache file that cannot be read (truncated, not JSON, not safetensors, another layout) is named
in a warning and computed again: it holds nothing that cannot be recomputed."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from safetensors import SafetensorError

from lit_edit.paths import resolve_path

T = TypeVar("T")
UNREADABLE = (OSError, ValueError, KeyError, TypeError, RecursionError, SafetensorError)
"""What reading a damaged cache file raises (``json.JSONDecodeError`` and ``UnicodeDecodeError`` are ValueErrors)."""


def model_fingerprint(name_or_path: str) -> str:
    """Identity of a model for caches: the path plus, for a local folder, every file's name, size and mtime."""
    digest = hashlib.sha256(str(name_or_path).encode())
    path = resolve_path(name_or_path)
    if path.is_dir():
        for file in sorted(path.iterdir()):
            if file.is_file():
                stat = file.stat()
                digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def read_cached(path: Path | str, read: Callable[[Path], T], what: str) -> T | None:
    """``read(path)``, or None with a warning naming the file when it cannot be read (the caller recomputes and
    rewrites it)."""
    try:
        return read(Path(path))
    except UNREADABLE as error:
        warnings.warn(f"{what} {path} cannot be read ({type(error).__name__}: {error}); it is a cache, so it is "
                      "computed again and rewritten", stacklevel=2)
        return None
