"""The least-squares weight update shared by MEMIT and its descendants.

MEMIT (Meng et al., 2023) eq. 14: the update that maps the new keys K to the residuals R while
preserving the old keys (summarised by C = E[k kᵀ] with weight λ) is

    ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹,        R ∈ R^{d×N}, K ∈ R^{m×N}, C ∈ R^{m×m}, ΔW ∈ R^{d×m}.

It is the minimiser of ‖ΔW K − R‖² + λ tr(ΔW C ΔWᵀ), i.e. it satisfies ΔW (λC + KKᵀ) = R Kᵀ.
Solved in float64 with a Cholesky factorisation (A = λC + KKᵀ is symmetric positive definite when C
is), never with an explicit inverse.
"""

from __future__ import annotations

import torch


class UpdateSolveError(RuntimeError):
    """The update could not be solved: non-finite inputs, or a matrix that is not positive definite."""


def least_squares_update(residuals: torch.Tensor, keys: torch.Tensor, second_moment: torch.Tensor,
                         preservation_weight: float, where: str = "") -> torch.Tensor:
    """ΔW = R Kᵀ (λC + KKᵀ)⁻¹ (eq. 14) in float64, returned in the dtype of ``residuals``.

    Args:
        residuals: R, ``[d, N]`` — target minus current output, one column per key.
        keys: K, ``[m, N]``.
        second_moment: C, ``[m, m]`` (pass the *accumulated* matrix for D4S/COMEBA variants).
        preservation_weight: λ (``mom2_update_weight``), the effective number of preserved keys.
        where: a label (e.g. ``"layer 17"``) for error messages.
    """
    d, n = residuals.shape
    m = keys.shape[0]
    if keys.shape[1] != n or second_moment.shape != (m, m):
        raise ValueError(f"{where}: shapes do not fit: R {tuple(residuals.shape)}, K {tuple(keys.shape)}, "
                         f"C {tuple(second_moment.shape)}")
    for name, tensor in (("residuals", residuals), ("keys", keys), ("second moment", second_moment)):
        if not torch.isfinite(tensor).all():
            raise UpdateSolveError(f"{where}: the {name} contain NaN or inf")
    r, k = residuals.double(), keys.double()
    a = preservation_weight * second_moment.double() + k @ k.T
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) != 0:
        raise UpdateSolveError(f"{where}: λC + KKᵀ is not positive definite (leading minor {int(info)}); "
                               "the statistics may be degenerate or λ too small")
    # ΔWᵀ = A⁻¹ K Rᵀ  (A symmetric)
    delta_t = torch.cholesky_solve(k @ r.T, factor)
    delta = delta_t.T
    if not torch.isfinite(delta).all():
        raise UpdateSolveError(f"{where}: the solved update is not finite")
    return delta.to(residuals.dtype)
