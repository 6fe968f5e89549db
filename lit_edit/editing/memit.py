"""MEMIT (Meng et al., 2023): a batch of requests spread over several layers (methods.md §3).

1. z_i = h_i^{L} + δ_i: value optimisation with δ at the block output of the last edited layer L, for all
   requests at once (:func:`optimize_values`).
2. For each edited layer l_p (p = 0..P−1, ascending), on the model already updated at the earlier ones:
   K = keys at l_p averaged over the template groups;  H = h^{L} at the subject of the bare prompts;
   R = (Z − H) / (P − p)   (the remaining residual, spread evenly over the layers left);
   ΔW_p = R Kᵀ (λ C_p + K Kᵀ)⁻¹   (eq. 14, :func:`least_squares_update`), applied before the next layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from lit_edit.editing.keys import template_keys
from lit_edit.editing.least_squares import least_squares_update
from lit_edit.editing.values import ValueHyperparams, ValueResult, ValueTarget, optimize_values
from lit_edit.models.architectures import Architecture


@dataclass
class MemitHyperparams:
    """MEMIT's settings (GPT-2 XL values of the MEMIT paper where they apply).

    Attributes:
        layers: the edited layers (13..17 for GPT-2 XL).
        preservation_weight: λ (``mom2_update_weight``), 20000 for GPT-2 XL.
        values: value-optimisation settings (MEMIT GPT-2: clamp_norm_factor 0.75).
    """

    layers: tuple[int, ...] = (13, 14, 15, 16, 17)
    preservation_weight: float = 20000.0
    values: ValueHyperparams = field(default_factory=ValueHyperparams)


@dataclass
class LayerUpdate:
    """What one layer received: ΔW (math layout), the keys K and residuals R it was solved for."""

    layer: int
    delta: torch.Tensor
    keys: torch.Tensor
    residuals: torch.Tensor


def apply_memit(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: MemitHyperparams,
                template_groups: Sequence[Sequence[str]], second_moments: Mapping[int, torch.Tensor]
                ) -> tuple[list[LayerUpdate], ValueResult]:
    """Edit ``model`` in place with one MEMIT batch; return the per-layer updates and the values."""
    layers = sorted(hp.layers)
    for layer in layers:
        arch.check_layer(model, layer)
        if layer not in second_moments:
            raise KeyError(f"no second moment C for layer {layer}; have {sorted(second_moments)}")
    last = arch.layer(layers[-1])
    templates = [t for group in template_groups for t in group]
    values = optimize_values(model, tokenizer, last, targets, hp.values, templates)
    prompts, subjects = [t.prompt for t in targets], [t.subject for t in targets]
    updates = []
    for p, layer in enumerate(layers):
        # one pass per layer gives both the keys at l and h^L at the bare prompts (§12.5)
        keys = template_keys(model, tokenizer, arch, layer, prompts, subjects, template_groups, hp.values.fact_token,
                             also=last)
        residuals = (values.values.double() - keys.bare_output.double()).T / (len(layers) - p)
        averaged = keys.averaged()
        delta = least_squares_update(residuals, averaged, second_moments[layer], hp.preservation_weight,
                                     where=f"layer {layer}")
        weight = arch.edit_weight(model, layer)
        with torch.no_grad():
            weight += arch.from_math(delta).to(weight.dtype)
        updates.append(LayerUpdate(layer, delta, averaged, residuals))
    return updates, values
