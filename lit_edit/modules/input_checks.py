"""What an editing run checks before any work, before its run folder exists: that every edit request fits the model
and every downstream task holds examples that fit it (``lit_edit.lengths``)."""

from __future__ import annotations

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
