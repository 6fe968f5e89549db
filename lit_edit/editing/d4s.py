"""D4S (Dump for Sequence): sequential editing as the batch solution over every edit so far (docs/methods.md §7).

Per edited layer l the state is S_l = Σ_i R_i K_iᵀ (``[d, m]``) and A_l = λC_l + Σ_i K_i K_iᵀ
(:class:`~lit_edit.editing.accumulated.AccumulatedKeys`); nothing per edit is stored. At every step the model
enters at W0 (the paper's protocol, ``keep_original_weight=True``), the values z and keys are measured on it
(earlier layers already set within the step), and

    W_l = W0_l + S_l A_l⁻¹ / (L − p)    ("reference" residual rule)   or   W_l = W0_l + S_l A_l⁻¹   ("recompute").

S_l A_l⁻¹ is kept up to date by the recursive least-squares step D ← D + (R − D K) G with the gain
G = Kᵀ A_n⁻¹ (exact; see ``accumulated.py``), and recomputed as S A⁻¹ whenever A⁻¹ is rebuilt.

**The per-layer residual (§7 quirk), decided.** The reference computes R = Z − H once, at the first layer,
and asks layer p for R/(L − p) without measuring what the earlier layers already did, so the layers together
move h^{L} by H_L·R (H_L the harmonic number) instead of R: the edit over-shoots, more with more layers. The
default here, ``residual="recompute"``, measures H again at every layer on the model with the earlier layers
set, and layer p stores R_p = (Z − H_p)/(L − p) in S_p, as MEMIT does. ``residual="reference"`` reproduces the
paper. With one layer both are the same, and D4S after n edits equals batch MEMIT over the n edits
(``tests/unit/editors/test_sequential_methods.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lit_edit.editing.accumulated import AccumulatedHyperparams, AccumulatedKeys
from lit_edit.editing.memit import (
    LayerStep,
    LayerUpdate,
    check_memit_layers,
    memit_values,
    spread_over_layers,
)
from lit_edit.editing.solver import PreparedMoment, prepared
from lit_edit.editing.values import ValueResult, ValueTarget
from lit_edit.models.architectures import Architecture

RESIDUAL_RULES = ("recompute", "reference")


@dataclass
class D4sHyperparams(AccumulatedHyperparams):
    """D4S's settings: those of the accumulated solve (:class:`AccumulatedHyperparams`, MEMIT's included) and the
    residual rule.

    Attributes:
        residual: ``recompute`` (per layer, the default) or ``reference`` (the paper's once-computed residual,
            divided by L − p; module docstring). ``refactor_every`` also recomputes S A⁻¹ from the sums.
    """

    residual: str = "recompute"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.residual not in RESIDUAL_RULES:
            raise ValueError(f"unknown D4S residual rule {self.residual!r}; choose from {RESIDUAL_RULES}")


class D4sLayerState:
    """S = Σ R Kᵀ, A = λC + Σ K Kᵀ and the solution D = S A⁻¹ of one layer."""

    def __init__(self, second_moment: torch.Tensor | PreparedMoment, out_features: int, hp: D4sHyperparams,
                 where: str):
        moment = prepared(second_moment, where)
        self.keys = AccumulatedKeys.from_moment(moment, hp.preservation_weight, hp.solver, hp.incremental,
                                                hp.refactor_every, where=where)
        m = moment.matrix.shape[0]
        self.numerator = torch.zeros(out_features, m, dtype=torch.float64, device=moment.matrix.device)
        self.solution = torch.zeros_like(self.numerator)

    def add(self, residuals: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """S += R Kᵀ, A += K Kᵀ; return the new D = S A⁻¹."""
        r, k = residuals.double(), keys.double()
        self.numerator += r @ k.T
        gain = self.keys.add(k)
        if not self.keys.incremental:
            self.solution = self.keys.solve(self.numerator.T).T
        elif self.keys.since_refactor == 0:          # A⁻¹ was just rebuilt: recompute D exactly
            self.solution = self.numerator @ self.keys.inverse()
        else:
            self.solution = self.solution + (r - self.solution @ k) @ gain
        return self.solution

    def state_dict(self) -> dict:
        return {"numerator": self.numerator, "solution": self.solution,
                **{f"keys.{k}": v for k, v in self.keys.state_dict().items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["numerator"].shape != self.numerator.shape:
            raise ValueError(f"{self.keys.where}: the saved D4S state has shape {tuple(state['numerator'].shape)}, "
                             f"this layer's is {tuple(self.numerator.shape)}: another model or layer")
        self.keys.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("keys.")})
        self.numerator = state["numerator"].to(self.numerator).clone()     # float64, on this layer's device
        self.solution = state["solution"].to(self.solution).clone()


def apply_d4s(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: D4sHyperparams,
              template_groups: Sequence[Sequence[str]], originals: Mapping[int, torch.Tensor],
              states: Mapping[int, D4sLayerState]) -> tuple[list[LayerUpdate], ValueResult]:
    """One D4S step: restore every edited layer to W0 (``originals``, stored layout), then set W_l = W0_l + Δ_l."""
    check_memit_layers(model, arch, hp.layers, states)
    with torch.no_grad():
        for layer in hp.layers:
            arch.edit_weight(model, layer).copy_(originals[layer])
    values = memit_values(model, tokenizer, arch, targets, hp.layers, hp.values, template_groups)
    reference = hp.residual == "reference"

    def update(step: LayerStep) -> torch.Tensor:
        residuals = step.residuals if reference else step.residuals / step.remaining
        solution = states[step.layer].add(residuals, step.keys)
        delta = solution / step.remaining if reference else solution
        weight = arch.edit_weight(model, step.layer)
        with torch.no_grad():
            weight.copy_(originals[step.layer] + arch.from_math(delta).to(weight.dtype))
        return delta

    updates = spread_over_layers(model, tokenizer, arch, targets, values.values, hp.layers, template_groups,
                                 hp.values.fact_token, update, recompute_residual=not reference)
    return updates, values
