"""Least squares over every edit so far, with an incremental inverse (D4S, COMEBA-HK; docs/methods.md §7, §8.1, §12.4).

For one edited layer, the methods that remember earlier edits keep

    A_n = λC + Σ_{i≤n} K_i K_iᵀ        (COMEBA-HK eq. 14–15: C_accu; D4S: right_cache + λC)

and need, at step n, the *gain* G_n = K_nᵀ A_n⁻¹ ∈ R^{N×m}: the update of a weight whose target is to
fit every key so far is then

    ΔW_n = (R_n − W_{n−1}K_n) G_n                                            (COMEBA-HK eq. 13; recursive LS)

where W_{n−1}K_n is what the current change already gives for the new keys. With S_n = Σ R_i K_iᵀ this
gives exactly W_n = S_n A_n⁻¹ (the batch solution of D4S), because S_{n−1}A_{n−1}⁻¹ = W_{n−1}.

A full solve costs O(m³) per step. :class:`AccumulatedKeys` keeps A_n⁻¹ in float64 and updates it with
the Woodbury identity (rank N, exact):

    Y = A_{n−1}⁻¹ K,  S = I + KᵀY,  A_n⁻¹ = A_{n−1}⁻¹ − Y S⁻¹ Yᵀ,  G_n = S⁻¹ Yᵀ,

which costs O(m²N). Rounding accumulates over many steps, so the inverse is rebuilt from λC + ΣKKᵀ
every ``refactor_every`` updates. With ``incremental=False`` every step solves A_n afresh (the
reference's behaviour; the benchmark ``bench/accumulated_solve.py`` compares the two). A singular A (C of a
layer with FFN neurons that never fire) is handled as the second-moment solver says (``solver.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lit_edit.editing.memit import MemitHyperparams
from lit_edit.editing.solver import Factorisation, PreparedMoment, SecondMomentSolver, UpdateSolveError


@dataclass
class AccumulatedHyperparams(MemitHyperparams):
    """The settings of the methods that solve over every edit so far (D4S, COMEBA-HK): MEMIT's
    (:class:`~lit_edit.editing.memit.MemitHyperparams`, with the defaults of the papers: layers 3..8, λ = 15000) and
    how A_n⁻¹ is kept (:class:`AccumulatedKeys`).

    Attributes:
        incremental: keep A⁻¹ by Woodbury updates (True) or solve afresh at every step (the reference).
        refactor_every: rebuild A⁻¹ from the sums after this many incremental steps.
    """

    layers: tuple[int, ...] = (3, 4, 5, 6, 7, 8)
    preservation_weight: float = 15000.0
    incremental: bool = True
    refactor_every: int = 100


class AccumulatedKeys:
    """A_n = λC + Σ K_iK_iᵀ for one layer and the gains G_n = K_nᵀA_n⁻¹ (see the module docstring).

    Args:
        preserved: λC, ``[m, m]`` (the weighted second moment of the unedited keys).
        incremental: keep A⁻¹ by Woodbury updates (True) or solve A_n at every step (False).
        refactor_every: rebuild A⁻¹ from the sums after this many incremental updates.
        condition_warning: warn when the condition number of A (checked at every rebuild) exceeds this.
        where: a label for messages (e.g. ``"layer 3"``).
        solver: how A is inverted or solved (``solver.py``); ``pinv`` rebuilds A⁻¹ from an eigendecomposition.
        preserved_bounds: the smallest and largest eigenvalue of λC, if known (:meth:`from_moment`): they let
            ``pinv`` solve a full step (``incremental=False``) by Cholesky when no eigenvalue can be below the cut-off.
    """

    def __init__(self, preserved: torch.Tensor, incremental: bool = True, refactor_every: int = 100,
                 condition_warning: float = 1e12, where: str = "", solver: SecondMomentSolver | None = None,
                 preserved_bounds: tuple[float, float] | None = None):
        if preserved.ndim != 2 or preserved.shape[0] != preserved.shape[1]:
            raise ValueError(f"{where}: λC must be square, got {tuple(preserved.shape)}")
        self.where = where
        self.incremental = incremental
        self.refactor_every = refactor_every
        self.condition_warning = condition_warning
        self.solver = solver or SecondMomentSolver()
        self.preserved_bounds = preserved_bounds
        self.preserved = preserved.double()
        self.key_sum = torch.zeros_like(self.preserved)       # Σ K_i K_iᵀ
        self.n_updates = 0
        self.since_refactor = 0
        self._inverse: torch.Tensor | None = None

    @classmethod
    def from_moment(cls, moment: PreparedMoment, preservation_weight: float, solver: SecondMomentSolver,
                    incremental: bool = True, refactor_every: int = 100, where: str = "") -> AccumulatedKeys:
        """A_0 = λC of one layer's prepared C (C + ε·λ_max·I for ``ridge``), with the bounds of its eigenvalues."""
        smallest, largest = moment.bounds(solver)
        return cls(preservation_weight * moment.float64(solver), incremental, refactor_every, where=where,
                   solver=solver, preserved_bounds=(preservation_weight * smallest, preservation_weight * largest))

    @property
    def matrix(self) -> torch.Tensor:
        """A_n = λC + ΣKKᵀ."""
        return self.preserved + self.key_sum

    def inverse(self) -> torch.Tensor:
        """A_n⁻¹ (rebuilt from the sums when missing)."""
        if self._inverse is None:
            self.refactor()
        return self._inverse

    def refactor(self) -> None:
        """Rebuild A⁻¹ from λC + ΣKKᵀ (``pinv``: one float64 eigendecomposition, checking the conditioning; ``exact``
        and ``ridge``: Cholesky)."""
        a = self.matrix
        self._inverse = Factorisation((a + a.T) / 2, self.solver, self.where, "accumulated matrix",
                                      condition_warning=self.condition_warning).inverse()
        self.since_refactor = 0

    def add(self, keys: torch.Tensor) -> torch.Tensor:
        """Add the N keys K (``[m, N]``) to A and return the gain G = Kᵀ A_n⁻¹ (``[N, m]``, float64)."""
        k = keys.double()
        if k.ndim != 2 or k.shape[0] != self.preserved.shape[0]:
            raise ValueError(f"{self.where}: keys must be [m={self.preserved.shape[0]}, N], got {tuple(keys.shape)}")
        if not torch.isfinite(k).all():
            raise UpdateSolveError(f"{self.where}: the keys contain NaN or inf")
        self.key_sum += k @ k.T
        self.n_updates += 1
        if not self.incremental:
            self._inverse = None
            return self._solve_gain(k)
        if self._inverse is None or self.since_refactor + 1 >= self.refactor_every:
            self.refactor()
            return (k.T @ self._inverse)
        y = self._inverse @ k                                      # A_{n−1}⁻¹ K
        s = torch.eye(k.shape[1], dtype=k.dtype, device=k.device) + k.T @ y
        gain = torch.linalg.solve(s, y.T)                          # S⁻¹ Yᵀ = Kᵀ A_n⁻¹
        self._inverse = self._inverse - y @ gain
        self._inverse = (self._inverse + self._inverse.T) / 2
        self.since_refactor += 1
        return gain

    def _solve_gain(self, k: torch.Tensor) -> torch.Tensor:
        return self.solve(k).T

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """A_n⁻¹ B by a fresh factorisation of A_n (what ``incremental=False`` does at every step), float64."""
        a = self.matrix
        bounds = None
        if self.preserved_bounds is not None:   # λ_min(A) ≥ λ_min(λC), λ_max(A) ≤ λ_max(λC) + tr(ΣKKᵀ)
            bounds = (self.preserved_bounds[0], self.preserved_bounds[1] + float(self.key_sum.trace()))
        return Factorisation((a + a.T) / 2, self.solver, f"{self.where}: λC + ΣKKᵀ", bounds=bounds).solve(rhs)

    def state_dict(self) -> dict:
        return {"preserved": self.preserved, "key_sum": self.key_sum,
                "n_updates": torch.tensor(self.n_updates), "since_refactor": torch.tensor(self.since_refactor),
                **({"inverse": self._inverse} if self._inverse is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        if state["preserved"].shape != self.preserved.shape:
            raise ValueError(f"{self.where}: the saved λC has shape {tuple(state['preserved'].shape)}, this layer's "
                             f"is {tuple(self.preserved.shape)}: the state comes from another model or layer")
        if not torch.allclose(state["preserved"].to(self.preserved), self.preserved, rtol=1e-6, atol=0):
            raise ValueError(f"{self.where}: the saved λC differs from this run's (another λ, corpus or model)")
        device = self.preserved.device            # a state read on the CPU joins this layer's device
        self.key_sum = state["key_sum"].to(device=device, dtype=torch.float64).clone()
        self.n_updates = int(state["n_updates"])
        self.since_refactor = int(state["since_refactor"])
        self._inverse = (state["inverse"].to(device=device, dtype=torch.float64).clone() if "inverse" in state
                         else None)
