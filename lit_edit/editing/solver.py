"""How the systems built from the second moment C = E[k kᵀ] are solved (docs/fidelity.md "Second-moment solver").

Every method that preserves old keys solves a symmetric positive semi-definite system built from C: ROME
C u = k̄, MEMIT (λC + KKᵀ) ΔWᵀ = K Rᵀ (eq. 14), D4S and COMEBA-HK λC + Σ KKᵀ, AlphaEdit the null space of C.
Trained models have FFN neurons that never fire (their key entry is 0 on every token) and nearly dependent
ones, so C is singular or has eigenvalues down to rounding level; what the update does in those directions is
then decided by the solver, not by the data (the norm of ΔW by orders of magnitude, the edit itself hardly).
:class:`SecondMomentSolver` is the one option all these methods share:

* ``exact``: Cholesky of the system, as the reference code solves it; a system that is not positive definite
  raises :class:`UpdateSolveError` naming the layer.
* ``ridge``: C + ε·λ_max(C)·I in place of C, in every method, then solved as ``exact``.
* ``pinv`` (default): the minimum-norm solution over the eigenvalues of the system above rcond·λ_max (its
  pseudo-inverse), with a warning giving the numerical rank. When bounds on the system's eigenvalues prove that
  none is below the cut-off, the same solution comes from a Cholesky factorisation (cheaper).

:class:`PreparedMoment` holds one layer's C with its eigenvalues (computed once) and, per solver, the
factorisation of C itself (what ROME reuses across requests) and the conditioning record for ``metrics.json``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch

SOLVER_METHODS = ("exact", "ridge", "pinv")


class UpdateSolveError(RuntimeError):
    """The update could not be solved: non-finite inputs, or a matrix that is not positive definite."""


@dataclass(frozen=True)
class SecondMomentSolver:
    """How the systems with C are solved; shared by ROME, MEMIT, D4S, COMEBA-HK and AlphaEdit (module docstring)."""

    method: str = "pinv"
    """``exact`` (Cholesky; raises when the system is singular), ``ridge`` (C + ε·λ_max(C)·I) or ``pinv``
    (minimum-norm solution over the eigenvalues above rcond·λ_max)."""
    ridge: float = 1e-8
    """ε of ``ridge``, relative to the largest eigenvalue of C."""
    rcond: float = 1e-10
    """Cut-off of ``pinv``, relative to the largest eigenvalue of the solved system."""

    def __post_init__(self):
        if self.method not in SOLVER_METHODS:
            raise ValueError(f"unknown second-moment solver method {self.method!r}; choose from {SOLVER_METHODS}")
        if not self.ridge > 0:
            raise ValueError(f"solver.ridge must be > 0 (relative to the largest eigenvalue of C), got {self.ridge}")
        if not 0 <= self.rcond < 1:
            raise ValueError(f"solver.rcond must be in [0, 1) (relative to the largest eigenvalue), got {self.rcond}")

    @property
    def cutoff(self) -> float:
        """The relative eigenvalue below which a direction of C is dominated by the solver: ε for ``ridge``,
        rcond otherwise (for ``exact`` the directions the pseudo-inverse would drop)."""
        return self.ridge if self.method == "ridge" else self.rcond


class Factorisation:
    """A symmetric positive (semi-)definite matrix A factorised once for repeated solves A⁻¹B, in float64.

    ``exact`` and ``ridge``: Cholesky, or :class:`UpdateSolveError` when A is not positive definite. ``pinv``:
    Cholesky when ``bounds`` = (lower, upper) on A's eigenvalues prove every eigenvalue is above rcond·λ_max
    (lower > rcond·upper), else the eigenvectors with eigenvalue above rcond·λ_max (a warning gives the rank, or
    the condition number when it exceeds ``condition_warning``). ``what`` names A in messages.
    """

    def __init__(self, matrix: torch.Tensor, solver: SecondMomentSolver, where: str = "", what: str = "matrix",
                 bounds: tuple[float, float] | None = None, condition_warning: float | None = None):
        a = matrix.double()
        self.where, self.what = where, what
        self.cholesky: torch.Tensor | None = None
        self.basis: torch.Tensor | None = None
        self.kept_eigenvalues: torch.Tensor | None = None
        certified = bounds is not None and bounds[0] > solver.rcond * bounds[1]
        if solver.method != "pinv" or certified:
            factor, info = torch.linalg.cholesky_ex(a)
            if int(info) == 0:
                self.cholesky = factor
                return
            if solver.method != "pinv":
                raise UpdateSolveError(
                    f"{where}: the {what} is not positive definite (Cholesky stops at column {int(info) - 1} of "
                    f"{a.shape[0]}): C is singular or nearly so (FFN neurons that never fire, or dependent ones), "
                    f"so solver method '{solver.method}' has no solution; choose solver method 'ridge' "
                    "(C + ε·λ_max·I, option ridge) or 'pinv' (the pseudo-inverse, option rcond)")
        eigenvalues, eigenvectors = torch.linalg.eigh(a)
        if not torch.isfinite(eigenvalues).all() or eigenvalues.max() <= 0:
            raise UpdateSolveError(f"{where}: the {what} is not positive semi-definite (largest eigenvalue "
                                   f"{float(eigenvalues.max()):.3g}); the statistics are degenerate")
        keep = eigenvalues > solver.rcond * eigenvalues.max()
        if not keep.all():
            warnings.warn(f"{where}: singular {what} (numerical rank {int(keep.sum())} of {a.shape[0]}); using the "
                          f"minimum-norm (pseudo-inverse) solution, rcond {solver.rcond:g}", stacklevel=3)
        elif condition_warning is not None and eigenvalues.max() / eigenvalues.min() > condition_warning:
            warnings.warn(f"{where}: the {what} is ill-conditioned (condition number "
                          f"{float(eigenvalues.max() / eigenvalues.min()):.2e} > {condition_warning:.0e}); "
                          "raise the preservation weight λ", stacklevel=3)
        self.basis, self.kept_eigenvalues = eigenvectors[:, keep], eigenvalues[keep]

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """X = A⁻¹B (the minimum-norm solution for ``pinv`` on a singular A), float64."""
        b = rhs.double()
        if self.cholesky is not None:
            return torch.cholesky_solve(b, self.cholesky)
        return self.basis @ ((self.basis.T @ b) / self.kept_eigenvalues[:, None])

    def inverse(self) -> torch.Tensor:
        """A⁻¹ (A⁺ for ``pinv`` on a singular A), float64."""
        if self.cholesky is not None:
            return torch.cholesky_inverse(self.cholesky)
        return (self.basis / self.kept_eigenvalues) @ self.basis.T


def solve_psd(matrix: torch.Tensor, rhs: torch.Tensor, where: str = "", solver: SecondMomentSolver | None = None,
              bounds: tuple[float, float] | None = None, what: str = "matrix") -> torch.Tensor:
    """X = A⁻¹B for a symmetric positive semi-definite A, in float64, as ``solver`` decides (:class:`Factorisation`)."""
    return Factorisation(matrix, solver or SecondMomentSolver(), where, what, bounds).solve(rhs)


class PreparedMoment:
    """One layer's C, its eigenvalues (one float64 eigendecomposition) and, per solver, the factorisation of C.

    The editor keeps one per edited layer for the whole run: C is measured on the unedited model and does not
    change with the edits, so its factorisation stays valid until the statistics are loaded again (a new object).
    A cached factorisation belongs to this C and to one solver setting (the cache key).
    """

    def __init__(self, second_moment: torch.Tensor, where: str = "", eigenvalues: torch.Tensor | None = None):
        if second_moment.ndim != 2 or second_moment.shape[0] != second_moment.shape[1]:
            raise ValueError(f"{where}: the second moment C must be square, got {tuple(second_moment.shape)}")
        if not torch.isfinite(second_moment).all():
            raise UpdateSolveError(f"{where}: the second moment contains NaN or inf")
        self.matrix, self.where = second_moment, where
        self.eigenvalues = torch.linalg.eigvalsh(second_moment.double()) if eigenvalues is None else eigenvalues
        self._factorisations: dict[SecondMomentSolver, Factorisation] = {}

    def to(self, device) -> PreparedMoment:
        """The same C on ``device`` (eigenvalues kept, no factorisation)."""
        return PreparedMoment(self.matrix.to(device), self.where, self.eigenvalues.to(device))

    def shift(self, solver: SecondMomentSolver) -> float:
        """What ``ridge`` adds to C's diagonal: ε·λ_max(C); 0 for the other methods."""
        return solver.ridge * float(self.eigenvalues[-1]) if solver.method == "ridge" else 0.0

    def float64(self, solver: SecondMomentSolver) -> torch.Tensor:
        """C in float64 as the methods use it (C + ε·λ_max·I for ``ridge``)."""
        c = self.matrix.double()
        shift = self.shift(solver)
        return c + shift * torch.eye(c.shape[0], dtype=c.dtype, device=c.device) if shift else c

    def bounds(self, solver: SecondMomentSolver) -> tuple[float, float]:
        """The smallest and largest eigenvalue of :meth:`float64`."""
        shift = self.shift(solver)
        return float(self.eigenvalues[0]) + shift, float(self.eigenvalues[-1]) + shift

    def factorisation(self, solver: SecondMomentSolver) -> Factorisation:
        """C (as :meth:`float64`) factorised for ``solver``; computed once per solver setting."""
        if solver not in self._factorisations:
            self._factorisations[solver] = Factorisation(self.float64(solver), solver, self.where, "second moment C",
                                                         self.bounds(solver))
        return self._factorisations[solver]

    def check(self, solver: SecondMomentSolver) -> None:
        """Refuse, before any edit, a C that ``exact`` cannot solve with (not positive definite): a system λC + KKᵀ
        built on it fails too once the keys leave out C's null space (the keys of neurons that never fire are 0)."""
        if solver.method == "exact":
            Factorisation(self.float64(solver), solver, self.where, "second moment C", self.bounds(solver))

    def forget_factorisations(self) -> None:
        """Drop the cached factorisations (the next solve factorises C again)."""
        self._factorisations.clear()

    def conditioning(self, solver: SecondMomentSolver) -> dict:
        """How ill-conditioned C is: its extreme eigenvalues, their ratio, the condition number (None when the
        smallest eigenvalue is ≤ 0, i.e. infinite), the eigenvalues at or below the solver's cut-off·λ_max and
        the keys that are 0 on every token (FFN neurons that never fire)."""
        smallest, largest = float(self.eigenvalues[0]), float(self.eigenvalues[-1])
        return {"dimension": self.matrix.shape[0], "smallest_eigenvalue": smallest, "largest_eigenvalue": largest,
                "smallest_to_largest": smallest / largest if largest > 0 else None,
                "condition_number": largest / smallest if smallest > 0 else None,
                "cutoff": solver.cutoff, "below_cutoff": int((self.eigenvalues <= solver.cutoff * largest).sum()),
                "zero_keys": int((self.matrix.diagonal() == 0).sum()),
                **({"ridge_added": self.shift(solver)} if solver.method == "ridge" else {})}


def prepared(second_moment: torch.Tensor | PreparedMoment, where: str = "") -> PreparedMoment:
    """``second_moment`` as a :class:`PreparedMoment` (a tensor is prepared now: one eigendecomposition)."""
    return second_moment if isinstance(second_moment, PreparedMoment) else PreparedMoment(second_moment, where)


def solver_report(moments: dict[int, PreparedMoment], solver: SecondMomentSolver) -> dict:
    """The run record of the solver (``metrics.json`` ``editor_report.second_moment_solver``): the settings and,
    per layer, how ill-conditioned C was (:meth:`PreparedMoment.conditioning`)."""
    return {**asdict(solver), "layers": {layer: moment.conditioning(solver) for layer, moment in moments.items()}}
