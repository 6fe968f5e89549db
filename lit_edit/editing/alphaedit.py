"""AlphaEdit: MEMIT with the update projected onto the null space of the preserved keys (docs/methods.md §9).

Per edited layer: P = U Uᵀ, where U spans the eigenvectors of C = E[k kᵀ] with eigenvalue below τ
(``nullspace_threshold``, 2e-2 in the paper). With G = K Kᵀ + Σ_prev K_p K_pᵀ (the keys of earlier batches)
the published update is

    ΔW = Xᵀ,   X = (P G + α I)⁻¹ P K Rᵀ          (α = ``l2``; R = (Z − H)/(L − p) as in MEMIT).

(P G + αI) is not symmetric, but its solution lies in range(P) (αX = P(KRᵀ − G X)), so with X = U y it is
exactly (UᵀGU + αI) y = UᵀKRᵀ: a symmetric positive-definite system of the null-space dimension r ≤ m,
solved here by Cholesky in float64 (αI makes it positive definite; with α = 0 it can be singular, and the
second-moment solver decides: ``solver.py``; ``ridge`` adds ε·λ_max(C)·I to C before the null space is taken).
After all layers, the keys of the batch are measured again on the edited model at every layer and added to
Σ_prev K_p K_pᵀ (as the reference does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lit_edit.editing.keys import template_keys
from lit_edit.editing.memit import (
    LayerStep,
    LayerUpdate,
    LocateHyperparams,
    add_to_weight,
    check_memit_layers,
    memit_values,
    spread_over_layers,
)
from lit_edit.editing.solver import SecondMomentSolver, UpdateSolveError, solve_psd
from lit_edit.editing.values import ValueResult, ValueTarget
from lit_edit.models.architectures import Architecture


@dataclass
class AlphaEditHyperparams(LocateHyperparams):
    """AlphaEdit's settings (GPT-2 XL / GPT-J: l2 = 10; LLaMA-3-8B: l2 = 1; τ = 2e-2): the shared locate-and-edit
    settings (:class:`~lit_edit.editing.memit.LocateHyperparams`; C only gives the null space, so there is no λ) and
    the projection's.

    Attributes:
        nullspace_threshold: τ, eigenvalues of C below it span the preserved null space (paper: 2e-2).
        l2: α, the ridge term (GPT-2 XL / GPT-J: 10, LLaMA-3-8B: 1).
    """

    nullspace_threshold: float = 2e-2
    l2: float = 10.0


def null_space_basis(second_moment: torch.Tensor, threshold: float, where: str = "") -> torch.Tensor:
    """U ``[m, r]``: the eigenvectors of C whose eigenvalue is below ``threshold`` (float64)."""
    c = second_moment.double()
    eigenvalues, eigenvectors = torch.linalg.eigh((c + c.T) / 2)
    keep = eigenvalues < threshold
    if not keep.any():
        raise ValueError(f"{where}: the null space of C is empty at nullspace_threshold {threshold:g} (the smallest "
                         f"eigenvalue is {float(eigenvalues.min()):.3g}); raise the threshold")
    return eigenvectors[:, keep]


def alphaedit_update(residuals: torch.Tensor, keys: torch.Tensor, basis: torch.Tensor,
                     previous_keys: torch.Tensor, l2: float, where: str = "",
                     solver: SecondMomentSolver | None = None) -> torch.Tensor:
    """ΔW = (U y)ᵀ with (Uᵀ(KKᵀ + K_pK_pᵀ)U + αI) y = UᵀKRᵀ (module docstring), float64, math layout ``[d, m]``."""
    r, k, u = residuals.double(), keys.double(), basis.double()
    if not torch.isfinite(r).all() or not torch.isfinite(k).all():
        raise UpdateSolveError(f"{where}: the residuals or keys contain NaN or inf")
    g = k @ k.T + previous_keys.double()
    reduced = u.T @ g @ u
    reduced = (reduced + reduced.T) / 2 + l2 * torch.eye(u.shape[1], dtype=torch.float64, device=u.device)
    bounds = (l2, float(reduced.trace()))   # Uᵀ G U ⪰ 0: every eigenvalue lies in [α, tr(Uᵀ G U + αI)]
    y = solve_psd(reduced, u.T @ (k @ r.T), f"{where}: Uᵀ G U + αI", solver, bounds)
    return (u @ y).T


def apply_alphaedit(model, tokenizer, arch: Architecture, targets: Sequence[ValueTarget], hp: AlphaEditHyperparams,
                    template_groups: Sequence[Sequence[str]], bases: Mapping[int, torch.Tensor],
                    previous_keys: dict[int, torch.Tensor]) -> tuple[list[LayerUpdate], ValueResult]:
    """Edit ``model`` in place with one AlphaEdit batch; ``previous_keys`` (Σ K_pK_pᵀ per layer) is updated."""
    check_memit_layers(model, arch, hp.layers, bases)
    values = memit_values(model, tokenizer, arch, targets, hp.layers, hp.values, template_groups)

    def update(step: LayerStep) -> torch.Tensor:
        delta = alphaedit_update(step.residuals / step.remaining, step.keys, bases[step.layer],
                                 previous_keys[step.layer], hp.l2, where=f"layer {step.layer}", solver=hp.solver)
        add_to_weight(model, arch, step.layer, delta)
        return delta

    updates = spread_over_layers(model, tokenizer, arch, targets, values.values, hp.layers, template_groups,
                                 hp.values.fact_token, update)
    prompts, subjects = [t.prompt for t in targets], [t.subject for t in targets]
    for layer in hp.layers:
        keys = template_keys(model, tokenizer, arch, layer, prompts, subjects, template_groups,
                             hp.values.fact_token).averaged().double()
        previous_keys[layer] += keys @ keys.T
    return updates, values
