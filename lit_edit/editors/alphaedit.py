"""AlphaEdit as an editor (docs/methods.md §9; the math and its hyperparameters: ``lit_edit.editing.alphaedit``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lit_edit.editing.alphaedit import AlphaEditHyperparams, apply_alphaedit, null_space_basis
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import (
    EditContext,
    EditOutcome,
    changes,
    snapshot,
    value_loss_problems,
    value_targets,
)
from lit_edit.editors.layer_state import require_setup, unlayered
from lit_edit.editors.locate_context import LayerLoopEditor, value_diagnostics
from lit_edit.models.architectures import Architecture


class AlphaEdit(LayerLoopEditor):
    """AlphaEdit: MEMIT with the update projected onto the null space of C, remembering earlier batches' keys
    (docs/methods.md §9).

    Options: the fields of :class:`~lit_edit.editing.alphaedit.AlphaEditHyperparams`.
    """

    name = "alphaedit"
    accumulates = True
    hyperparams_class = AlphaEditHyperparams

    def __init__(self, **hyperparams):
        super().__init__(AlphaEditHyperparams(**hyperparams))
        self._bases: dict[int, torch.Tensor] | None = None
        self._previous: dict[int, torch.Tensor] = {}

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        # C only gives the null space (the system is Uᵀ G U + αI), so any C is accepted: no solver check
        self._context.setup(model, tokenizer, arch, context, self.hp.layers, solver=None)
        self._bases = {layer: null_space_basis(self._context.second_moment_on(model, arch, layer)
                                               .float64(self.hp.solver), self.hp.nullspace_threshold,
                                               where=f"layer {layer}")
                       for layer in self.hp.layers}
        self._previous = {layer: torch.zeros(basis.shape[0], basis.shape[0], dtype=torch.float64,
                                             device=basis.device) for layer, basis in self._bases.items()}

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        require_setup(self._bases, self.name)
        before = snapshot(model, self.parameter_names(model, arch))
        _, values = apply_alphaedit(model, tokenizer, arch, value_targets(requests), self.hp,
                                    self._context.template_groups, self._bases, self._previous)
        diagnostics = value_diagnostics(values)
        diagnostics.update({f"null_space_dim/layer{layer}": float(b.shape[1]) for layer, b in self._bases.items()})
        return EditOutcome(changes(model, before), diagnostics,
                           value_loss_problems(requests, values, self.hp.values.stop_loss))

    def state_dict(self) -> dict:
        require_setup(self._bases, self.name)
        return {f"layer{layer}.previous_keys": value for layer, value in self._previous.items()}

    def load_state_dict(self, state: dict) -> None:
        require_setup(self._bases, self.name)
        for layer, entries in unlayered(state, self.hp.layers, "AlphaEdit").items():
            if entries["previous_keys"].shape != self._previous[layer].shape:
                raise ValueError(f"layer {layer}: the saved AlphaEdit keys have shape "
                                 f"{tuple(entries['previous_keys'].shape)}, this model's "
                                 f"{tuple(self._previous[layer].shape)}")
            self._previous[layer] = entries["previous_keys"].to(self._previous[layer]).clone()
