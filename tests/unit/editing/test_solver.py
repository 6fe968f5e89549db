"""The second-moment solver (lit_edit/editing/solver.py) against direct computations, on well-conditioned,
singular and positive-definite-but-ill-conditioned second moments, in every method that solves with C."""

import warnings

import pytest
import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.alphaedit import alphaedit_update
from lit_edit.editing.least_squares import UpdateSolveError, least_squares_update
from lit_edit.editing.rank_one import rome_direction
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, solver_report

EXACT, RIDGE, PINV = SecondMomentSolver("exact"), SecondMomentSolver("ridge", ridge=1e-6), SecondMomentSolver("pinv")
M, DEAD = 10, [2, 7]


def _second_moment(kind: str, seed: int = 0) -> torch.Tensor:
    """C [M, M] float64: ``well`` (random, well-conditioned), ``singular`` (two dead neurons: their rows and columns
    are 0) or ``weak`` (positive definite, one eigenvalue at 1e-13 of the largest: Cholesky succeeds, the
    pseudo-inverse at rcond 1e-10 drops it)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(M, 4 * M, generator=g, dtype=torch.float64)
    c = base @ base.T / (4 * M)
    if kind == "singular":
        c[DEAD, :] = 0
        c[:, DEAD] = 0
    elif kind == "weak":
        eigenvalues, vectors = torch.linalg.eigh(c)
        eigenvalues[0] = 1e-13 * eigenvalues[-1]
        c = vectors @ torch.diag(eigenvalues) @ vectors.T
    return (c + c.T) / 2


def _keys(kind: str, n: int = 3, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(M, n, generator=g, dtype=torch.float64)
    if kind == "singular":
        k[DEAD] = 0          # a dead neuron's key entry is 0 on every token, the edit's too
    return torch.randn(6, n, generator=g, dtype=torch.float64), k


def _direct_solve(a: torch.Tensor, b: torch.Tensor, solver: SecondMomentSolver) -> torch.Tensor:
    """A⁻¹B by an independent route: LU for exact/ridge, torch's SVD pseudo-inverse for pinv."""
    if solver.method == "pinv":
        return torch.linalg.pinv(a, rtol=solver.rcond, hermitian=True) @ b
    return torch.linalg.solve(a, b)


def _ridged(c: torch.Tensor, solver: SecondMomentSolver) -> torch.Tensor:
    if solver.method != "ridge":
        return c
    return c + solver.ridge * torch.linalg.eigvalsh(c)[-1] * torch.eye(M, dtype=torch.float64)


@pytest.mark.parametrize("kind", ["well", "singular"])
@pytest.mark.parametrize("solver", [EXACT, RIDGE, PINV], ids=lambda s: s.method)
def test_memit_update_equals_the_direct_solution(kind, solver):
    c = _second_moment(kind)
    r, k = _keys(kind)
    lam = 3.0
    if kind == "singular" and solver.method == "exact":
        with pytest.raises(UpdateSolveError, match="layer 1: λC \\+ KKᵀ: the matrix is not positive definite.*"
                                                   "choose solver method 'ridge'.*or 'pinv'"):
            least_squares_update(r, k, c, lam, where="layer 1", solver=solver)
        return
    a = lam * _ridged(c, solver) + k @ k.T
    expected = _direct_solve(a, k @ r.T, solver).T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # pinv on the singular C warns with its rank (tested below)
        delta = least_squares_update(r, k, c, lam, where="layer 1", solver=solver)
    torch.testing.assert_close(delta, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["well", "singular"])
