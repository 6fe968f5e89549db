"""The least-squares weight update shared by MEMIT and its descendants.

MEMIT (Meng et al., 2023) eq. 14: the update that maps the new keys K to the residuals R while
preserving the old keys (summarised by C = E[k kᵀ] with weight λ) is

    ΔW = R Kᵀ (λ C + K Kᵀ)⁻¹,        R ∈ R^{d×N}, K ∈ R^{m×N}, C ∈ R^{m×m}, ΔW ∈ R^{d×m}.

It is the minimiser of ‖ΔW K − R‖² + λ tr(ΔW C ΔWᵀ), i.e. it satisfies ΔW (λC + KKᵀ) = R Kᵀ.
Solved in float64 with a Cholesky factorisation (A = λC + KKᵀ is symmetric positive definite when C
is), never with an explicit inverse. Trained models can have FFN neurons that never fire (their key
entry is exactly 0 on every token) or linearly dependent ones; then A is singular, and the update in
those directions is undetermined. Instead of failing (or, as the reference's fp32 inverse does,
returning inf/garbage), :func:`solve_psd` then takes the minimum-norm solution through the
pseudo-inverse over the eigenvalues above ``rcond · λ_max`` and warns with the rank it found.
"""

from __future__ import annotations

import warnings

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
    c = second_moment.double()
    # A float32 C = XᵀX/n is symmetric only up to rounding (the BLAS kernel decides); Cholesky reads one
    # triangle, so symmetrise first and the solve no longer depends on which triangle carries the error.
    a = preservation_weight * (c + c.T) / 2 + k @ k.T
    # ΔWᵀ = A⁻¹ K Rᵀ  (A symmetric)
    delta = solve_psd(a, k @ r.T, f"{where}: λC + KKᵀ").T
    if not torch.isfinite(delta).all():
        raise UpdateSolveError(f"{where}: the solved update is not finite")
    return delta.to(residuals.dtype)


def solve_psd(matrix: torch.Tensor, rhs: torch.Tensor, where: str = "", rcond: float = 1e-10) -> torch.Tensor:
    """X = A⁻¹ B for a symmetric positive semi-definite A, in float64.

    Cholesky when A is positive definite; otherwise the minimum-norm solution A⁺B over the eigenvalues
    above ``rcond · λ_max`` (with a warning naming ``where`` and the numerical rank).
    """
    a, b = matrix.double(), rhs.double()
    factor, info = torch.linalg.cholesky_ex(a)
    if int(info) == 0:
        return torch.cholesky_solve(b, factor)
    eigenvalues, eigenvectors = torch.linalg.eigh(a)
    if not torch.isfinite(eigenvalues).all() or eigenvalues.max() <= 0:
        raise UpdateSolveError(f"{where}: the matrix is not positive semi-definite (largest eigenvalue "
                               f"{float(eigenvalues.max()):.3g}); the statistics are degenerate")
    keep = eigenvalues > rcond * eigenvalues.max()
    warnings.warn(f"{where}: singular matrix (numerical rank {int(keep.sum())} of {a.shape[0]}); "
                  "using the minimum-norm (pseudo-inverse) solution", stacklevel=2)
    basis = eigenvectors[:, keep]
    return basis @ ((basis.T @ b) / eigenvalues[keep, None])
