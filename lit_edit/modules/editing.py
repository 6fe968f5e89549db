"""The LightningModule of an editing run: one ``test_step`` is one edit step (a batch of requests).

It keeps the run's lifecycle and orchestrates; it holds no math and no bookkeeping of its own: the editor changes
the weights, ``lit_edit.metrics`` scores the edits, ``lit_edit.metrics.monitors`` watches the weights and the perplexity.
Beside it in ``lit_edit/modules/``: ``reference_cache.py`` (the pre-edit reference), ``run_record.py`` (the results
folder, ``run.json``, ``requests.csv``, the editor's report, the plots), ``downstream_run.py`` (the downstream
tasks), ``run_export.py`` (``edits.safetensors``, the Hugging Face folder), ``resumable.py`` (what a run state
holds), ``processes.py`` (several processes). The :class:`~lit_edit.loops.ConsecutiveEditingLoop` calls it through
:class:`~lit_edit.loops.contract.EditingRun`, following the :class:`~lit_edit.loops.contract.Schedule` it hands over.

Modes are ``batch_size`` (of the edit data) × ``rollback``: with rollback the edited parameters and the editor's
state (accumulated keys, hook layers) are restored bit-exactly after every step (single / batch-single), so every
step edits the unedited model; without it the edits accumulate (instance-sequential / batch-sequential).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from lit_edit.caches import model_fingerprint
from lit_edit.distributed import SINGLE, ranks_of
from lit_edit.editing.requests import EditRequest, shared_subject_count
from lit_edit.editors.base import EditContext, Editor
from lit_edit.export import changed_parameters
from lit_edit.loops.contract import Schedule
from lit_edit.metrics import check_families
from lit_edit.metrics.monitors import FixedTextPerplexity, update_norms, weight_monitors
from lit_edit.models.architectures import architecture_of
from lit_edit.models.loading import load_model_and_tokenizer
from lit_edit.modules.downstream_run import DownstreamRun
from lit_edit.modules.edit_scores import EditScores
from lit_edit.modules.input_checks import check_finite, check_module_options, check_run_inputs
from lit_edit.modules.loss_watch import new_tally, perplexity_stop, watch_step
from lit_edit.modules.processes import check_identical, check_strategy, compare_ranks
from lit_edit.modules.reference_cache import cached_reference, reference_path
from lit_edit.modules.resumable import ResumableRun
from lit_edit.modules.run_export import RunExport
from lit_edit.modules.run_record import (
    choose_results_folder,
    claim_results_folder,
    copy_saved_config,
    flat,
    log_plot_images,
    nest,
    plot_run,
    provenance,
    record_editor_report,
    write_request_scores,
)
from lit_edit.results import RunRecorder
from lit_edit.run_folder import RunFolderLock
from lit_edit.stats import StatisticsConfig, load_corpus_texts, weights_sha256
from lit_edit.tasks.suite import DownstreamConfig


def mode_name(batch_size: int, rollback: bool) -> str:
    """The four editing modes of the side-effects study."""
    if batch_size == 1:
        return "single" if rollback else "instance-sequential"
    return "batch-single" if rollback else "batch-sequential"


class EditingModule(ResumableRun, L.LightningModule):
    """Edit a causal LM with ``editor``, request batch after request batch, and measure what the edits did.

    Args:
        name_or_path: a Hugging Face causal LM folder (or hub name when online).
        editor: the method (``lit_edit.editors``: ROME, MEMIT, FT, ...).
        rollback: restore the edited parameters and the editor's state after every step (single / batch-single).
        families: edit-metric families (``token``, ``probability``, ``generation``, ``counterfact``; see
            ``lit_edit.metrics``).
        dtype: model dtype (``float32``, ``bfloat16``, ``float16``).
        statistics: where C = E[k kᵀ] comes from (methods that need it).
        monitor_text: documents for the perplexity monitor (``.jsonl``/``.txt``/``datasets`` folder).
        monitor_docs: how many of them.
        stop_perplexity_factor: stop the run when the monitor perplexity exceeds this multiple of its pre-edit value.
        results_dir: the run folder; default: the logger's version folder (``lightning_logs/.../version_N``), or
            without a logger a new ``results/<time>`` folder. One run per folder: a folder in use by another run, or
            holding another run's files, is refused unless this run resumes the run state saved there
            (``lit_edit.run_folder``; nothing is deleted).
        cache_dir: pre-edit references are cached here per (model, edit set, families).
        max_new_tokens: generation length of the ``generation`` family.
        eval_batch_size: prompts per forward pass when scoring; also the number of requests per scoring chunk
            (with several processes, chunk ``i`` is scored by rank ``i % world_size``: ``lit_edit.distributed``).
        downstream: downstream tasks scored before the first edit (cached), after the last, and every k batches
            (``lit_edit.tasks.suite.DownstreamConfig``); None: none. With rollback, "after" means the model
            holding the step's edits, scored before they are rolled back.
        export_edits: at the end of a run without rollback, write ``edits.safetensors`` into the run folder: only
            what the edits changed (the edited parameters' exact values, or COMEBA-HK's hook layers), applied to a
            fresh base with ``lit_edit.export.apply_edits`` or ``python -m lit_edit.tools apply_edits``.
        export_model_dir: also write the edited model as a Hugging Face folder here (None: no). Refused for
            rollback runs and for edits in hook layers (a folder cannot carry their gate). A new or empty folder, or a
            previous lit-edit export with ``overwrite_export``; never the current folder, a symbolic link, the
            results folder or the base model (``lit_edit.export_folder``; checked before the first edit).
        overwrite_export: replace a previous lit-edit export in ``export_model_dir``.
        stop_on_divergence: end the run after a step whose optimisation loss or monitor perplexity diverged
            (default: warn and count it, ``optimisation`` in metrics.json; ``lit_edit.modules.loss_watch``).
    """

    def __init__(self, name_or_path: str = "checkpoints/factworld-gpt2", editor: Editor | None = None,
                 rollback: bool = False, families: Sequence[str] = ("token", "generation"), dtype: str = "float32",
                 statistics: StatisticsConfig | None = None,
                 monitor_text: str | None = "data/factworld/corpus/heldout.jsonl", monitor_docs: int = 64,
                 stop_perplexity_factor: float | None = None, results_dir: str | None = None,
                 cache_dir: str = "checkpoints/cache", max_new_tokens: int = 32, eval_batch_size: int = 64,
                 downstream: DownstreamConfig | None = None, export_edits: bool = True,
                 export_model_dir: str | None = None, overwrite_export: bool = False,
                 stop_on_divergence: bool = False):
        super().__init__()
        check_module_options(editor, rollback, monitor_docs, eval_batch_size, max_new_tokens, stop_perplexity_factor,
                             export_model_dir)
        self.save_hyperparameters(ignore=["editor"])
        self.families = check_families(families)
        self.editor = editor
        self.statistics = statistics or StatisticsConfig()
        self.downstream_config = downstream
        self.downstream: DownstreamRun | None = None
        self.run_export = RunExport(name_or_path, export_edits, export_model_dir, overwrite_export, rollback)
        self.model, self.tokenizer = load_model_and_tokenizer(name_or_path, dtype)
        self.arch = architecture_of(self.model)
        editor.check_fits(self.model, self.arch)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.recorder: RunRecorder | None = None
        self.folder_lock: RunFolderLock | None = None
        self.schedule = Schedule()
        self.applied: list[EditRequest] = []
        self.batch_sizes: list[int] = []
        self.ranks = SINGLE
        self.sharding = None   # set by configure_model under a model-sharding strategy (lit_edit.sharding)
        self.scores = EditScores(self.families, max_new_tokens, eval_batch_size)
        self.results: dict = {}
        self.setup_state: dict | None = None    # the editor's state after setup, for rollback (setup_run)
        self.last_step_report = None   # with that reset: the editor's report on the last step, before its rollback
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------------------------------ helpers

    def _effective(self) -> dict[str, torch.Tensor]:
        return self.editor.effective_weights(self.model, self.arch)

    def _monitors(self) -> dict:
        """The weights' distances from the unedited ones and the monitor perplexity (None without one)."""
        return {**weight_monitors(self._effective(), self.originals),
                "perplexity": self.perplexity(self.model) if self.perplexity else None}

    def _changed_weights(self) -> dict[str, torch.Tensor]:
        """The edited parameters that differ from the loaded model (exact CPU copies)."""
        return changed_parameters(self.model, self.editor.parameter_names(self.model, self.arch), self.originals)

    def _last_step(self, batch_idx: int) -> bool:
        return batch_idx + 1 >= self.trainer.num_test_batches[0] or self.stop_reason is not None

    def _log(self, values: dict, step: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and v is not None}
        for logger in self.loggers:
            logger.log_metrics(numbers, step=step)

    @property
    def mode(self) -> dict:
        batch_size = self.trainer.datamodule.hparams.batch_size
        return {"batch_size": batch_size, "rollback": self.hparams.rollback,
                "name": mode_name(batch_size, self.hparams.rollback)}

    @property
    def run_folder(self) -> Path | None:
        return self.recorder.directory if self.recorder is not None else None

    # ------------------------------------------------------------------------------------ run lifecycle

    def configure_model(self) -> None:
        """Under ``lit_edit.strategies.ShardedEditingStrategy``: shard the model with FSDP over the ranks, the
        parameters the editor changes kept whole (``lit_edit.sharding``)."""
        shards = self._device_mesh is not None and self.sharding is None
        check_strategy(self.trainer.strategy, self.hparams.export_model_dir, shards)
        if shards:
            from lit_edit.sharding import shard_for_editing

            self.sharding = shard_for_editing(self.model, self.arch, self.editor.parameter_names(self.model, self.arch),
                                              self._device_mesh)

    def setup_run(self, schedule: Schedule, resumes: str | None = None) -> None:
        """Before the first edit, first part: the run folder (claimed for this run, which ``resumes`` that run
        state, if any) and the editor's setup on the unedited model."""
        self.started = time.perf_counter()
        self.schedule = schedule
        suite = check_run_inputs(self)      # before the run folder: the inputs fit the model
        progress = self.trainer.progress_bar_callback is not None
        self.downstream = DownstreamRun(suite, self._log, progress) if suite is not None else None
        self.ranks = self.scores.ranks = ranks_of(self.trainer, shares_work=self.sharding is None)
        directory, option = choose_results_folder(self.hparams.results_dir, self.trainer, self.ranks)
        self.run_export.check_target(directory)
        self.folder_lock = claim_results_folder(directory, option, resumes, self.ranks)
        self.recorder = RunRecorder(directory, writes=self.ranks.is_zero)
        copy_saved_config(self.recorder, self.trainer.log_dir)     # where LightningCLI wrote it
        self.editor.setup(self.model, self.tokenizer, self.arch,
                          EditContext(str(self.hparams.name_or_path), self.statistics, progress=progress,
                                      ranks=self.ranks))
        self.originals = self._effective()
        # with rollback every step starts from the editor's state as setup built it (D4S, COMEBA-HK, AlphaEdit)
        self.setup_state = self.editor.state_snapshot() if self.hparams.rollback and self.editor.accumulates else None
        if self.run_export.exports:
            self.run_export.base_sha256 = weights_sha256(self.model)   # of the unedited model
        self.run_export.check_editor(self.editor)

    def start_run(self, evaluate_pre: bool) -> None:
        """Before the first edit, after :meth:`setup_run`: pre-edit references, scores and monitors."""
        data, h = self.trainer.datamodule, self.hparams
        path = reference_path(h.cache_dir, h.name_or_path, data.edit_set.sha256, data.requests, self.families,
                              h.max_new_tokens, h.dtype)
        self.scores.reference = cached_reference(self.model, self.tokenizer, data.requests, self.families, path,
                                                 h.max_new_tokens, h.eval_batch_size, self.ranks)
        self.perplexity = None
        if h.monitor_text:
            texts = load_corpus_texts(h.monitor_text, "model.monitor_text")[: h.monitor_docs]
            self.perplexity = FixedTextPerplexity(self.tokenizer, texts)
        self.pre_monitors = self._monitors()
        self.results = {"method": self.editor.name, "mode": self.mode, "n_edits": 0, "pre": None, "periodic": [],
                        "retention": [], "monitors": {"pre": self.pre_monitors}, "optimisation": new_tally()}
        if evaluate_pre:
            self.results["pre"] = self.scores.of_stage("pre", self.model, self.tokenizer, data.requests)
            self._log({f"pre/{k}": v for k, v in self.results["pre"].items()}, step=0)
        if self.downstream is not None:
            self.downstream.start(self.model, self.tokenizer, model_fingerprint(h.name_or_path), h.cache_dir,
                                  self.ranks, write=self.trainer.is_global_zero)
        self.recorder.write_json("run.json", provenance(
            h.name_or_path, self.editor, self.mode, self.families, data.describe(),
            self.downstream.suite.describe() if self.downstream is not None else None, self.statistics))

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        return batch   # a batch is a list of EditRequest (strings); tensors are built where they are used

    def test_step(self, batch: list[EditRequest], batch_idx: int) -> None:
        """One edit step: edit, check, monitor, score immediately, roll back if asked."""
        names = self.editor.parameter_names(self.model, self.arch)
        saved = {n: self.model.get_parameter(n).detach().clone() for n in names} if self.hparams.rollback else None
        started = time.perf_counter()
        with torch.inference_mode(False), torch.enable_grad():
            outcome = self.editor.edit(self.model, self.tokenizer, self.arch, batch)
        seconds = time.perf_counter() - started
        effective = self._effective()
        check_finite(effective, batch, batch_idx, self.recorder.directory)
        self.applied += batch
        self.batch_sizes.append(len(batch))
        n_edits = len(self.applied)
        row = {"step": batch_idx, "n_edits": n_edits, "seconds": seconds,
               "shared_subjects": shared_subject_count(batch), **outcome.diagnostics,
               **update_norms(outcome.deltas), **weight_monitors(effective, self.originals)}
        if self.perplexity is not None:
            row["perplexity"] = self.perplexity(self.model)
        if self.schedule.eval_immediate:
            immediate = self.scores.after_step(self.model, self.tokenizer, batch)
            row.update({f"immediate/{k}": v for k, v in immediate.items()})
        self.stop_reason = perplexity_stop(row.get("perplexity"), self.pre_monitors["perplexity"],
                                           self.hparams.stop_perplexity_factor, n_edits) or self.stop_reason
        self.stop_reason = watch_step(batch_idx, [r.record_id for r in batch], outcome.loss_problems,
                                      row.get("perplexity"), self.pre_monitors["perplexity"],
                                      self.results["optimisation"], self.hparams.stop_on_divergence) or self.stop_reason
        if self.downstream is not None:    # before a rollback: the model holding this step's edits
            periodic = self.downstream_config.periodic and self.schedule.periodic_after(batch_idx + 1)
            if periodic or (self.hparams.rollback and self._last_step(batch_idx)):
                self.downstream.evaluate(self.model, self.tokenizer, n_edits)
        if self.setup_state is not None and self._last_step(batch_idx):    # before the state goes back to setup's
            self.last_step_report = self.editor.report(self.model, self.tokenizer, self.arch, batch)
        if saved is not None:
            with torch.no_grad():
                for n, value in saved.items():
                    self.model.get_parameter(n).copy_(value)
            if self.setup_state is not None:
                self.editor.load_state_dict(self.setup_state)
        self.recorder.add_step(row)
        self._log({k: v for k, v in row.items() if k != "step"}, step=n_edits)

    def evaluate_applied(self, cohort_batches: int) -> None:
        """Score every edit applied so far (periodic schedule); also the first and latest cohorts. None with
        rollback: no edits stay applied."""
        if self.hparams.rollback:
            return
        point, retention = self.scores.periodic(self.model, self.tokenizer, self.applied, self.batch_sizes,
                                                cohort_batches)
        self.results["periodic"].append(point)
        self.results["retention"].append(retention)
        self._log({f"all_so_far/{k}": v for k, v in point["scores"].items()}, step=point["n_edits"])

    def finish_run(self, evaluate_final: bool) -> dict:
        """After the last step: the final scores, monitors, metrics.json, the exports and the plots."""
        results = self.results
        results["n_edits"] = len(self.applied)
        results["immediate"] = self.scores.immediate_mean()
        results.update(self.scores.final(self.model, self.tokenizer, self.applied, self.hparams.rollback,
                                         evaluate_final))
        write_request_scores(self.recorder, self.applied, self.batch_sizes, self.scores.by_request)
        results["monitors"]["final"] = self._monitors()
        if self.downstream is not None:
            results.update(self.downstream.finish(self.model, self.tokenizer, len(self.applied), self.hparams.rollback))
        report = self.last_step_report or self.editor.report(self.model, self.tokenizer, self.arch, self.applied)
        record_editor_report(self.recorder, report, results)
        results["exports"] = "being written" if self.run_export.exports else None
        results["seconds"] = time.perf_counter() - self.started
        results["stopped_early"] = self.stop_reason
        results["processes"] = compare_ranks(self._effective(), self.editor.state_dict(), self.ranks, self.sharding)
        for when in ("pre", "final", "immediate"):
            results[when] = nest(results.get(when))
        self.recorder.write_json("metrics.json", results)    # the scores first: a failed export cannot lose them
        results["exports"], export_error = (self.run_export.write(
            self.recorder.directory, self.model, self.tokenizer, self.editor, self.arch.name, len(self.applied),
            self._changed_weights) if self.trainer.is_global_zero else (None, None))
        if results["exports"] is not None:
            self.recorder.write_json("metrics.json", results)
        check_identical(results["processes"], self.editor.name, self.recorder.directory)
        if results["final"] is not None:
            final = flat(results["final"])
            # hp_metric: TensorBoard's HPARAMS view puts each run's settings beside its final token reliability
            hp_metric = {"hp_metric": final["token/reliability"]} if "token/reliability" in final else {}
            self._log({**{f"final/{k}": v for k, v in final.items()}, **hp_metric}, step=len(self.applied))
        if self.ranks.is_zero:
            plot_run(self.recorder, results, Path(self.hparams.name_or_path).name, self.families[0],
                     self.hparams.rollback, self.pre_monitors,
                     results["downstream_curve"] if self.downstream is not None else None, self.editor, report)
            log_plot_images(self.loggers, self.recorder.directory / "plots", len(self.applied))
        if export_error is not None:
            raise export_error
        return results

    def release_results_folder(self) -> None:
        """Unlock the results folder (at the end of the run, however it ends)."""
        if self.folder_lock is not None:
            self.folder_lock.release()
            self.folder_lock = None
