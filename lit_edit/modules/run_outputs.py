"""Where an editing run writes, and in which order: its own results folder, then the scores, then the exports.

:class:`RunOutputs` is mixed into :class:`~lit_edit.modules.editing.EditingModule`. Before any work the run picks its
results folder (``model.results_dir``; unset: the logger's version folder, or a new ``results/<time>`` folder in
``trainer.default_root_dir`` without a logger), checks the export folder (``lit_edit.export_folder``) and claims the
results folder (``lit_edit.run_folder``: a lock, no other run's files). At the end ``metrics.json`` is written
before ``edits.safetensors`` and the Hugging Face export, so a failed export (a full disk...) loses no score: it is
recorded in ``metrics.json`` ``exports.failed`` and reported after everything else, naming what was kept.
"""

from __future__ import annotations

import time
from pathlib import Path

from lit_edit.export import EDITS_FILE, export_model, hook_bank, save_edits
from lit_edit.export_folder import ExportFailedError, ExportTarget, new_folder
from lit_edit.run_folder import RunFolderError, RunFolderLock, claim_run_folder
from lit_edit.run_state import STATE_FILE


class RunOutputs:
    """Results-folder and export methods of the editing module (they use its hparams, trainer, ranks, recorder)."""

    folder_lock: RunFolderLock | None = None

    def _results_folder(self) -> tuple[Path, str]:
        """This run's folder and what chose it (for messages); the same on every rank."""
        if self.hparams.results_dir:
            return Path(self.hparams.results_dir), "model.results_dir"
        if self.trainer.logger is not None and self.trainer.log_dir:
            return Path(self.trainer.log_dir), "the logger's version folder (model.results_dir unset)"
        folder = new_folder(Path(self.trainer.default_root_dir) / "results" / time.strftime("%Y%m%d-%H%M%S"))
        return Path(self.ranks.gather(str(folder))[0]), "the new results folder (model.results_dir unset)"

    def _claim_results_folder(self, folder: Path, option: str, resumes: str | None) -> None:
        """Check the export folder, then lock ``folder`` for this run (rank zero; every rank stops on a refusal)."""
        if self.hparams.export_model_dir:
            self._export_target(folder).check()
        error = None
        if self.ranks.is_zero:
            try:
                self.folder_lock = claim_run_folder(folder, option, resumes)
            except RunFolderError as refused:
                error = refused
        message = self.ranks.gather(str(error) if error else None)[0]
        if message is not None:
            raise error or RunFolderError(message)

    def release_results_folder(self) -> None:
        """Unlock the results folder (at the end of the run, however it ends)."""
        if self.folder_lock is not None:
            self.folder_lock.release()
            self.folder_lock = None

    def _export_target(self, results: Path) -> ExportTarget:
        return ExportTarget(Path(self.hparams.export_model_dir), "model.export_model_dir", "model.overwrite_export",
                            self.hparams.overwrite_export,
                            (("the results folder", results), ("the base model (model.name_or_path)",
                                                               Path(self.hparams.name_or_path))))

    def _export(self) -> tuple[dict | None, ExportFailedError | None]:
        """At the end of a run without rollback, after ``metrics.json``: ``edits.safetensors`` and/or the Hugging Face
        folder (rank zero). Returns what was written (``metrics.json`` ``exports``; ``failed`` says what failed) and
        the error to raise once everything else is written."""
        if not self._exports or not self.trainer.is_global_zero:
            return None, None
        out: dict = {}
        try:
            if self.hparams.export_edits:
                path = save_edits(self.recorder.directory / EDITS_FILE, base_model=str(self.hparams.name_or_path),
                                  base_sha256=self.base_sha256, method=self.editor.name, n_edits=len(self.applied),
                                  weights=self._changed_weights(), hooks=hook_bank(self.editor),
                                  architecture=self.arch.name)
                out |= {"edits": path.name, "edits_bytes": path.stat().st_size}   # in the run folder
            if self.hparams.export_model_dir:
                folder = export_model(self.model, self.tokenizer, self._export_target(self.recorder.directory))
                out["model_dir"] = str(folder)
        except Exception as error:    # reported after the scores are safe, naming what was kept
            out["failed"] = f"{type(error).__name__}: {error}"
            return out, ExportFailedError(self._export_failure(error, out))
        return out, None

    def _export_failure(self, error: Exception, written: dict) -> str:
        """What a failed export tells the user: the failure, what is kept and how to export again."""
        folder = self.recorder.directory
        lines = [f"the run finished, but its export failed: {error}",
                 f"kept: the scores in {folder / 'metrics.json'} (exports.failed says what failed), steps.csv and "
                 "requests.csv beside it"]
        if "edits" in written:
            lines.append(f"{folder / EDITS_FILE} was written: make the model folder from it with python -m "
                         f"lit_edit.tools apply_edits --base {self.hparams.name_or_path} --edits {folder / EDITS_FILE}"
                         " --out <new folder>")
        elif (folder / STATE_FILE).exists():
            lines.append(f"the run state {folder / STATE_FILE} holds the edits: write them again with python -m "
                         f"lit_edit.tools export_edits --run {folder}")
        return "; ".join(lines)
