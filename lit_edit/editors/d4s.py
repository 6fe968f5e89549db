"""D4S as an editor (docs/methods.md §7; the math and its hyperparameters: ``lit_edit.editing.d4s``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_edit.editing.d4s import D4sHyperparams, D4sLayerState, apply_d4s
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import (
    EditContext,
    EditOutcome,
    changes,
    snapshot,
    value_loss_problems,
    value_targets,
)
from lit_edit.editors.layer_state import layered, require_setup, unlayered
from lit_edit.editors.locate_context import LayerLoopEditor, value_diagnostics
from lit_edit.models.architectures import Architecture


class D4S(LayerLoopEditor):
    """D4S: every step solves the batch least squares over all edits so far from running sums (docs/methods.md §7).

    Options: the fields of :class:`~lit_edit.editing.d4s.D4sHyperparams`.
    """

    name = "d4s"
    accumulates = True
    hyperparams_class = D4sHyperparams

    def __init__(self, **hyperparams):
        super().__init__(D4sHyperparams(**hyperparams))
        self._states: dict[int, D4sLayerState] | None = None
        self._w0: dict[int, torch.Tensor] = {}

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        self._context.setup(model, tokenizer, arch, context, self.hp.layers, self.hp.solver)
        self._w0 = {layer: arch.edit_weight(model, layer).detach().clone() for layer in self.hp.layers}
        self._states = {layer: D4sLayerState(self._context.second_moment_on(model, arch, layer),
                                             arch.to_math(self._w0[layer]).shape[0], self.hp, where=f"layer {layer}")
                        for layer in self.hp.layers}

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        require_setup(self._states, self.name)
        before = snapshot(model, self.parameter_names(model, arch))
        updates, values = apply_d4s(model, tokenizer, arch, value_targets(requests), self.hp,
                                    self._context.template_groups, self._w0, self._states)
        diagnostics = value_diagnostics(values)
        for update in updates:   # the paper's delta_nom: ‖Δ_l‖₁/numel of the change from W0
            diagnostics[f"delta_l1_per_numel/layer{update.layer}"] = float(update.delta.abs().mean())
        return EditOutcome(changes(model, before), diagnostics,
                           value_loss_problems(requests, values, self.hp.values.stop_loss))

    def state_dict(self) -> dict:
        require_setup(self._states, self.name)
        return layered({layer: state.state_dict() for layer, state in self._states.items()})

    def load_state_dict(self, state: dict) -> None:
        require_setup(self._states, self.name)
        for layer, entries in unlayered(state, self.hp.layers, "D4S").items():
            self._states[layer].load_state_dict(entries)
