"""ROME (Meng et al., 2022): one rank-one update per request, applied sequentially (docs/methods.md §2).

For request i on layer l: v* from value optimisation with δ at the FFN output of layer l; k̄ the key
averaged over the context templates; k*, o* the FFN output projection's input and output at the
subject in the bare prompt; ΔW = (v* − o*)(C⁻¹k̄)ᵀ / ((C⁻¹k̄)ᵀk*) (``mom2_adjustment``: with C, else
k̄ alone). Each request is computed on the model already edited by the previous ones. C does not change with
the edits, so it is factorised once (``PreparedMoment``; the editor keeps it across calls), not once per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lit_edit.editing.contexts import ContextTemplateHyperparams
from lit_edit.editing.keys import template_keys
from lit_edit.editing.options import checked_layers
from lit_edit.editing.rank_one import rank_one_update, rome_direction
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, prepared
from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from lit_edit.models.architectures import Architecture


@dataclass
class RomeHyperparams(ContextTemplateHyperparams):
    """ROME's settings (GPT-2 XL values of the ROME paper where they apply), the context templates
    (:class:`~lit_edit.editing.contexts.ContextTemplateHyperparams`) with the reference's set as default: lengths 5
    and 10, 2 per seed word, 21 templates with the bare one.

    Attributes:
        layer: the edited layer.
        values: value-optimisation settings (ROME: clamp_norm_factor 4).
        mom2_adjustment: use u = C⁻¹k̄ (the ROME paper, true) or u = k̄ (EasyEdit's hparams, false).
        solver: how C⁻¹k̄ is solved when C is singular (``lit_edit/editing/solver.py``); C is factorised once per
            run (:class:`~lit_edit.editing.solver.PreparedMoment`), not once per request.
    """

    layer: int = 17
    values: ValueHyperparams = field(default_factory=lambda: ValueHyperparams(clamp_norm_factor=4.0))
    mom2_adjustment: bool = True
    solver: SecondMomentSolver = field(default_factory=SecondMomentSolver)
    templates_per_seed: int = field(default=2, kw_only=True)
    template_tokens: int | Sequence[int] = field(default=(5, 10), kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        (self.layer,) = checked_layers([self.layer], "layer")


@dataclass
class RankOneEdit:
    """What one ROME request changed: ΔW in math layout and the value-optimisation losses."""

    layer: int
    delta: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor
    first_loss: float
    last_loss: float


def apply_rome(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: RomeHyperparams,
               context_templates: Sequence[str], second_moment: torch.Tensor | PreparedMoment | None = None
               ) -> list[RankOneEdit]:
    """Edit ``model`` in place, one request after the other; return each request's update. Pass C of ``hp.layer``
    as a :class:`PreparedMoment` to reuse its factorisation across calls (a tensor is factorised once per call)."""
    arch.check_layer(model, hp.layer)
    if hp.mom2_adjustment and second_moment is None:
        raise ValueError("ROME with mom2_adjustment needs the second moment C of layer "
                         f"{hp.layer}; pass it, or set mom2_adjustment false")
    moment = prepared(second_moment, f"layer {hp.layer}") if hp.mom2_adjustment else None
    weight = arch.edit_weight(model, hp.layer)
    ffn_out = model.get_submodule(arch.ffn_out_at(hp.layer))
    edits = []
    for i, target in enumerate(targets):
        values = optimize_values(model, tokenizer, arch.ffn_at(hp.layer), [target], hp.values, context_templates)
        keys = template_keys(model, tokenizer, arch, hp.layer, [target.prompt], [target.subject],
                             [context_templates], hp.values.fact_token)
        k_star = keys.per_template[0, 0]  # the bare "{}" template (optimize_values checked it is first)
        with torch.no_grad():
            o_star = ffn_out(k_star)
        direction = rome_direction(keys.averaged()[:, 0], moment, hp.solver)
        delta = rank_one_update(values.values[0] - o_star, k_star, direction, where=f"request {i}")
        with torch.no_grad():
            weight += arch.from_math(delta).to(weight.dtype)
        edits.append(RankOneEdit(hp.layer, delta, k_star, values.values[0], float(values.first_loss[0]),
                                 float(values.last_loss[0])))
    return edits
