"""FT as an editor (docs/methods.md §1; the math and its hyperparameters: ``lit_edit.editing.ft``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.ft import FtHyperparams, FtResult, apply_ft
from lit_edit.editing.requests import EditRequest
from lit_edit.editing.values import loss_trend
from lit_edit.editors.base import EditContext, Editor, EditOutcome, LossProblem, check_layers_fit, value_targets
from lit_edit.models.architectures import Architecture


class FT(Editor):
    """Constrained fine-tuning of the FFN output projection (FT-L: ``loss="prompt_last"``; FT-M: ``"target_new"``;
    docs/methods.md §1).

    Options: the fields of :class:`~lit_edit.editing.ft.FtHyperparams`.
    """

    name = "ft"
    hyperparams_class = FtHyperparams

    def __init__(self, **hyperparams):
        self.hp = FtHyperparams(**hyperparams)

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, self.hp.layers)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        for layer in self.hp.layers:
            arch.check_layer(model, layer)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return [f"{arch.ffn_out_at(layer)}.{name}" for layer in self.hp.layers
                for name, _ in model.get_submodule(arch.ffn_out_at(layer)).named_parameters()]

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        return self.outcome(requests, apply_ft(model, tokenizer, arch, value_targets(requests), self.hp))

    def outcome(self, requests: Sequence[EditRequest], result: FtResult) -> EditOutcome:
        """What a fine-tuning step did, from its result: the changes, the loss of the first and last epoch and,
        when the loss did not fall, one problem naming the step's requests."""
        verdict = loss_trend(result.first_loss, result.last_loss, self.hp.stop_loss) if result.epochs > 1 else None
        problems = [LossProblem(", ".join(r.record_id for r in requests), "FT", verdict, result.first_loss,
                                result.last_loss, result.epochs)] if verdict else []
        return EditOutcome(result.deltas, {"ft_loss_first": result.first_loss, "ft_loss_last": result.last_loss,
                                           "ft_epochs": float(result.epochs)}, problems)
