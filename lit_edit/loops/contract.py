"""What the consecutive editing loop and the module of an editing run promise each other.

The loop (``lit_edit/loops/consecutive.py``) owns the order of a run and its schedule; the module
(:class:`lit_edit.modules.EditingModule`) does the work. :class:`EditingRun` lists every call the loop makes on the
module; a module that is not one (e.g. the language model's perplexity test) runs as a plain Lightning test.
:class:`Schedule` is the schedule the loop hands the module when the run starts (docs/evaluation.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Schedule:
    """When an editing run scores (the ``trainer.eval_*`` options).

    Attributes:
        eval_pre: score every request on the unedited model before the first edit.
        eval_immediate: score each batch right after it is applied.
        every_n_batches: every k batches, score all edits so far, and the downstream tasks where
            ``model.downstream.periodic`` is true (0: never).
        eval_final: score all edits after the last batch.
    """

    eval_pre: bool = True
    eval_immediate: bool = True
    every_n_batches: int = 0
    eval_final: bool = True

    def periodic_after(self, batches_done: int) -> bool:
        """Whether the periodic evaluation falls after ``batches_done`` batches."""
        return bool(self.every_n_batches) and batches_done % self.every_n_batches == 0


@runtime_checkable
class EditingRun(Protocol):
    """The module of an editing run, as the loop calls it, in this order: :meth:`setup_run`, :meth:`fingerprint`,
    :meth:`start_run`, (:meth:`restore_run`), the test steps with :meth:`evaluate_applied` on the schedule and
    :meth:`run_state` at each checkpoint, then :meth:`finish_run`, or :meth:`write_partial_results` after an
    interrupt; :meth:`release_results_folder` however the run ends."""

    applied: list
    """The edit requests applied so far."""
    stop_reason: str | None
    """Why the run stops before its last batch (set during a step); None: it goes on."""

    @property
    def run_folder(self) -> Path | None:
        """The results folder (None before :meth:`setup_run` made it)."""

    def setup_run(self, schedule: Schedule, resumes: str | None = None) -> None:
        """Claim the results folder (for the run state ``resumes``, if any) and set the editor up."""

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide the run's results (a run state continues only an equal one)."""

    def start_run(self, evaluate_pre: bool) -> None:
        """Pre-edit references, scores and monitors."""

    def restore_run(self, state: dict) -> None:
        """Continue from a run state: weights, editor state and history."""

    def run_state(self) -> dict:
        """The module's part of a run state."""

    def evaluate_applied(self, cohort_batches: int) -> None:
        """The periodic evaluation of all edits so far (none with rollback)."""

    def finish_run(self, evaluate_final: bool) -> dict:
        """Final scores and every file of the run; returns ``metrics.json``'s content."""

    def write_partial_results(self, interruption: dict) -> Path:
        """``metrics.json`` of an interrupted run; returns its path."""

    def release_results_folder(self) -> None:
        """Unlock the results folder."""
