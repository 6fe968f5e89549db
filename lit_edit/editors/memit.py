"""MEMIT as an editor (docs/methods.md §3; the math and its hyperparameters: ``lit_edit.editing.memit``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.memit import MemitHyperparams, apply_memit
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import (
    EditContext,
    EditorReport,
    EditOutcome,
    changes,
    snapshot,
    value_loss_problems,
    value_targets,
)
from lit_edit.editors.locate_context import LayerLoopEditor, value_diagnostics
from lit_edit.models.architectures import Architecture


class MEMIT(LayerLoopEditor):
    """MEMIT: a batch of requests spread over ``layers`` (docs/methods.md §3).

    Options: the fields of :class:`~lit_edit.editing.memit.MemitHyperparams`.
    """

    name = "memit"
    hyperparams_class = MemitHyperparams

    def __init__(self, **hyperparams):
        super().__init__(MemitHyperparams(**hyperparams))

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        self._context.setup(model, tokenizer, arch, context, self.hp.layers, self.hp.solver)

    @property
    def template_groups(self) -> list[list[str]]:
        return self._context.template_groups

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        if self._context.second_moments is None:
            raise RuntimeError("MEMIT.setup must run before the first edit (it loads the statistics C)")
        before = snapshot(model, self.parameter_names(model, arch))
        _, values = apply_memit(model, tokenizer, arch, value_targets(requests), self.hp, self.template_groups,
                                self._context.second_moments)
        return EditOutcome(changes(model, before), value_diagnostics(values),
                           value_loss_problems(requests, values, self.hp.values.stop_loss))

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        """The solver that ran and how ill-conditioned each layer's C was (``solver.py``)."""
        return self._context.solver_report(self.hp.solver)
