"""MEMIT (Meng et al., 2023): a batch of requests spread over several layers (docs/methods.md §3).

1. z_i = h_i^{L} + δ_i: value optimisation with δ at the block output of the last edited layer L, for all
   requests at once (:func:`optimize_values`).
2. For each edited layer l_p (p = 0..P−1, ascending), on the model already updated at the earlier ones:
   K = keys at l_p averaged over the template groups;  H = h^{L} at the subject of the bare prompts;
   R = (Z − H) / (P − p)   (the remaining residual, spread evenly over the layers left);
   ΔW_p = R Kᵀ (λ C_p + K Kᵀ)⁻¹   (eq. 14, :func:`least_squares_update`), applied before the next layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from lit_edit.editing.contexts import ContextTemplateHyperparams
from lit_edit.editing.keys import module_io_at_subject, template_keys
from lit_edit.editing.least_squares import least_squares_update
from lit_edit.editing.options import EditorOptionError, checked_layers
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, prepared
from lit_edit.editing.values import ValueHyperparams, ValueResult, ValueTarget, optimize_values
from lit_edit.models.architectures import Architecture


@dataclass
class LocateHyperparams(ContextTemplateHyperparams):
    """The settings MEMIT and the methods built on its layer loop (D4S, COMEBA-HK, AlphaEdit) share: the edited
    layers, value optimisation, the context templates (:class:`ContextTemplateHyperparams`) and the second-moment
    solver. Each method's hyperparameters extend these with their own fields and defaults.

    Attributes:
        layers: the edited layers (the MEMIT critical path: 13..17 for GPT-2 XL).
        values: value-optimisation settings (MEMIT GPT-2: clamp_norm_factor 0.75).
        solver: how the systems built from C are solved when C is singular (``lit_edit/editing/solver.py``):
            MEMIT's λC + KKᵀ, D4S's and COMEBA-HK's λC + ΣKKᵀ, AlphaEdit's reduced system.
    """

    layers: tuple[int, ...] = (13, 14, 15, 16, 17)
    values: ValueHyperparams = field(default_factory=ValueHyperparams)
    solver: SecondMomentSolver = field(default_factory=SecondMomentSolver)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.layers = checked_layers(self.layers)


@dataclass
class MemitHyperparams(LocateHyperparams):
    """MEMIT's settings (GPT-2 XL values of the MEMIT paper where they apply; docs/methods.md §3): the shared
    locate-and-edit settings (:class:`LocateHyperparams`) and λ.

    Attributes:
        preservation_weight: λ (``mom2_update_weight``), the weight of the preserved keys' C.
    """

    preservation_weight: float = 20000.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preservation_weight < 0:
            raise EditorOptionError(f"model.editor.preservation_weight must be >= 0, got {self.preservation_weight}")


@dataclass
class LayerUpdate:
    """What one layer received: ΔW (math layout), the keys K and residuals R it was solved for."""

    layer: int
    delta: torch.Tensor
    keys: torch.Tensor
    residuals: torch.Tensor


@dataclass
class LayerStep:
    """What the layer loop hands a method's update rule at layer ``layer`` (the p-th of the edited layers).

    Attributes:
        keys: K ``[m, N]``, averaged over the template groups, on the model as the earlier layers left it.
        residuals: Z − H ``[d, N]``, undivided: H is h^{L} at the bare prompts measured in this layer's pass
            (``recompute_residual``) or in the first layer's pass (D4S's rule).
        remaining: L − p, the number of layers the residual is still to be spread over (this one included).
    """

    index: int
    layer: int
    keys: torch.Tensor
    residuals: torch.Tensor
    remaining: int


def spread_over_layers(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], values: torch.Tensor,
                       layers: Sequence[int], template_groups: Sequence[Sequence[str]], fact_token: str,
                       update: Callable[[LayerStep], torch.Tensor], recompute_residual: bool = True,
                       bare_pass: bool = False) -> list[LayerUpdate]:
    """MEMIT's layer loop (step 2 of the module docstring) with the update rule left to the caller.

    For each layer, ascending: one forward pass gives the keys at the layer and h^{L} at the bare prompts (§12.5);
    ``update(step)`` solves *and applies* the layer's ΔW (in place, or into a hook layer) and returns it in math
    layout, so that the next layer's keys and residual see it. Shared by MEMIT, D4S, COMEBA-HK and AlphaEdit.
    ``bare_pass`` reads h^{L} in a second pass over the bare prompts alone, as the reference code does: the same
    numbers unless a hook gate's statistics count padding (COMEBA-HK's ``gate_statistics: all_positions``), where
    they depend on how far the pass pads each row.
    """
    layers = sorted(layers)
    last = arch.layer(layers[-1])
    prompts, subjects = [t.prompt for t in targets], [t.subject for t in targets]
    updates, first_outputs = [], None
    for p, layer in enumerate(layers):
        keys = template_keys(model, tokenizer, arch, layer, prompts, subjects, template_groups, fact_token,
                             also=None if bare_pass else last)
        if bare_pass:
            keys.bare_output = module_io_at_subject(model, tokenizer, last, prompts, subjects, fact_token)[1]
        if first_outputs is None:
            first_outputs = keys.bare_output
        outputs = keys.bare_output if recompute_residual else first_outputs
        residuals = (values.double() - outputs.double()).T
        averaged = keys.averaged()
        delta = update(LayerStep(p, layer, averaged, residuals, len(layers) - p))
        updates.append(LayerUpdate(layer, delta, averaged, residuals / (len(layers) - p)))
    return updates


def add_to_weight(model, arch: Architecture, layer: int, delta: torch.Tensor) -> None:
    """W_layer += ΔW (math layout, converted to the stored layout and dtype)."""
    weight = arch.edit_weight(model, layer)
    with torch.no_grad():
        weight += arch.from_math(delta).to(weight.dtype)


def check_memit_layers(model, arch: Architecture, layers: Sequence[int], second_moments: Mapping[int, object]
                       ) -> None:
    for layer in layers:
        arch.check_layer(model, layer)
        if layer not in second_moments:
            raise KeyError(f"no second moment C for layer {layer}; have {sorted(second_moments)}")


def memit_values(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], layers: Sequence[int],
                 hp: ValueHyperparams, template_groups: Sequence[Sequence[str]]) -> ValueResult:
    """z_i = h_i^{L} + δ_i for every request, δ at the block output of the last edited layer L (step 1)."""
    templates = [t for group in template_groups for t in group]
    return optimize_values(model, tokenizer, arch.layer(max(layers)), targets, hp, templates)


def apply_memit(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: MemitHyperparams,
                template_groups: Sequence[Sequence[str]],
                second_moments: Mapping[int, torch.Tensor | PreparedMoment]) -> tuple[list[LayerUpdate], ValueResult]:
    """Edit ``model`` in place with one MEMIT batch; return the per-layer updates and the values. C per layer as a
    tensor or a :class:`PreparedMoment` (the editor's, with its eigenvalues computed once per run)."""
    check_memit_layers(model, arch, hp.layers, second_moments)
    moments = {layer: prepared(second_moments[layer], f"layer {layer}") for layer in hp.layers}
    values = memit_values(model, tokenizer, arch, targets, hp.layers, hp.values, template_groups)

    def update(step: LayerStep) -> torch.Tensor:
        delta = least_squares_update(step.residuals / step.remaining, step.keys, moments[step.layer],
                                     hp.preservation_weight, where=f"layer {step.layer}", solver=hp.solver)
        add_to_weight(model, arch, step.layer, delta)
        return delta

    updates = spread_over_layers(model, tokenizer, arch, targets, values.values, hp.layers, template_groups,
                                 hp.values.fact_token, update)
    return updates, values
