"""The LightningModule of an editing run: one ``test_step`` is one edit step (a batch of requests).

It orchestrates and holds no math: the editor changes the weights, ``lit_edit.metrics`` scores the edits,
``lit_edit.metrics.monitors`` watches the weights and the perplexity, ``RunRecorder`` writes the run folder. The
:class:`~lit_edit.loops.ConsecutiveEditingLoop` calls :meth:`setup_run`, :meth:`start_run`, :meth:`evaluate_applied`
and :meth:`finish_run` around the steps, following the schedules set on the trainer; with a run state, also
:meth:`fingerprint`, :meth:`run_state` and :meth:`restore_run` (``lit_edit.run_state``, ``modules/resumable.py``).
Several processes: ``modules/processes.py`` (sharding the model, comparing the ranks' weights).

Modes are ``batch_size`` (of the edit data) × ``rollback``: with rollback the edited parameters are restored
bit-exactly after every step (single / batch-single), without it the edits accumulate (instance-sequential /
batch-sequential).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch

from lit_edit.caches import model_fingerprint, read_cached
from lit_edit.distributed import SINGLE, map_chunks, ranks_of
from lit_edit.editing.requests import EditRequest, shared_subject_count
from lit_edit.editors.base import EditContext, Editor
from lit_edit.export import EDITS_FILE, changed_parameters, hook_bank
from lit_edit.metrics import MeanScores, PreEditReference, check_families, metric_keys, pre_edit_reference, score_requests
from lit_edit.metrics.monitors import FixedTextPerplexity, update_norms, weight_monitors
from lit_edit.models.architectures import architecture_of
from lit_edit.models.loading import load_model_and_tokenizer
from lit_edit.modules.downstream import flatten_scores
from lit_edit.modules.input_checks import check_run_inputs
from lit_edit.modules.loss_watch import new_tally, watch_step
from lit_edit.modules.processes import SeveralProcesses
from lit_edit.modules.resumable import ResumableRun
from lit_edit.modules.run_outputs import RunOutputs
from lit_edit.stats import StatisticsConfig, load_corpus_texts, weights_sha256
from lit_edit.tasks.suite import DownstreamConfig, DownstreamSuite
from lit_edit.tasks.summary import TaskScores, bootstrap_delta, nested_delta


def mode_name(batch_size: int, rollback: bool) -> str:
    """The four editing modes of the side-effects study."""
    if batch_size == 1:
        return "single" if rollback else "instance-sequential"
    return "batch-single" if rollback else "batch-sequential"


class NonFiniteUpdateError(FloatingPointError):
    """An editor produced NaN or inf in a parameter."""


class EditingModule(ResumableRun, RunOutputs, SeveralProcesses, L.LightningModule):
    """Edit a causal LM with ``editor``, request batch after request batch, and measure what the edits did.

    Args:
        name_or_path: a Hugging Face causal LM folder (or hub name when online).
        editor: the method (``lit_edit.editors``: ROME, MEMIT, FT, ...).
        rollback: restore the edited parameters after every step (single / batch-single modes).
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
        if editor is None:
            raise ValueError("EditingModule needs an editor (e.g. class_path: lit_edit.editors.MEMIT)")
        if rollback and editor.accumulates:
            raise ValueError(f"model.rollback is true, but {editor.name} accumulates its edits in its own state "
                             "(restoring the weights would not undo them); use rollback: false "
                             "(instance- or batch-sequential)")
        for option, value, low in (("monitor_docs", monitor_docs, 1), ("eval_batch_size", eval_batch_size, 1),
                                    ("max_new_tokens", max_new_tokens, 1)):
            if value < low:
                raise ValueError(f"model.{option} must be >= {low}, got {value}")
        if stop_perplexity_factor is not None and stop_perplexity_factor <= 1:
            raise ValueError(f"model.stop_perplexity_factor must be > 1 (a multiple of the pre-edit perplexity; null: "
                             f"never stop), got {stop_perplexity_factor}")
        if rollback and export_model_dir:
            raise ValueError(f"model.export_model_dir={export_model_dir} is set, but model.rollback is true: the "
                             "edits are undone after every step, so there is no edited model to export")
        self.save_hyperparameters(ignore=["editor"])
        self.families = check_families(families)
        self.editor = editor
        self.statistics = statistics or StatisticsConfig()
        self.downstream_config = downstream
        self.downstream: DownstreamSuite | None = None
        self.model, self.tokenizer = load_model_and_tokenizer(name_or_path, dtype)
        self.arch = architecture_of(self.model)
        editor.check_fits(self.model, self.arch)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.recorder = None
        self.applied: list[EditRequest] = []
        self.batch_sizes: list[int] = []
        self.ranks = SINGLE
        self.sharding = None   # set by configure_model under a model-sharding strategy (lit_edit.sharding)
        self.immediate = MeanScores(metric_keys(self.families), sync_on_compute=False)   # every rank has all scores
        self.request_scores: dict[str, dict[str, dict]] = {"pre": {}, "immediate": {}}   # stage → record id → scores
        self.results: dict = {}
        self.stop_reason: str | None = None

    # ------------------------------------------------------------------------------------------ helpers

    def _score(self, requests: Sequence[EditRequest]) -> list[dict]:
        """Every request's scores on the model as it is now, in request order on every rank (the ranks share the
        work in chunks of ``eval_batch_size`` requests)."""
        def score(chunk):
            return score_requests(self.model, self.tokenizer, chunk, self.families, self.reference,
                                  self.hparams.max_new_tokens, self.hparams.eval_batch_size)

        return map_chunks(score, requests, self.hparams.eval_batch_size, self.ranks)

    def _mean(self, scores: list[dict]) -> dict:
        metric = MeanScores(metric_keys(self.families), sync_on_compute=False)
        metric.update(scores)
        return metric.compute()

    def _effective(self) -> dict[str, torch.Tensor]:
        return self.editor.effective_weights(self.model, self.arch)

    def _log(self, values: dict, step: int) -> None:
        numbers = {k: v for k, v in values.items() if isinstance(v, (int, float)) and v is not None}
        for logger in self.loggers:
            logger.log_metrics(numbers, step=step)

    def _reference(self, requests: Sequence[EditRequest], edit_sha: str) -> PreEditReference:
        key = hashlib.sha256(json.dumps([model_fingerprint(self.hparams.name_or_path), edit_sha,
                                         [r.record_id for r in requests], list(self.families),
                                         self.hparams.max_new_tokens, self.hparams.dtype]).encode()).hexdigest()[:20]
        path = Path(self.hparams.cache_dir) / "references" / f"{key}.json"
        read = lambda file: PreEditReference.from_dict(json.loads(file.read_text()))
        cached = read_cached(path, read, "cached pre-edit reference") if all(self.ranks.gather(path.exists())) else None
        if cached is not None:
            return cached

        def outputs(chunk):
            part = pre_edit_reference(self.model, self.tokenizer, chunk, self.families,
                                      self.hparams.max_new_tokens, self.hparams.eval_batch_size)
            return [(part.locality_tokens[r.record_id], part.locality_generations[r.record_id]) for r in chunk]

        per_request = map_chunks(outputs, requests, self.hparams.eval_batch_size, self.ranks)
        reference = PreEditReference({r.record_id: tokens for r, (tokens, _) in zip(requests, per_request)},
                                     {r.record_id: texts for r, (_, texts) in zip(requests, per_request)})
        if self.ranks.is_zero:
            from lit_edit.io import atomic_write_text

            atomic_write_text(path, json.dumps(reference.to_dict()))
        return reference

    @property
    def mode(self) -> dict:
        batch_size = self.trainer.datamodule.hparams.batch_size
        return {"batch_size": batch_size, "rollback": self.hparams.rollback,
                "name": mode_name(batch_size, self.hparams.rollback)}

    # ------------------------------------------------------------------------------------ run lifecycle

    def setup_run(self, resumes: str | None = None) -> None:
        """Before the first edit, first part: the run folder (claimed for this run, which ``resumes`` that run
        state, if any) and the editor's setup on the unedited model."""
        from lit_edit.results import RunRecorder

        self.started = time.perf_counter()
        self.downstream = check_run_inputs(self)      # before the run folder: the inputs fit the model
        self.ranks = ranks_of(self.trainer, shares_work=self.sharding is None)
        directory, option = self._results_folder()
        self._claim_results_folder(directory, option, resumes)
        self.recorder = RunRecorder(directory, writes=self.ranks.is_zero)
        saved_config = Path(self.trainer.log_dir or ".") / "config.yaml"   # where LightningCLI wrote it
        if saved_config.exists() and saved_config.parent.resolve() != self.recorder.directory.resolve():
            self.recorder.copy_in(saved_config)
        self.editor.setup(self.model, self.tokenizer, self.arch,
                          EditContext(str(self.hparams.name_or_path), self.statistics,
                                      progress=self.trainer.progress_bar_callback is not None, ranks=self.ranks))
        self.originals = self.editor.effective_weights(self.model, self.arch)
        self.base_sha256 = weights_sha256(self.model) if self._exports else None   # of the unedited model
        if self.hparams.export_model_dir and hook_bank(self.editor) is not None:
            raise ValueError(f"model.export_model_dir={self.hparams.export_model_dir}: {self.editor.name} keeps its "
                             f"edits in hook layers, whose per-token gate a Hugging Face folder cannot carry; use the "
                             f"run's {EDITS_FILE} (python -m lit_edit.tools apply_edits, which can fold the hooks "
                             "with --fold_hooks true)")

    def start_run(self, evaluate_pre: bool) -> None:
        """Before the first edit, after :meth:`setup_run`: pre-edit references, scores and monitors."""
        data = self.trainer.datamodule
        self.reference = self._reference(data.requests, data.edit_set.sha256)
        self.perplexity = None
        if self.hparams.monitor_text:
            texts = load_corpus_texts(self.hparams.monitor_text, "model.monitor_text")[: self.hparams.monitor_docs]
            self.perplexity = FixedTextPerplexity(self.tokenizer, texts)
        monitors = weight_monitors(self._effective(), self.originals)
        monitors["perplexity"] = self.perplexity(self.model) if self.perplexity else None
        self.pre_monitors = monitors
        self.results = {"method": self.editor.name, "mode": self.mode, "n_edits": 0, "pre": None,
                        "periodic": [], "retention": [], "monitors": {"pre": monitors}, "optimisation": new_tally()}
        if evaluate_pre:
            pre_scores = self._score(data.requests)
            self.request_scores["pre"] = {r.record_id: scores for r, scores in zip(data.requests, pre_scores)}
            self.results["pre"] = self._mean(pre_scores)
            self._log({f"pre/{k}": v for k, v in self.results["pre"].items()}, step=0)
        if self.downstream_config is not None:
            self._start_downstream()
        self.recorder.write_json("run.json", self.provenance())

    # ------------------------------------------------------------------------------------- downstream

    def _start_downstream(self) -> None:
        """The pre-edit scores of the task records that :meth:`setup_run` read and checked (from the cache when this
        model was scored before)."""
        self.downstream.ranks = self.ranks
        pre, cached = self.downstream.pre_edit(self.model, self.tokenizer, model_fingerprint(self.hparams.name_or_path),
                                               self.hparams.cache_dir, progress=self._progress,
                                               write=self.trainer.is_global_zero)
        self.downstream_pre = pre
        self.downstream_pre_cached = cached
        self.downstream_latest: tuple[int, dict[str, TaskScores]] | None = None
        self.downstream_curve = [self._downstream_point(0, pre)]

    @property
    def _progress(self) -> bool:
        return self.trainer.progress_bar_callback is not None

    def _downstream_point(self, n_edits: int, scores: dict[str, TaskScores]) -> dict:
        point = {"n_edits": n_edits, "scores": {task: s.summary() for task, s in scores.items()}}
        self._log({f"downstream/{k}": v for k, v in flatten_scores(point["scores"]).items()}, step=n_edits)
        return point

    def _evaluate_downstream(self) -> None:
        """Score the model as it is now (after ``len(self.applied)`` edits) on every downstream task."""
        scores = self.downstream.evaluate(self.model, self.tokenizer, after_edit=True, progress=self._progress)
        self.downstream_latest = (len(self.applied), scores)
        self.downstream_curve.append(self._downstream_point(len(self.applied), scores))

    def _finish_downstream(self) -> dict:
        """``downstream.<task>.{pre, post, delta, delta_ci95}`` (each ``{mode: {metric: value}}``), the curve of
        every scored point and what was scored (the entries of ``metrics.json``)."""
        n_edits = len(self.applied)
        if not self.hparams.rollback and n_edits and (self.downstream_latest is None
                                                      or self.downstream_latest[0] != n_edits):
            self._evaluate_downstream()
        post = self.downstream_latest[1] if self.downstream_latest else None
        config = self.downstream_config
        per_task = {}
        for task, pre in self.downstream_pre.items():
            entry = {"pre": pre.summary(), "post": None, "delta": None, "delta_ci95": None}
            if post is not None:
                entry["post"] = post[task].summary()
                entry["delta"] = nested_delta(entry["pre"], entry["post"])
                entry["delta_ci95"] = bootstrap_delta(pre, post[task], config.bootstrap_resamples, seed=config.seed)
            per_task[task] = entry
        if post is not None:
            deltas = flatten_scores({task: entry["delta"] for task, entry in per_task.items()})
            self._log({f"downstream_delta/{k}": v for k, v in deltas.items()}, step=n_edits)
        post_model = ("the model holding the last step's edits, scored before its rollback" if self.hparams.rollback
                      else f"the model after all {n_edits} edits")
        setup = {**self.downstream.describe(), "pre_from_cache": self.downstream_pre_cached,
                 "post_model": post_model if post is not None else None,
                 "post_n_edits": self.downstream_latest[0] if self.downstream_latest else None}
        return {"downstream": per_task, "downstream_curve": self.downstream_curve, "downstream_setup": setup}

    def provenance(self) -> dict:
        """What a reader needs to reproduce the run (docs/evaluation.md "Reproducibility of a run")."""
        import platform
        import subprocess

        import lightning
        import transformers

        try:
            commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                    cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            commit = None
        stats_folder = Path(self.statistics.cache_dir) / str(self.hparams.name_or_path).replace("/", "_")
        return {
            "model": str(self.hparams.name_or_path), "model_fingerprint": model_fingerprint(self.hparams.name_or_path),
            "editor": {"name": self.editor.name, **self.editor.hyperparameters()},
            "mode": self.mode, "families": list(self.families), "edits": self.trainer.datamodule.describe(),
            "downstream": self.downstream.describe() if self.downstream is not None else None,
            "statistics": {"config": vars(self.statistics), "files": sorted(str(p) for p in stats_folder.rglob("*.safetensors"))
                           if stats_folder.exists() else []},
            "versions": {"python": platform.python_version(), "torch": torch.__version__,
                         "lightning": lightning.__version__, "transformers": transformers.__version__},
            "git_commit": commit, "seed": torch.initial_seed(),
        }

    # ------------------------------------------------------------------------------------------ export

    @property
    def _exports(self) -> bool:
        return not self.hparams.rollback and bool(self.hparams.export_edits or self.hparams.export_model_dir)

    def _changed_weights(self) -> dict[str, torch.Tensor]:
        """The edited parameters that differ from the loaded model (exact CPU copies)."""
        return changed_parameters(self.model, self.editor.parameter_names(self.model, self.arch), self.originals)

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
        bad = [n for n, w in effective.items() if not torch.isfinite(w).all()]
        if bad:
            ids = ", ".join(r.record_id for r in batch)
            raise NonFiniteUpdateError(f"edit step {batch_idx} (records {ids}) left NaN/inf in {bad}; the run stops "
                                       f"here, results up to step {batch_idx - 1} are in {self.recorder.directory}")
        self.applied += batch
        self.batch_sizes.append(len(batch))
        n_edits = len(self.applied)
        row = {"step": batch_idx, "n_edits": n_edits, "seconds": seconds,
               "shared_subjects": shared_subject_count(batch), **outcome.diagnostics,
               **update_norms(outcome.deltas), **weight_monitors(effective, self.originals)}
        if self.perplexity is not None:
            row["perplexity"] = self.perplexity(self.model)
        if getattr(self.trainer.test_loop, "eval_immediate", True):
            scores = self._score(batch)
            self.immediate.update(scores)
            self.request_scores["immediate"].update({r.record_id: own for r, own in zip(batch, scores)})
            row.update({f"immediate/{k}": v for k, v in self._mean(scores).items()})
        factor = self.hparams.stop_perplexity_factor
        if factor and row.get("perplexity") and row["perplexity"] > factor * self.pre_monitors["perplexity"]:
            self.stop_reason = (f"perplexity {row['perplexity']:.3g} after {n_edits} edits exceeds "
                                f"{factor} × its pre-edit value {self.pre_monitors['perplexity']:.3g}")
        self.stop_reason = watch_step(batch_idx, [r.record_id for r in batch], outcome.loss_problems,
                                      row.get("perplexity"), self.pre_monitors["perplexity"],
                                      self.results["optimisation"], self.hparams.stop_on_divergence) or self.stop_reason
        if self.downstream is not None:
            every = self.downstream_config.every_n_batches
            last = batch_idx + 1 >= self.trainer.num_test_batches[0] or self.stop_reason is not None
            if (every and (batch_idx + 1) % every == 0) or (self.hparams.rollback and last):
                self._evaluate_downstream()
        if saved is not None:
            with torch.no_grad():
                for n, value in saved.items():
                    self.model.get_parameter(n).copy_(value)
        self.recorder.add_step(row)
        self._log({k: v for k, v in row.items() if k != "step"}, step=n_edits)

    def evaluate_applied(self, cohort_batches: int) -> None:
        """Score every edit applied so far (periodic schedule); also the first and latest cohorts."""
        scores = self._score(self.applied)
        n_edits = len(self.applied)
        first = sum(self.batch_sizes[:cohort_batches])
        latest = sum(self.batch_sizes[-cohort_batches:])
        point = {"n_edits": n_edits, "scores": self._mean(scores)}
        self.results["periodic"].append(point)
        self.results["retention"].append({"n_edits": n_edits, "first_cohort": self._mean(scores[:first]),
                                          "latest_cohort": self._mean(scores[-latest:])})
        self._log({f"all_so_far/{k}": v for k, v in point["scores"].items()}, step=n_edits)

    def finish_run(self, evaluate_final: bool) -> dict:
        """After the last step: the final scores, monitors, metrics.json and the plots."""
        results = self.results
        results["n_edits"] = len(self.applied)
        results["immediate"] = self.immediate.compute() if self.immediate.counts.sum() > 0 else None
        if self.hparams.rollback:
            results["final"] = results["immediate"]   # each edit was scored before its rollback
            self.request_scores["final"] = self.request_scores["immediate"]
            results["final_source"] = "immediate scores (the model is restored after every step)"
        elif evaluate_final and self.applied:
            final_scores = self._score(self.applied)
            self.request_scores["final"] = {r.record_id: own for r, own in zip(self.applied, final_scores)}
            results["final"] = self._mean(final_scores)
            results["final_source"] = "all edits scored after the last step"
        else:
            results["final"] = None
        self.write_request_scores()
        results["monitors"]["final"] = {**weight_monitors(self._effective(), self.originals),
                                        "perplexity": self.perplexity(self.model) if self.perplexity else None}
        if self.downstream is not None:
            results.update(self._finish_downstream())
        report = self.editor.report(self.model, self.tokenizer, self.arch, self.applied)
        if report is not None:
            if "gate_max_z" in report:   # per-prompt numbers: their own file, the summary stays in metrics.json
                self.recorder.write_json("gate_max_z.json", report.pop("gate_max_z"))
            results["editor_report"] = report
        results["exports"] = "being written" if self._exports else None
        results["seconds"] = time.perf_counter() - self.started
        results["stopped_early"] = self.stop_reason
        results["processes"] = self._compare_ranks()
        for when in ("pre", "final", "immediate"):
            results[when] = self.nest(results.get(when))
        self.recorder.write_json("metrics.json", results)    # the scores first: a failed export cannot lose them
        results["exports"], export_error = self._export()
        if results["exports"] is not None:
            self.recorder.write_json("metrics.json", results)
        if not results["processes"]["identical_weights"]:
            raise RuntimeError(f"the processes of this run hold different edited weights (sha256 per rank: "
                               f"{results['processes']['edited_weights_sha256']}): {self.editor.name} is not "
                               f"deterministic across processes, so the numbers in {self.recorder.directory} mix "
                               "different models; run it in one process")
        if results["final"] is not None:
            self._log({f"final/{k}": v for k, v in self.flat(results["final"]).items()}, step=len(self.applied))
        if self.ranks.is_zero:
            self._plot(results, report)
        if export_error is not None:
            raise export_error
        return results

    def write_request_scores(self) -> Path:
        """``requests.csv``: every applied request's scores before editing, right after its step and at the end
        (written when the run ends or is interrupted; a run state carries the scores in between)."""
        from lit_edit.results import request_rows

        steps = [step for step, size in enumerate(self.batch_sizes) for _ in range(size)]
        return self.recorder.write_csv("requests.csv", request_rows(self.applied, steps, self.request_scores))

    def _plot(self, results: dict, report: dict | None) -> None:
        """The run's PNG plots (``plots/``)."""
        from lit_edit.plots import plot_downstream, plot_edit_metrics, plot_gate_scores, plot_monitors, plot_retention

        curve = ([{"n_edits": 0, "scores": self.flat(results["pre"])}] if results["pre"] else []) + results["periodic"]
        if not self.hparams.rollback and results["final"] is not None:
            curve.append({"n_edits": len(self.applied), "scores": self.flat(results["final"])})
        plots = self.recorder.directory / "plots"
        plots.mkdir(exist_ok=True)
        if curve:
            plot_edit_metrics(curve, self.families[0], plots / "edit_metrics.png")
        if results["retention"]:
            plot_retention(results["retention"], f"{self.families[0]}/reliability", plots / "retention.png")
        if self.recorder.steps:
            plot_monitors([{"n_edits": 0, **self.pre_monitors}] + self.recorder.steps, plots / "monitors.png")
        if self.downstream is not None:
            plot_downstream(results["downstream_curve"], plots / "downstream.png")
        gate_file = self.recorder.directory / "gate_max_z.json"
        if report is not None and "gate" in report and gate_file.exists():
            plot_gate_scores(json.loads(gate_file.read_text()), {str(k): v["alpha"] for k, v in report["gate"].items()},
                             plots / "gate_zscores.png")

    @staticmethod
    def nest(flat: dict | None) -> dict | None:
        """``{"token/reliability": x}`` → ``{"token": {"reliability": x}}``."""
        if flat is None:
            return None
        nested: dict = {}
        for key, value in flat.items():
            family, metric = key.split("/", 1)
            nested.setdefault(family, {})[metric] = value
        return nested

    @staticmethod
    def flat(nested: dict | None) -> dict:
        return {f"{family}/{metric}": value for family, metrics in (nested or {}).items()
                for metric, value in metrics.items()}
