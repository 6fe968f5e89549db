"""The folders lit-edit exports into (an edited model, a trained MEND editor, a pretrained model): what an export
may replace.

An export replaces its folder as a whole (:func:`lit_edit.io.atomic_directory`), so lit-edit writes only where that
deletes nothing it did not write: a new or empty folder, or its own previous export (every export holds the marker
file :data:`MARKER`), and that one only when the overwrite option is given. It never exports to a symbolic link, to
the current folder, or to (or around) a folder the run reads or writes: the results folder, the base model.
:meth:`ExportTarget.check` is called when the options are read, before any work, and again just before the swap.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lit_edit.errors import UserError
from lit_edit.io import atomic_directory, disk_full, no_space

MARKER = "lit-edit-export.json"


class ExportFolderError(UserError):
    """An export target that would delete or mix what lit-edit did not write there; the option is named."""


class ExportFailedError(UserError):
    """An export that failed after the work it exports was done; the message says what was kept and where."""


@dataclass(frozen=True)
class ExportTarget:
    """Where an export goes and which options said so.

    Attributes:
        path: the export folder.
        option: the option that named it (``model.export_model_dir``, ``--out``...), for messages.
        overwrite_option: the option that allows replacing a previous lit-edit export there.
        overwrite: whether it was given.
        protected: ``(what, folder)`` pairs the export may neither be nor hold (the results folder, the base model).
    """

    path: Path
    option: str = "the export folder"
    overwrite_option: str = "overwrite"
    overwrite: bool = False
    protected: tuple[tuple[str, Path], ...] = ()

    @classmethod
    def of(cls, target: ExportTarget | Path | str) -> ExportTarget:
        """``target`` itself, or a plain path as a target with no options."""
        return target if isinstance(target, ExportTarget) else cls(Path(target))

    def _refuse(self, problem: str) -> ExportFolderError:
        return ExportFolderError(f"{self.option}={self.path} {problem}")

    def check(self) -> None:
        """Refuse a target the export would destroy or mix with (see the module docstring).

        Raises:
            ExportFolderError: naming the option, the folder and the way out.
        """
        path = Path(self.path)
        if path.is_symlink():
            raise self._refuse(f"is a symbolic link (to {os.readlink(path)}): an export replaces its folder, which "
                               "would delete the link; name the real folder or a new one")
        resolved, here = path.resolve(), Path.cwd().resolve()
        if resolved == here or resolved in here.parents:
            raise self._refuse(f"is the current folder{'' if resolved == here else ' or holds it'}, which an export "
                               "would replace; name a new folder")
        for what, folder in self.protected:
            folder = Path(folder).resolve()
            if resolved == folder or resolved in folder.parents:
                raise self._refuse(f"{'is' if resolved == folder else 'holds'} {what} ({folder}), which an export "
                                   "would replace; name another folder")
        if not os.path.lexists(path):
            return
        if not path.is_dir():
            raise self._refuse("is a file; name a folder")
        entries = sorted(os.listdir(path))
        if not entries:
            return
        if MARKER in entries:
            if self.overwrite:
                return
            raise self._refuse(f"holds a previous lit-edit export ({_describe(path / MARKER)}); pass "
                               f"{self.overwrite_option} true to replace it, or name a new folder")
        listed = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")
        raise self._refuse(f"holds files lit-edit did not write ({listed}); an export replaces its whole folder, so "
                           "lit-edit writes only into a new or empty folder or over its own previous export: name "
                           "a new folder")


def training_export_target(export_dir: Path | str, overwrite: bool, base: str | None) -> ExportTarget:
    """The target of a training module's ``export_dir`` (``model.overwrite_export`` replaces a previous export; the
    base model's folder is protected)."""
    return ExportTarget(Path(export_dir), "model.export_dir", "model.overwrite_export", overwrite,
                        (("the base model (model.name_or_path)", Path(base)),) if base else ())


def new_folder(path: Path) -> Path:
    """``path`` if nothing is there, else the first of ``path-2``, ``path-3``... that is free."""
    candidate, n = path, 1
    while os.path.lexists(candidate):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _describe(marker: Path) -> str:
    """What a previous export's marker says it holds."""
    try:
        written = json.loads(marker.read_text(encoding="utf-8"))
        return f"{written['what']}, written {written['written']}"
    except (OSError, ValueError, KeyError, TypeError):
        return MARKER


@contextmanager
def export_folder(target: ExportTarget | Path | str, what: str) -> Iterator[Path]:
    """Yield a temporary folder to fill with the export; on success it replaces ``target``'s folder, holding
    :data:`MARKER` (``what`` the export is). ``target`` is checked before the fill and again before the swap.

    Raises:
        ExportFolderError: the target may not be replaced (:meth:`ExportTarget.check`).
        DiskFullError: the disk filled up; nothing changed at the target.
    """
    target = ExportTarget.of(target)
    target.check()
    existed = os.path.lexists(target.path)
    try:
        with atomic_directory(target.path, replace=True) as tmp:
            yield tmp
            marker = {"written_by": "lit-edit", "what": what, "written": time.strftime("%Y-%m-%d %H:%M:%S")}
            (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            target.check()    # another process may have written there in the meantime
    except Exception as error:   # safetensors and torch wrap the OSError of a full disk
        full = no_space(error)
        if full is None:
            raise
        kept = "the previous export there is kept" if existed else "nothing was written there"
        raise disk_full(target.path, kept, full) from error


def export_hf(model, tokenizer, export_dir: ExportTarget | str | Path, what: str = "model") -> Path:
    """Write a Hugging Face folder atomically: into a temporary sibling, then swapped into place (only where
    ``lit_edit.export_folder`` allows it)."""
    target = ExportTarget.of(export_dir)
    with export_folder(target, what) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(target.path)
