"""What an editing run checks: its options, before the model is loaded; then, before its run folder exists, that
every edit request fits the model and every downstream task holds examples that fit it (``lit_edit.lengths``); after
every edit step, that the weights are finite."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lit_edit.editing.requests import EditRequest
from lit_edit.lengths import check_request_lengths, context_length
from lit_edit.tasks.suite import DownstreamSuite, too_long_note


def check_run_inputs(module) -> DownstreamSuite | None:
    """Refuse an edit request longer than the model's context (naming file, record, field, length and limit), read
    the downstream task records and leave out (or, strictly, refuse) the examples that do not fit; returns the
    downstream suite (None without downstream tasks). ``module`` is the ``EditingModule`` of the run."""
    data = module.trainer.datamodule
    limit = context_length(module.model)
    if limit is not None:
        check_request_lengths(module.tokenizer, data.requests, data.location, limit,
                              module.editor.prompt_prefix_tokens(module.model, module.tokenizer), module.families,
                              module.hparams.max_new_tokens, module.editor.name)
    if module.downstream_config is None:
        return None
    suite = DownstreamSuite(module.downstream_config)
    suite.drop_too_long(module.tokenizer, limit)
    note = too_long_note(suite.too_long, suite.records, limit)
    if note and module.trainer.is_global_zero:
        print(note, flush=True)
    return suite


def check_module_options(editor, rollback: bool, monitor_docs: int, eval_batch_size: int, max_new_tokens: int,
                         stop_perplexity_factor: float | None, export_model_dir: str | None) -> None:
    """Refuse the editing module's options that cannot work, before the model is loaded (each named as
    ``model.<option>``)."""
    if editor is None:
        raise ValueError("EditingModule needs an editor (e.g. class_path: lit_edit.editors.MEMIT)")
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


class NonFiniteUpdateError(FloatingPointError):
    """An editor produced NaN or inf in a parameter."""


def check_finite(effective: dict[str, torch.Tensor], batch: Sequence[EditRequest], step: int, folder: Path) -> None:
    """After edit step ``step``: stop the run when the weights hold NaN or inf, naming the records and parameters
    (the steps before are in ``folder``)."""
    bad = [n for n, w in effective.items() if not torch.isfinite(w).all()]
    if bad:
        ids = ", ".join(r.record_id for r in batch)
        raise NonFiniteUpdateError(f"edit step {step} (records {ids}) left NaN/inf in {bad}; the run stops "
                                   f"here, results up to step {step - 1} are in {folder}")
