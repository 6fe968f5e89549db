"""What an editing run exports, and in which order: after ``metrics.json``, ``edits.safetensors`` and/or the
edited model as a Hugging Face folder, so a failed export (a full disk...) loses no score: it is recorded in
``metrics.json`` ``exports.failed`` and reported after everything else, naming what was kept. The export folder is
checked before the first edit (``lit_edit.export_folder``); the file formats are ``lit_edit.export``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from lit_edit.editors.base import Editor
from lit_edit.export import EDITS_FILE, export_model, save_edits
from lit_edit.export_folder import ExportFailedError, ExportTarget
from lit_edit.run_state import STATE_FILE


class RunExport:
    """The exports of one editing run.

    Args:
        name_or_path: the base model (its folder is never an export target).
        export_edits: write ``edits.safetensors`` into the run folder.
        export_model_dir: write the edited model as a Hugging Face folder here (None: no).
        overwrite_export: replace a previous lit-edit export in ``export_model_dir``.
        rollback: the run restores the weights after every step: nothing to export.
    """

    def __init__(self, name_or_path: str, export_edits: bool, export_model_dir: str | None, overwrite_export: bool,
                 rollback: bool):
        self.name_or_path, self.export_edits = str(name_or_path), export_edits
        self.export_model_dir, self.overwrite_export = export_model_dir, overwrite_export
        self.exports = not rollback and bool(export_edits or export_model_dir)
        self.base_sha256: str | None = None     # of the unedited model, set before the first edit

    def target(self, results: Path) -> ExportTarget:
        """The Hugging Face folder, refused where it would replace the results folder or the base model."""
        return ExportTarget(Path(self.export_model_dir), "model.export_model_dir", "model.overwrite_export",
                            self.overwrite_export, (("the results folder", results),
                                                    ("the base model (model.name_or_path)", Path(self.name_or_path))))

    def check_target(self, results: Path) -> None:
        """Before the results folder is claimed: the Hugging Face folder may be written."""
        if self.export_model_dir:
            self.target(results).check()

    def check_editor(self, editor: Editor) -> None:
        """Refuse a Hugging Face folder of edits in hook layers (before the first edit)."""
        if self.export_model_dir and editor.hook_bank() is not None:
            raise ValueError(f"model.export_model_dir={self.export_model_dir}: {editor.name} keeps its edits in hook "
                             f"layers, whose per-token gate a Hugging Face folder cannot carry; use the run's "
                             f"{EDITS_FILE} (python -m lit_edit.tools apply_edits, which can fold the hooks with "
                             "--fold_hooks true)")

    def write(self, folder: Path, model, tokenizer, editor: Editor, architecture: str, n_edits: int,
              changed_weights: Callable[[], Mapping[str, torch.Tensor]]) -> tuple[dict | None, ExportFailedError | None]:
        """At the end of a run without rollback, after ``metrics.json`` (rank zero): write the exports (the edited
        parameters that differ from the base: ``changed_weights()``). Returns what was written (``metrics.json``
        ``exports``; ``failed`` says what failed) and the error to raise once everything else is written."""
        if not self.exports:
            return None, None
        out: dict = {}
        try:
            if self.export_edits:
                path = save_edits(folder / EDITS_FILE, base_model=self.name_or_path, base_sha256=self.base_sha256,
                                  method=editor.name, n_edits=n_edits, weights=changed_weights(), hooks=editor.hook_bank(),
                                  architecture=architecture)
                out |= {"edits": path.name, "edits_bytes": path.stat().st_size}   # in the run folder
            if self.export_model_dir:
                out["model_dir"] = str(export_model(model, tokenizer, self.target(folder)))
        except Exception as error:    # reported after the scores are safe, naming what was kept
            out["failed"] = f"{type(error).__name__}: {error}"
            return out, ExportFailedError(self.failure(folder, error, out))
        return out, None

    def failure(self, folder: Path, error: Exception, written: dict) -> str:
        """What a failed export tells the user: the failure, what is kept and how to export again."""
        lines = [f"the run finished, but its export failed: {error}",
                 f"kept: the scores in {folder / 'metrics.json'} (exports.failed says what failed), steps.csv and "
                 "requests.csv beside it"]
        if "edits" in written:
            lines.append(f"{folder / EDITS_FILE} was written: make the model folder from it with python -m "
                         f"lit_edit.tools apply_edits --base {self.name_or_path} --edits {folder / EDITS_FILE}"
                         " --out <new folder>")
        elif (folder / STATE_FILE).exists():
            lines.append(f"the run state {folder / STATE_FILE} holds the edits: write them again with python -m "
                         f"lit_edit.tools export_edits --run {folder}")
        return "; ".join(lines)
