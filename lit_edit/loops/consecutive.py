"""The consecutive editing loop: Lightning's evaluation loop with autograd allowed and an evaluation schedule.

Lightning 2.x has no public loop API (docs/lightning.md §1). The loop subclasses the private ``_EvaluationLoop``,
only *adds* behaviour around ``on_run_start``, ``_evaluation_step`` and ``on_run_end`` (each calls ``super()``),
and is installed by :class:`EditTrainer`, so everything else of ``trainer.test`` — callbacks, loggers, progress
bar, ``limit_test_batches``, strategies — keeps working. ``tests/unit/run/test_loop.py`` holds a canary test on the
private signatures it relies on (pinned range: lightning>=2.1,<2.7).

Schedules (docs/evaluation.md): ``immediate`` scores each batch right after it is applied; ``every k batches`` scores
all edits so far (and the first and latest cohorts of k batches: the retention curve) and, where
``model.downstream.periodic`` is true, the downstream tasks; ``final`` scores all edits after the last batch. The
loop hands the module its :class:`~lit_edit.loops.contract.Schedule` and calls it only through
:class:`~lit_edit.loops.contract.EditingRun`.

Checkpoint and resume (``lit_edit.run_state``): ``checkpoint_every_n_batches: N`` writes the run state after every
N batches (after that step's scores) and after the last batch, before the final evaluation, so that a resume of a
finished state redoes only that evaluation. ``resume_from`` sets the editor up on the unedited model as usual,
checks the state's fingerprint before any scoring, restores weights, editor state and history, restores the RNG
last, and skips the batches already done (they are fetched, not edited).

Interrupts: Ctrl-C (or SIGTERM, e.g. a cluster's preemption notice) writes the partial results (``metrics.json``
with ``interrupted``: the scores and monitors so far, no final scores) and, when the interrupt came between two
edit steps, a run state that ``resume_from`` continues; it prints where both are. An interrupt inside a step (its
edit, its scores, its run state) keeps the last saved run state (the weights may hold half an edit).
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loops import _EvaluationLoop
from lightning.pytorch.trainer.states import RunningStage, TrainerFn

from lit_edit.io import DiskFullError
from lit_edit.loops.contract import EditingRun, Schedule
from lit_edit.run_state import STATE_FILE, check_fingerprint, load_run_state, new_run_state, restore_rng, save_run_state
from lit_edit.run_summary import summary_text
from lit_edit.signals import interrupts_deferred


class ConsecutiveEditingLoop(_EvaluationLoop):
    """The test loop of an editing run (see the module docstring)."""

    def __init__(self, trainer: Trainer, eval_pre: bool = True, eval_immediate: bool = True,
                 eval_every_n_batches: int = 0, eval_final: bool = True, checkpoint_every_n_batches: int | None = None,
                 resume_from: str | None = None):
        super().__init__(trainer, TrainerFn.TESTING, RunningStage.TESTING, inference_mode=False)
        if eval_every_n_batches < 0:
            raise ValueError(f"trainer.eval_every_n_batches must be >= 0 (0 = never), got {eval_every_n_batches}")
        if checkpoint_every_n_batches is not None and checkpoint_every_n_batches < 1:
            raise ValueError("trainer.checkpoint_every_n_batches must be >= 1 (null: no run state), got "
                             f"{checkpoint_every_n_batches}")
        self.eval_pre, self.eval_immediate = eval_pre, eval_immediate
        self.eval_every_n_batches, self.eval_final = eval_every_n_batches, eval_final
        self.checkpoint_every_n_batches, self.resume_from = checkpoint_every_n_batches, resume_from
        self.steps_done = 0
        self.resumed_batches = 0                  # batches restored from a run state: skipped, not edited again
        self.save_seconds: list[float] = []       # the time of each run-state save (rank zero)
        self._saved_at: int | None = None
        self._fingerprint: dict | None = None
        self._in_step: int | None = None         # the batch being processed (an interrupt there leaves half a step)
        self._previous_sigterm = None

    def _editing_module(self) -> EditingRun | None:
        module = self.trainer.lightning_module
        if not isinstance(module, EditingRun):
            return None            # a plain test (e.g. the language model's perplexity) runs unchanged
        return module

    @property
    def schedule(self) -> Schedule:
        """When the run scores (handed to the module when the run starts)."""
        return Schedule(self.eval_pre, self.eval_immediate, self.eval_every_n_batches, self.eval_final)

    @property
    def schedule_options(self) -> dict:
        """The schedule options that shape a run's history (part of a run state's fingerprint)."""
        return {"trainer.eval_pre": self.eval_pre, "trainer.eval_immediate": self.eval_immediate,
                "trainer.eval_every_n_batches": self.eval_every_n_batches}

    def on_run_start(self) -> None:
        super().on_run_start()
        self.steps_done = self.resumed_batches = 0
        self._saved_at = None
        self.save_seconds = []
        module = self._editing_module()
        if module is None:
            if self.resume_from:
                raise ValueError(f"trainer.resume_from is set, but {type(self.trainer.lightning_module).__name__} "
                                 "is not an editing run (EditingModule); it has no run state to resume")
            return
        state = load_run_state(self.resume_from) if self.resume_from else None
        self._catch_sigterm()
        module.setup_run(self.schedule, resumes=state["path"] if state is not None else None)
        self._fingerprint = {**module.fingerprint(), **self.schedule_options}   # also for the state an interrupt writes
        if state is not None:
            check_fingerprint(state, self._fingerprint)       # before the references, pre scores and monitors
        module.start_run(evaluate_pre=self.eval_pre and state is None)   # a resumed run restores the pre scores
        if state is not None:
            self._resume(module, state)

    def _resume(self, module, state: dict) -> None:
        module.restore_run(state)
        self.steps_done = self.resumed_batches = self._saved_at = state["batches_done"]
        restore_rng(state["rng"])     # last: nothing may draw from the generators before the next step
        if self.trainer.is_global_zero:
            print(f"[lit-edit] resumed from {state['path']}: {self.resumed_batches} batches "
                  f"({len(module.applied)} edits) done; continuing")

    def _evaluation_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter) -> None:
        module = self._editing_module()
        if module is not None and module.stop_reason:
            raise StopIteration   # a resumed run that had stopped early: nothing more to edit
        if module is not None and batch_idx < self.resumed_batches:
            return                # applied before the interruption and restored from the run state
        self._in_step = batch_idx       # until the step's edit, its scores and its run state are all done
        super()._evaluation_step(batch, batch_idx, dataloader_idx, dataloader_iter)
        if module is None:
            self._in_step = None
            return
        self.steps_done += 1
        if self.schedule.periodic_after(self.steps_done):
            module.evaluate_applied(cohort_batches=self.eval_every_n_batches)
        n = self.checkpoint_every_n_batches
        if n and self.steps_done % n == 0:
            self._save_state(module)
        self._in_step = None
        if module.stop_reason:
            if self.trainer.is_global_zero:
                print(f"[lit-edit] stopping early: {module.stop_reason}")
            raise StopIteration   # ends the loop's batch iteration cleanly

    def _save_state(self, module) -> None:
        """Write the run state into the run folder (rank zero only: every rank holds the same edits).

        An interrupt waits until the file and ``_saved_at`` agree: one that came between the file's rename and the
        counter's update would report (and point a resume at) the previous state while the file holds this one.
        """
        with interrupts_deferred():
            if self.trainer.is_global_zero:
                started = time.perf_counter()
                state = new_run_state(self.steps_done, self._fingerprint, module.run_state())
                try:
                    save_run_state(module.run_folder / STATE_FILE, state)
                except DiskFullError as error:
                    folder = module.run_folder
                    batches = f"{self._saved_at} batch{'es' if self._saved_at != 1 else ''}"
                    kept = (f"the run state after {batches}, which --trainer.resume_from {folder} continues once "
                            "there is space" if self._saved_at is not None else "no run state")
                    raise DiskFullError(f"{error}. The run stops after {self.steps_done} batches; kept in {folder}: "
                                        f"{kept}, and steps.csv with every step so far") from error
                self.save_seconds.append(time.perf_counter() - started)
            self._saved_at = self.steps_done

    def run(self):
        try:
            return super().run()
        except KeyboardInterrupt:
            self._on_interrupt()
            raise               # Lightning's own handling follows: callbacks' on_exception, teardown, exit code 1
        finally:
            self._restore_sigterm()
            module = self._editing_module()
            if module is not None:
                module.release_results_folder()

    def _catch_sigterm(self) -> None:
        """SIGTERM ends the run like Ctrl-C (partial results and a run state) instead of silently."""
        if threading.current_thread() is threading.main_thread():
            def interrupt(signum, frame):
                raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

            self._previous_sigterm = signal.signal(signal.SIGTERM, interrupt)

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _on_interrupt(self) -> None:
        """Write what the interrupted run computed (no collectives: the other ranks are interrupted too)."""
        module = self._editing_module()
        if module is None or module.run_folder is None:
            return                 # interrupted before the run folder existed: nothing was computed yet
        mid_step = self._in_step
        if mid_step is None and self._fingerprint is not None and self._saved_at != self.steps_done:
            self._save_state(module)
        state = module.run_folder / STATE_FILE if self._saved_at is not None else None
        interruption = {"batches_done": self.steps_done, "n_edits": len(module.applied),
                        "during_batch": mid_step, "run_state": str(state) if state else None,
                        "run_state_batches": self._saved_at}
        path = module.write_partial_results(interruption)
        if not self.trainer.is_global_zero:
            return
        where = f"during edit step {mid_step}" if mid_step is not None else "between edit steps"
        lines = [f"[lit-edit] interrupted {where}, after {self.steps_done} batches ({len(module.applied)} edits): "
                 f"partial results in {path} (and steps.csv beside it)"]
        if state is not None:
            lines.append(f"[lit-edit] run state after {self._saved_at} batches: {state}; continue with "
                         f"--trainer.resume_from {module.run_folder}")
        else:
            lines.append("[lit-edit] no run state was saved (set trainer.checkpoint_every_n_batches to keep one)")
        print("\n".join(lines), flush=True)

    def on_run_end(self):
        module = self._editing_module()
        if module is not None:
            if self.checkpoint_every_n_batches and self._saved_at != self.steps_done:
                self._save_state(module)     # the end state, before the final scores (a resume redoes only them)
            results = module.finish_run(evaluate_final=self.eval_final)
            if self.trainer.is_global_zero:
                print(summary_text(results, module.run_folder), flush=True)
        return super().on_run_end()


class EditTrainer(Trainer):
    """A Trainer whose test loop is the :class:`ConsecutiveEditingLoop`.

    Args:
        eval_pre: score all requests on the unedited model before the first edit.
        eval_immediate: score each batch right after it is applied.
        eval_every_n_batches: every k batches, score all edits so far (0: never; ignored with rollback), and the
            downstream tasks where ``model.downstream.periodic`` is true (with rollback too: the k-th step's edits).
        eval_final: score all edits after the last batch.
        checkpoint_every_n_batches: write the run state (``run_state.pt`` in the run folder: edited weights,
            editor state, position, RNG, history) atomically every N batches and after the last; null: never.
        resume_from: continue the run whose state is this file or run folder; the batches it holds are skipped.
            Refused, naming each differing field, when the state comes from another model or configuration.
        use_distributed_sampler: default False — the edit stream is never sharded (docs/lightning.md §2.2).
    """

    def __init__(self, *args, eval_pre: bool = True, eval_immediate: bool = True, eval_every_n_batches: int = 0,
                 eval_final: bool = True, checkpoint_every_n_batches: int | None = None, resume_from: str | None = None,
                 use_distributed_sampler: bool = False, **kwargs):
        super().__init__(*args, use_distributed_sampler=use_distributed_sampler, **kwargs)
        self.test_loop = ConsecutiveEditingLoop(self, eval_pre, eval_immediate, eval_every_n_batches, eval_final,
                                                checkpoint_every_n_batches, resume_from)
