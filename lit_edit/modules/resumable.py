"""The run-state half of the editing module: what a saved run state holds of the module and how it continues.

:class:`ResumableRun` is mixed into :class:`~lit_edit.modules.editing.EditingModule`; the loop calls
:meth:`~ResumableRun.fingerprint`, :meth:`~ResumableRun.run_state`, :meth:`~ResumableRun.restore_run` and, after an
interrupt, :meth:`~ResumableRun.write_partial_results` (``lit_edit.run_state`` has the file format, the RNG and
the fingerprint comparison).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from lit_edit.modules.run_record import nest, write_request_scores
from lit_edit.run_state import ResumeError, flatten, history_to_json, tensor_digest
from lit_edit.stats import weights_sha256


class ResumableRun:
    """Run-state methods of the editing module (they use its model, editor, recorder and history)."""

    def fingerprint(self) -> dict:
        """The settings that decide this run's results, one field per option (``lit_edit.run_state``): a saved run
        state continues only a run whose fingerprint is equal. Where results go (``results_dir``, the cache
        folders) may differ. Called after :meth:`setup_run` (the editor set up, e.g. its context templates
        sampled, the model still unedited) and before the costly :meth:`start_run`. Editor fields drop the
        ``hp.`` of the hyperparameter dataclass, so that they read as the options (``model.editor.alpha``)."""
        h, data = self.hparams, self.trainer.datamodule
        names = self.editor.parameter_names(self.model, self.arch)
        editor = flatten("model.editor", {"name": self.editor.name, **self.editor.hyperparameters()})
        editor = {key.replace(".hp.", "."): value for key, value in editor.items()}
        options = {k: v for k, v in h.items() if k not in ("name_or_path", "results_dir", "cache_dir", "statistics",
                                                           "downstream", "export_edits", "export_model_dir",
                                                           "overwrite_export")}
        statistics = {k: v for k, v in asdict(self.statistics).items() if k != "cache_dir"}
        selection = {k: v for k, v in data.hparams.items() if k not in ("path", "root")}
        return {"model.name_or_path": str(h.name_or_path),
                "model.weights_sha256": weights_sha256(self.model),        # every parameter, sampled (cheap)
                "model.edited_weights_sha256": tensor_digest({n: self.model.get_parameter(n) for n in names}),
                **flatten("model", options), **flatten("model.statistics", statistics),
                **flatten("model.downstream", asdict(self.downstream_config) if self.downstream_config else None),
                **editor,
                "data.sha256": data.edit_set.sha256, **flatten("data", selection),
                "data.n_requests": len(data.requests), "mode": self.mode["name"]}

    def run_state(self) -> dict:
        """This run's part of a run state: the edited parameters that differ from the loaded model (exact), the
        editor's state and the history recorded so far (the loop adds the position, RNG and fingerprint)."""
        weights = self._changed_weights()
        downstream = self.downstream.state() if self.downstream is not None else None
        history = {"results": self.results, "steps": self.recorder.steps, "batch_sizes": self.batch_sizes,
                   "applied": [r.record_id for r in self.applied], "stop_reason": self.stop_reason,
                   "seconds": time.perf_counter() - self.started, "downstream": downstream,
                   "request_scores": self.scores.by_request}
        return {"weights": weights, "editor": self.editor.state_dict(),
                "immediate": {k: v.cpu().clone() for k, v in self.scores.immediate.metric_state.items()},
                "history": history_to_json(history)}

    def write_partial_results(self, interruption: dict) -> Path:
        """``metrics.json`` of an interrupted run: the scores, monitors and downstream points computed so far, no
        final scores, and ``interrupted`` (where it stopped, the run state to resume from). No collectives."""
        results = {**self.results, "n_edits": len(self.applied), "final": None, "interrupted": interruption,
                   "seconds": time.perf_counter() - self.started, "stopped_early": self.stop_reason}
        results["immediate"] = nest(self.scores.immediate_mean())
        results["pre"] = nest(results.get("pre"))
        if self.downstream is not None:
            results["downstream_curve"] = self.downstream.curve
        write_request_scores(self.recorder, self.applied, self.batch_sizes, self.scores.by_request)
        return self.recorder.write_json("metrics.json", results)

    def restore_run(self, state: dict) -> None:
        """Continue from a run state, after :meth:`start_run` (the editor set up on the unedited model): the edited
        weights, the editor's state and the history as they were after ``state["batches_done"]`` batches."""
        with torch.no_grad():
            for name, value in state["weights"].items():
                try:
                    parameter = self.model.get_parameter(name)
                except AttributeError as error:
                    raise ResumeError(f"{state['path']} holds weights of {name!r}, which this model lacks") from error
                parameter.copy_(value)
        self.editor.load_state_dict(state["editor"])
        immediate = self.scores.immediate
        immediate.reset()
        immediate.merge_state({k: v.to(immediate.device) for k, v in state["immediate"].items()})
        self._restore_history(json.loads(state["history"]), state["path"])

    def _restore_history(self, history: dict, source: str) -> None:
        requests = self.trainer.datamodule.requests
        applied = history["applied"]
        if [r.record_id for r in requests[: len(applied)]] != applied:
            raise ResumeError(f"{source} applied the records {applied[:5]}..., this run's edit stream starts "
                              f"{[r.record_id for r in requests[:5]]}... (data: another file or selection)")
        self.applied = list(requests[: len(applied)])
        self.batch_sizes = list(history["batch_sizes"])
        self.results = history["results"]
        self.stop_reason = history["stop_reason"]
        self.scores.by_request = history.get("request_scores", {"pre": {}, "immediate": {}})   # older states: none
        self.started = time.perf_counter() - history["seconds"]   # the time spent before the interruption counts
        self.recorder.restore_steps(history["steps"])
        if history["downstream"] is not None and self.downstream is not None:
            self.downstream.restore(history["downstream"])
        self._replay_logs()

    def _replay_logs(self) -> None:
        """Log the restored history again, so that this run's logger shows the whole curve."""
        if self.results.get("pre"):
            self._log({f"pre/{k}": v for k, v in self.results["pre"].items()}, step=0)
        for row in self.recorder.steps:
            self._log({k: v for k, v in row.items() if k != "step"}, step=row["n_edits"])
        for point in self.results["periodic"]:
            self._log({f"all_so_far/{k}": v for k, v in point["scores"].items()}, step=point["n_edits"])
        if self.downstream is not None:
            self.downstream.replay_logs()
