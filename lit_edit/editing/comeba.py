"""COMEBA-HK: consecutive batch editing with accumulated keys and hook layers (docs/methods.md §8).

Per edited layer l: C_accu^l = λC^l + Σ_{i≤n} K_iK_iᵀ (eqs. 14–15) and the update of step n

    ΔW_n = R_n K_nᵀ C_accu,n⁻¹,   R_n = V_n − W_{n−1}K_n  (the residual on the latest weights, eq. 13)

— the gain K_nᵀ C_accu,n⁻¹ comes from :class:`~lit_edit.editing.accumulated.AccumulatedKeys` (Woodbury).
With hook layers (:class:`~lit_edit.editing.hook_layers.HookBank`) W lives in the hooks and the base model is
never modified; one step (§8.4):

1. validated hooks on all layers; the values z_i (MEMIT's value optimisation, δ at h^{L});
2. temporary hooks on all layers; per layer p (ascending): K and H = h^{L} under the hooks, R = (Z − H)/(L − p),
   W_h^l += R·gain, and layer l's hook becomes validated (later layers see it gated);
3. the threshold update (eq. 18) from a recording pass over the batch's edit prompts (subject filled in,
   no target); then validated hooks everywhere for inference.

Without hooks (the paper's ablation) the same update is added to the model's weights. The reference's
ablation initialised C_accu to the unscaled C and then used λ·C_accu + KKᵀ, so earlier keys got weight λ;
here C_accu = λC + ΣKKᵀ in both variants (the paper's equations).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lit_edit.editing.accumulated import AccumulatedHyperparams, AccumulatedKeys
from lit_edit.editing.hook_layers import HookBank, check_gate_statistics
from lit_edit.editing.memit import LayerStep, LayerUpdate, add_to_weight, check_memit_layers, memit_values, spread_over_layers
from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.values import ValueResult, ValueTarget
from lit_edit.models.architectures import Architecture
from lit_edit.scoring import pad_right


@dataclass
class ComebaHyperparams(AccumulatedHyperparams):
    """COMEBA-HK's settings (paper: batch 10, λ = 15000, α0 between 2 and 3 — the code's 2.2): those of the
    accumulated solve (:class:`~lit_edit.editing.accumulated.AccumulatedHyperparams`, MEMIT's included; C_accu =
    λC + ΣKKᵀ) and the gate's.

    Attributes:
        alpha: α0, the initial gate threshold.
        dynamic_threshold: lower α after every step to the smallest max z of the batch's edit prompts (eq. 18);
            false keeps α0 (the paper's fixed-α ablation).
        hooks: keep the edited weights in hook layers beside the frozen model (COMEBA-HK, default); false: the
            paper's ablation "w/o HK", the same update added to the model's weights.
        gate_statistics: the positions the gate's z-scores are computed over (``hook_layers.py``, decision 1):
            ``real_tokens`` (default) or ``all_positions``, padding included, as the reference code. With
            padding a row's z depends on the padded length of its pass, so reproducing the reference also needs
            ``values.requests_per_pass: 1`` (the reference optimises the values one request at a time); any
            other setting warns. The residual's h^L is then read in a pass over the bare prompts alone, as
            there (``spread_over_layers(bare_pass=True)``).
    """

    alpha: float = 2.2
    dynamic_threshold: bool = True
    hooks: bool = True
    gate_statistics: str = "real_tokens"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_gate_statistics(self.gate_statistics)
        if self.hooks and self.values.reuse_prefix:
            raise EditorOptionError("model.editor.values.reuse_prefix: COMEBA-HK's gate scores each token against the "
                                    "other positions of its row, so a step cannot re-run the positions from the "
                                    "subject on alone; set it false (or hooks: false)")
        if self.gate_statistics == "all_positions" and self.values.requests_per_pass != 1:
            warnings.warn(f"gate_statistics 'all_positions' with values.requests_per_pass "
                          f"{self.values.requests_per_pass}: the gate's z-scores include padding, so each request's "
                          "values depend on how many requests share its padded pass; the reference code optimises "
                          "them one at a time (set values.requests_per_pass: 1 to reproduce it)", stacklevel=3)


@dataclass
class ComebaStep:
    """What one step did besides the per-layer updates: the values, the thresholds after it, and per layer how
    many of the batch's edit prompts the gate misses (max z < α; 0 with the dynamic threshold)."""

    values: ValueResult
    thresholds: dict[int, float]
    missed: dict[int, int]


def edit_prompt_batch(tokenizer, targets: Sequence[ValueTarget], device) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's raw edit prompts (subject filled in, no target), right-padded, for the threshold update."""
    encoded = [tokenizer(t.prompt.format(t.subject), add_special_tokens=True)["input_ids"] for t in targets]
    return pad_right(encoded, tokenizer.pad_token_id, device)


def apply_comeba(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: ComebaHyperparams,
                 template_groups: Sequence[Sequence[str]], accumulated: Mapping[int, AccumulatedKeys],
                 bank: HookBank | None) -> tuple[list[LayerUpdate], ComebaStep]:
    """One COMEBA-HK step (with ``bank``) or one step of the ablation without hooks (``bank=None``)."""
    check_memit_layers(model, arch, hp.layers, accumulated)
    if bank is not None:
        bank.install()
        bank.set_mode("validated")
    values = memit_values(model, tokenizer, arch, targets, hp.layers, hp.values, template_groups)
    if bank is not None:
        bank.set_mode("temporary")

    def update(step: LayerStep) -> torch.Tensor:
        gain = accumulated[step.layer].add(step.keys)
        delta = (step.residuals.double() / step.remaining) @ gain
        if bank is None:
            add_to_weight(model, arch, step.layer, delta)
        else:
            bank.layers[step.layer].add(delta)
            bank.set_mode("validated", [step.layer])
        return delta

    try:
        updates = spread_over_layers(model, tokenizer, arch, targets, values.values, hp.layers, template_groups,
                                     hp.values.fact_token, update,
                                     bare_pass=bank is not None and hp.gate_statistics == "all_positions")
    finally:
        if bank is not None:
            bank.set_mode("validated")
    thresholds, missed = {}, {}
    if bank is not None:
        device = next(model.parameters()).device
        bank.record_scores(*edit_prompt_batch(tokenizer, targets, device))
        missed = bank.lower_thresholds(dynamic=hp.dynamic_threshold)
        thresholds = {layer: hook.alpha for layer, hook in bank.layers.items()}
        if any(missed.values()):
            warnings.warn(f"the hook gate misses edit prompts of this batch (max z below α) at layers "
                          f"{ {k: v for k, v in missed.items() if v} }: those edits will not show"
                          + ("" if hp.dynamic_threshold else "; the threshold is fixed (dynamic_threshold false)"),
                          stacklevel=2)
    return updates, ComebaStep(values, thresholds, missed)
