"""ROME as an editor (docs/methods.md §2; the math and its hyperparameters: ``lit_edit.editing.rome``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.requests import EditRequest
from lit_edit.editing.rome import RomeHyperparams, apply_rome
from lit_edit.editing.solver import PreparedMoment
from lit_edit.editing.values import loss_trend
from lit_edit.editors.base import (
    EditContext,
    Editor,
    EditorReport,
    EditOutcome,
    LossProblem,
    changes,
    check_layers_fit,
    ffn_weight_names,
    snapshot,
    value_targets,
)
from lit_edit.editors.locate_context import LocateContext
from lit_edit.models.architectures import Architecture


class ROME(Editor):
    """ROME: one rank-one update per request at ``layer``, applied one after the other (docs/methods.md §2).

    Options: the fields of :class:`~lit_edit.editing.rome.RomeHyperparams`; C is factorised once per run, not once
    per request.
    """

    name = "rome"
    hyperparams_class = RomeHyperparams

    def __init__(self, **hyperparams):
        self.hp = RomeHyperparams(**hyperparams)
        self._context = LocateContext(self.hp)

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, [self.hp.layer], "layer")

    def prompt_prefix_tokens(self, model, tokenizer) -> int:
        return self._context.longest_prefix(model, tokenizer)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        arch.check_layer(model, self.hp.layer)
        self._context.sample_templates(model, tokenizer)
        if self.hp.mom2_adjustment:
            moments = self._context.load_second_moments(model, tokenizer, arch, context, [self.hp.layer])
            moments[self.hp.layer].factorisation(self.hp.solver)   # now, not in the first edit (raises for exact)

    @property
    def context_templates(self) -> list[str] | None:
        return self._context.templates

    @property
    def second_moment(self) -> PreparedMoment | None:
        """C of the edited layer with its cached factorisation (after :meth:`setup`, with ``mom2_adjustment``)."""
        moments = self._context.second_moments
        return None if moments is None else moments.get(self.hp.layer)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return ffn_weight_names(arch, [self.hp.layer])

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        moments = self._context.second_moments
        if moments is not None and self.hp.layer not in moments:
            raise RuntimeError(f"ROME.setup loaded C of layer {', '.join(map(str, moments))}, but the editor now "
                               f"edits layer {self.hp.layer}; run setup again")
        before = snapshot(model, self.parameter_names(model, arch))
        edits = apply_rome(model, tokenizer, arch, value_targets(requests), self.hp,
                           self._context.sample_templates(model, tokenizer), self.second_moment)
        problems = [LossProblem(r.record_id, "value optimisation", verdict, e.first_loss, e.last_loss)
                    for r, e in zip(requests, edits)
                    if (verdict := loss_trend(e.first_loss, e.last_loss, self.hp.values.stop_loss))]
        return EditOutcome(changes(model, before), {
            "value_loss_first": sum(e.first_loss for e in edits) / len(edits),
            "value_loss_last": sum(e.last_loss for e in edits) / len(edits)}, problems)

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"context_templates": self.context_templates}

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        """The solver that ran and how ill-conditioned C was (``solver.py``); None without C."""
        return self._context.solver_report(self.hp.solver)