@pytest.mark.parametrize("solver", [EXACT, RIDGE, PINV], ids=lambda s: s.method)
def test_rome_direction_equals_the_direct_solution(kind, solver):
    c = _second_moment(kind)
    k_mean = _keys("well")[1][:, 0]
    if kind == "singular" and solver.method == "exact":
        with pytest.raises(UpdateSolveError, match="layer 4: the second moment C is not positive definite"):
            rome_direction(k_mean, PreparedMoment(c, "layer 4"), solver)
        return
    expected = _direct_solve(_ridged(c, solver), k_mean[:, None], solver)[:, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        u = rome_direction(k_mean, c, solver)
    torch.testing.assert_close(u, expected, rtol=1e-8, atol=1e-9)


def test_pinv_drops_eigenvalues_below_the_cutoff_even_when_cholesky_succeeds():
    """A positive definite C with an eigenvalue at 1e-13 of the largest: Cholesky factorises it, but the direction
    is below rcond = 1e-10, so the default solver must give the pseudo-inverse's answer, not Cholesky's."""
    c = _second_moment("weak")
    assert int(torch.linalg.cholesky_ex(c).info) == 0
    k_mean = _keys("well")[1][:, 0]
    with pytest.warns(UserWarning, match="numerical rank 9 of 10"):
        u = rome_direction(k_mean, c)
    torch.testing.assert_close(u, torch.linalg.pinv(c, rtol=1e-10, hermitian=True) @ k_mean, rtol=1e-8, atol=1e-9)
    assert u.norm() < 1e-6 * torch.linalg.solve(c, k_mean).norm()


@pytest.mark.parametrize("incremental", [True, False])
@pytest.mark.parametrize("kind", ["well", "singular"])
@pytest.mark.parametrize("solver", [EXACT, RIDGE, PINV], ids=lambda s: s.method)
def test_accumulated_gains_equal_the_direct_solution(kind, solver, incremental):
    """D4S and COMEBA-HK: A_n = λ(C, ridged for ``ridge``) + ΣKKᵀ; the gain Kᵀ A_n⁻¹ against a direct solve."""
    c = _second_moment(kind)
    lam = 2.0
    moment = PreparedMoment(c, "layer 3")
    if kind == "singular" and solver.method == "exact":
        with pytest.raises(UpdateSolveError, match="layer 3.*not positive definite.*'ridge'"):
            AccumulatedKeys.from_moment(moment, lam, solver, incremental, where="layer 3").add(_keys(kind)[1])
        return
    acc = AccumulatedKeys.from_moment(moment, lam, solver, incremental, refactor_every=3, where="layer 3")
    all_keys = []
    for step in range(5):
        k = _keys(kind, n=2, seed=10 + step)[1]
        all_keys.append(k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gain = acc.add(k)
        stacked = torch.cat(all_keys, 1)
        a = lam * _ridged(c, solver) + stacked @ stacked.T
        torch.testing.assert_close(gain, _direct_solve(a, k, solver).T, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver", [EXACT, RIDGE, PINV], ids=lambda s: s.method)
def test_alphaedit_without_l2_follows_the_solver(solver):
    """With α = 0 the reduced system UᵀKKᵀU has rank N < r: exact refuses it, pinv gives the minimum-norm
    solution (ridge solves C-free systems as exact: its ε acts on C, here only through the null space)."""
    g = torch.Generator().manual_seed(4)
    basis = torch.linalg.qr(torch.randn(M, 5, generator=g, dtype=torch.float64)).Q
    r, k = _keys("well", n=2)
    previous = torch.zeros(M, M, dtype=torch.float64)
    if solver.method != "pinv":
        with pytest.raises(UpdateSolveError, match="layer 2: Uᵀ G U \\+ αI: the matrix is not positive definite"):
            alphaedit_update(r, k, basis, previous, 0.0, where="layer 2", solver=solver)
        return
    reduced = basis.T @ k @ k.T @ basis
    expected = (basis @ torch.linalg.pinv(reduced, rtol=1e-10, hermitian=True) @ basis.T @ k @ r.T).T
    with pytest.warns(UserWarning, match="numerical rank 2 of 5"):
        delta = alphaedit_update(r, k, basis, previous, 0.0, where="layer 2", solver=solver)
    torch.testing.assert_close(delta, expected, rtol=1e-8, atol=1e-9)


def test_the_conditioning_record_counts_eigenvalues_against_a_direct_computation():
    c = _second_moment("singular")
    eigenvalues = torch.linalg.eigvalsh(c)
    report = solver_report({1: PreparedMoment(c, "layer 1")}, RIDGE)
    assert report["method"] == "ridge" and report["ridge"] == 1e-6 and report["rcond"] == 1e-10
    layer = report["layers"][1]
    assert layer["dimension"] == M and layer["zero_keys"] == len(DEAD)
    assert layer["below_cutoff"] == int((eigenvalues <= 1e-6 * eigenvalues[-1]).sum()) == len(DEAD)
    assert layer["condition_number"] is None or layer["condition_number"] > 1e13
    assert layer["smallest_to_largest"] == pytest.approx(float(eigenvalues[0] / eigenvalues[-1]), abs=1e-15)
    assert layer["ridge_added"] == pytest.approx(1e-6 * float(eigenvalues[-1]))
    well = PreparedMoment(_second_moment("well")).conditioning(PINV)
    assert well["below_cutoff"] == 0 and well["condition_number"] == pytest.approx(
        float(torch.linalg.cond(_second_moment("well"))), rel=1e-8)


def test_bad_solver_options_are_refused_with_the_option_named():
    with pytest.raises(ValueError, match="unknown second-moment solver method 'cholesky'.*exact.*ridge.*pinv"):
        SecondMomentSolver("cholesky")
    with pytest.raises(ValueError, match="solver.ridge must be > 0"):
        SecondMomentSolver("ridge", ridge=0.0)
    with pytest.raises(ValueError, match="solver.rcond must be in"):
        SecondMomentSolver("pinv", rcond=1.5)
