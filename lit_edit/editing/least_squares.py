"""The least-squares weight update shared by MEMIT and its descendants.

MEMIT (Meng et al., 2023) eq. 14: the update that maps the new keys K to the residuals R while
preserving the old keys (summarised by C = E[k kᵀ] with weight λ) is

    ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹,        R ∈ R^{d×N}, K ∈ R^{m×N}, C ∈ R^{m×m}, ΔW ∈ R^{d×m}.

It is the minimiser of ‖ΔW K − R‖² + λ tr(ΔW C ΔWᵀ), i.e. it satisfies ΔW (λC + KKᵀ) = R Kᵀ.
Solved in float64, never with an explicit inverse. A = λC + KKᵀ is singular when C is (FFN neurons that never
fire, or dependent ones); what happens then is the second-moment solver's choice (``solver.py``: ``exact``
raises, ``ridge`` adds ε·λ_max(C)·I to C, ``pinv`` takes the minimum-norm solution).
"""

from __future__ import annotations

import torch

from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, UpdateSolveError, prepared, solve_psd

__all__ = ["UpdateSolveError", "least_squares_update", "solve_psd"]


def least_squares_update(residuals: torch.Tensor, keys: torch.Tensor, second_moment: torch.Tensor | PreparedMoment,
                         preservation_weight: float, where: str = "", solver: SecondMomentSolver | None = None
                         ) -> torch.Tensor:
    """ΔW = R Kᵀ (λC + KKᵀ)⁻¹ (eq. 14) in float64, returned in the dtype of ``residuals``.

    Args:
        residuals: R, ``[d, N]`` — target minus current output, one column per key.
        keys: K, ``[m, N]``.
        second_moment: C, ``[m, m]``, or the layer's :class:`PreparedMoment` (its eigenvalues computed once).
        preservation_weight: λ (``mom2_update_weight``), the effective number of preserved keys.
        where: a label (e.g. ``"layer 17"``) for error messages.
        solver: how the system is solved (``solver.py``; default ``pinv``).
    """
    solver = solver or SecondMomentSolver()
    c_in = second_moment.matrix if isinstance(second_moment, PreparedMoment) else second_moment
    d, n = residuals.shape
    m = keys.shape[0]
    if keys.shape[1] != n or c_in.shape != (m, m):
        raise ValueError(f"{where}: shapes do not fit: R {tuple(residuals.shape)}, K {tuple(keys.shape)}, "
                         f"C {tuple(c_in.shape)}")
    for name, tensor in (("residuals", residuals), ("keys", keys), ("second moment", c_in)):
        if not torch.isfinite(tensor).all():
            raise UpdateSolveError(f"{where}: the {name} contain NaN or inf")
    moment = prepared(second_moment, where)
    r, k = residuals.double(), keys.double()
    c = moment.float64(solver)
    # A float32 C = XᵀX/n is symmetric only up to rounding (the BLAS kernel decides); Cholesky reads one
    # triangle, so symmetrise first and the solve no longer depends on which triangle carries the error.
    a = preservation_weight * (c + c.T) / 2 + k @ k.T
    # λ_min(A) ≥ λ·λ_min(C) and λ_max(A) ≤ λ·λ_max(C) + ‖K‖²_F: what lets pinv use Cholesky
    smallest, largest = moment.bounds(solver)
    bounds = (preservation_weight * smallest, preservation_weight * largest + float((k * k).sum()))
    # ΔWᵀ = A⁻¹ K Rᵀ  (A symmetric)
    delta = solve_psd(a, k @ r.T, f"{where}: λC + KKᵀ", solver, bounds).T
    if not torch.isfinite(delta).all():
        raise UpdateSolveError(f"{where}: the solved update is not finite")
    return delta.to(residuals.dtype)
