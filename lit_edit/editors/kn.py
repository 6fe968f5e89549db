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
    checked_layers,
    ffn_weight_names,
    snapshot,
)
from lit_edit.models.architectures import Architecture


class KN(Editor):
    """Knowledge neurons: integrated-gradients attribution of the old answer over the FFN activations of every
    attributed layer, then the selected neurons' value vectors are moved from the embedding of the model's own
    completion to that of the new target. Stateless: each request is edited on the model as it is.

    Args:
        layers: attributed (and editable) layers; None (default): all layers.
        steps: integration steps S (20, for every architecture; the reference's LLaMA setting 1 is degenerate).
        batch_size: attribution rows (layer × step × target sub-token) per forward/backward pass.
        threshold: τ of the coarse selection A > τ·max A (0.2 GPT-2 XL / LLaMA, 0.1 GPT-J).
        refine: keep only neurons shared by the edit prompt and its rephrases (the reference runs without).
        sharing_ratio: p of the refinement: a neuron is kept when it is in ≥ p of the prompts' coarse sets.
        max_neurons: at most this many neurons per request (largest attribution first); None: no cap.
        embedding: the embedding of the edit: ``output`` (the unembedding, default) or ``input`` (the reference).
        scale: the factor of the edit; None: 2 for a one-token target, else 1.
        one_token_edit: a one-token target's edit: ``doubled`` (default) w += 2(E[t] − E[o]); ``reference``
            w += E[t] − 2E[o], what the reference executes (``docs/fidelity.md``, "KN").
    """

    name = "kn"

    def __init__(self, layers: Sequence[int] | None = None, steps: int = 20, batch_size: int = 256,
                 threshold: float = 0.2, refine: bool = False, sharing_ratio: float = 0.4,
                 max_neurons: int | None = None, embedding: str = "output", scale: float | None = None,
                 one_token_edit: str = "doubled"):
        self.hp = KnHyperparams(None if layers is None else checked_layers(layers), steps, batch_size, threshold,
                                refine, sharing_ratio, max_neurons, embedding, scale, one_token_edit)

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
