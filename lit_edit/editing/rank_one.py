"""ROME's rank-one update (Meng et al., 2022, eq. 2; docs/methods.md §2).

With k* the key of the edited subject (bare prompt), o* = W k* + b the module's output there, v* the
optimised value and k̄ the key averaged over the context templates, ROME inserts (k*, v*) with

    u  = C⁻¹ k̄   (or u = k̄ without the covariance adjustment)
    ΔW = (v* − o*) uᵀ / (uᵀ k*)                        so that (W + ΔW) k* = v* exactly.

The scale of u cancels, so the reference's normalisation u ← u/‖u‖ is unnecessary.
"""

from __future__ import annotations

import torch

from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, prepared


def rome_direction(key_mean: torch.Tensor, second_moment: torch.Tensor | PreparedMoment | None,
                   solver: SecondMomentSolver | None = None) -> torch.Tensor:
    """u = C⁻¹ k̄ (float64, as ``solver`` solves it: ``solver.py``), or k̄ when C is None.

    A :class:`PreparedMoment` keeps its factorisation of C, so a sequence of requests factorises C once.
    """
    if second_moment is None:
        return key_mean.double()
    factorisation = prepared(second_moment, "ROME").factorisation(solver or SecondMomentSolver())
    return factorisation.solve(key_mean.double()[:, None])[:, 0]


def rank_one_update(residual: torch.Tensor, key: torch.Tensor, direction: torch.Tensor,
                    where: str = "") -> torch.Tensor:
    """ΔW = r uᵀ / (uᵀ k) in math layout ``[d, m]``, float64.

    Args:
        residual: r = v* − o*, ``[d]``.
        key: k*, ``[m]``.
        direction: u, ``[m]``.
    """
    denominator = torch.dot(direction.double(), key.double())
    if not torch.isfinite(denominator) or denominator.abs() <= 1e-12 * direction.norm() * key.norm():
        raise FloatingPointError(f"{where}: uᵀk* = {float(denominator):.3g}: the key is orthogonal to the "
                                 "update direction, the rank-one update is undefined")
    return torch.outer(residual.double(), direction.double()) / denominator
