"""The consecutive editing loop: Lightning's evaluation loop with autograd allowed and an evaluation schedule.

Lightning 2.x has no public loop API (lightning.md §1). The loop subclasses the private ``_EvaluationLoop``,
only *adds* behaviour around ``on_run_start``, ``_evaluation_step`` and ``on_run_end`` (each calls ``super()``),
and is installed by :class:`EditTrainer`, so everything else of ``trainer.test`` — callbacks, loggers, progress
bar, ``limit_test_batches``, strategies — keeps working. ``tests/test_loop.py`` holds a canary test on the
private signatures it relies on (pinned range: lightning>=2.1,<2.7).

Schedules (evaluation.md): ``immediate`` scores each batch right after it is applied; ``every k batches`` scores
all edits so far (and the first and latest cohorts of k batches: the retention curve); ``final`` scores all
edits after the last batch.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.loops import _EvaluationLoop
from lightning.pytorch.trainer.states import RunningStage, TrainerFn


class ConsecutiveEditingLoop(_EvaluationLoop):
    """The test loop of an editing run (see the module docstring)."""

    def __init__(self, trainer: Trainer, eval_pre: bool = True, eval_immediate: bool = True,
                 eval_every_n_batches: int = 0, eval_final: bool = True):
        super().__init__(trainer, TrainerFn.TESTING, RunningStage.TESTING, inference_mode=False)
        if eval_every_n_batches < 0:
            raise ValueError(f"eval_every_n_batches must be >= 0 (0 = never), got {eval_every_n_batches}")
        self.eval_pre, self.eval_immediate = eval_pre, eval_immediate
        self.eval_every_n_batches, self.eval_final = eval_every_n_batches, eval_final
        self.steps_done = 0

    def _editing_module(self):
        module = self.trainer.lightning_module
        if not hasattr(module, "start_run"):
            return None            # a plain test (e.g. the language model's perplexity) runs unchanged
        return module

    def on_run_start(self) -> None:
        super().on_run_start()
        self.steps_done = 0
        module = self._editing_module()
        if module is not None:
            module.start_run(evaluate_pre=self.eval_pre)

    def _evaluation_step(self, batch: Any, batch_idx: int, dataloader_idx: int, dataloader_iter) -> None:
        super()._evaluation_step(batch, batch_idx, dataloader_idx, dataloader_iter)
        module = self._editing_module()
        if module is None:
            return
        self.steps_done += 1
        k = self.eval_every_n_batches
        if k and self.steps_done % k == 0 and not module.hparams.rollback:
            module.evaluate_applied(cohort_batches=k)
        if module.stop_reason:
            print(f"[lit-edit] stopping early: {module.stop_reason}")
            raise StopIteration   # ends the loop's batch iteration cleanly

    def on_run_end(self):
        module = self._editing_module()
        if module is not None:
            results = module.finish_run(evaluate_final=self.eval_final)
            if self.trainer.is_global_zero:
                print(f"[lit-edit] {results['n_edits']} edits ({results['mode']['name']}, {results['method']}) "
                      f"in {results['seconds']:.1f} s; results in {module.recorder.directory}")
        return super().on_run_end()


class EditTrainer(Trainer):
    """A Trainer whose test loop is the :class:`ConsecutiveEditingLoop`.

    Args:
        eval_pre: score all requests on the unedited model before the first edit.
        eval_immediate: score each batch right after it is applied.
        eval_every_n_batches: every k batches, score all edits so far (0: never; ignored with rollback).
        eval_final: score all edits after the last batch.
        use_distributed_sampler: default False — the edit stream is never sharded (lightning.md §2.2).
    """

    def __init__(self, *args, eval_pre: bool = True, eval_immediate: bool = True, eval_every_n_batches: int = 0,
                 eval_final: bool = True, use_distributed_sampler: bool = False, **kwargs):
        super().__init__(*args, use_distributed_sampler=use_distributed_sampler, **kwargs)
        self.test_loop = ConsecutiveEditingLoop(self, eval_pre, eval_immediate, eval_every_n_batches, eval_final)
