"""KN (knowledge neurons) as an editor (docs/methods.md §4; the math and the fixed quirks: ``lit_edit.editing.kn``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.kn import KnHyperparams, apply_kn
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import (
    EditContext,
    Editor,
    EditOutcome,
    changes,
    check_layers_fit,
    ffn_weight_names,
    snapshot,
)
from lit_edit.models.architectures import Architecture


class KN(Editor):
    """Knowledge neurons: integrated-gradients attribution of the old answer over the FFN activations of every
    attributed layer, then the selected neurons' value vectors are moved from the embedding of the model's own
    completion to that of the new target (docs/methods.md §4). Stateless: each request is edited on the model as it
    is.

    Options: the fields of :class:`~lit_edit.editing.kn.KnHyperparams`.
    """

    name = "kn"
    hyperparams_class = KnHyperparams

    def __init__(self, **hyperparams):
        self.hp = KnHyperparams(**hyperparams)

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, self._layers(model, arch))

    def _layers(self, model, arch: Architecture) -> list[int]:
        return list(range(arch.n_layers(model))) if self.hp.layers is None else list(self.hp.layers)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        for layer in self._layers(model, arch):
            arch.check_layer(model, layer)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return ffn_weight_names(arch, self._layers(model, arch))

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        before = snapshot(model, self.parameter_names(model, arch))
        edits = apply_kn(model, tokenizer, arch, requests, self.hp)
        n = len(edits)
        return EditOutcome(changes(model, before), {
            "kn_neurons": sum(len(e.neurons) for e in edits) / n,
            "kn_layers": sum(len({layer for layer, _ in e.neurons}) for e in edits) / n,
            "kn_coarse_neurons": sum(e.coarse_sizes[0] for e in edits) / n,
            "kn_prompts": sum(len(e.coarse_sizes) for e in edits) / n,
            "kn_max_attribution": sum(e.max_attribution for e in edits) / n,
            # o = t: the model already completes the prompt with the new target, so the edit adds nothing
            "kn_noop": sum(e.old_ids == e.new_ids or not e.neurons for e in edits) / n})
