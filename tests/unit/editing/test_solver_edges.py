"""Edges of the second-moment solver, the rank-one and the least-squares update (lit_edit/editing/solver.py,
rank_one.py, least_squares.py): thresholds on both sides, eigenvalue cut-offs that depend on the scale, the labels
of every error message, and bounds that decide Cholesky or the pseudo-inverse. Expected values are written out from
the definitions (diagonal matrices whose inverses and eigenvalues are read off, torch's SVD pseudo-inverse)."""

import warnings

import pytest
import torch

from lit_edit.editing.least_squares import UpdateSolveError, least_squares_update
from lit_edit.editing.rank_one import rank_one_update, rome_direction
from lit_edit.editing.solver import Factorisation, PreparedMoment, SecondMomentSolver, prepared, solve_psd

PINV = SecondMomentSolver("pinv")


def _diag(*values: float) -> torch.Tensor:
    return torch.diag(torch.tensor(values, dtype=torch.float64))


@pytest.mark.parametrize("zero", ["key", "direction"])
def test_a_zero_key_or_direction_is_refused_not_divided_by(zero):
    key, direction = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    (key if zero == "key" else direction).zero_()
    with pytest.raises(FloatingPointError, match="layer 4: uᵀk\\* = 0: the key is orthogonal to the update direction"):
        rank_one_update(torch.ones(2, dtype=torch.float64), key, direction, where="layer 4")


@pytest.mark.parametrize("key_scale, direction_scale", [(1e6, 1.0), (1.0, 1e6), (1e-6, 1.0), (1.0, 1e-6)])
def test_the_orthogonality_test_depends_on_the_angle_not_the_scale(key_scale, direction_scale):
    """cos(u, k) = 1e-14 is refused and 1e-9 accepted whatever the norms of u and k."""
    direction = direction_scale * torch.tensor([1.0, 0.0], dtype=torch.float64)
    for cosine, refused in ((1e-14, True), (1e-9, False)):
        key = key_scale * torch.tensor([cosine, 1.0], dtype=torch.float64)
        if refused:
            with pytest.raises(FloatingPointError):
                rank_one_update(torch.ones(2, dtype=torch.float64), key, direction)
        else:
            delta = rank_one_update(torch.ones(2, dtype=torch.float64), key, direction)
            torch.testing.assert_close(delta @ key, torch.ones(2, dtype=torch.float64))


def test_rome_direction_names_rome_in_its_errors():
    with pytest.raises(UpdateSolveError, match="^ROME: the second moment contains NaN or inf"):
        rome_direction(torch.ones(2), torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))


@pytest.mark.parametrize("name, index", [("residuals", 0), ("keys", 1), ("second moment", 2)])
def test_least_squares_names_the_input_that_is_not_finite(name, index):
    tensors = [torch.ones(2, 1), torch.ones(3, 1), torch.eye(3)]
    tensors[index][0, 0] = float("inf")
    with pytest.raises(UpdateSolveError, match=f"^layer 1: the {name} contain NaN or inf$"):
        least_squares_update(*tensors, preservation_weight=1.0, where="layer 1")


def test_an_update_that_overflows_is_refused_with_its_label():
    """R Kᵀ (λC + KKᵀ)⁻¹ = 1e300 · 1e-10 / (1e-30 + 1e-20) ≈ 1e310: beyond float64 from finite inputs."""
    residuals, keys = torch.tensor([[1e300]], dtype=torch.float64), torch.tensor([[1e-10]], dtype=torch.float64)
    with pytest.raises(UpdateSolveError, match="^layer 3: the solved update is not finite$"):
        least_squares_update(residuals, keys, torch.tensor([[1e-30]], dtype=torch.float64), 1.0, where="layer 3")


def test_least_squares_takes_a_prepared_moment_and_gives_what_the_tensor_gives():
    c = _diag(2.0, 3.0, 5.0)
    residuals, keys = torch.tensor([[1.0, 2.0]], dtype=torch.float64), _diag(1.0, 1.0, 0.0)[:, :2]
    expected = residuals @ keys.T @ torch.linalg.inv(c + keys @ keys.T)
    for moment in (c, PreparedMoment(c, "layer 0")):
        torch.testing.assert_close(least_squares_update(residuals, keys, moment, 1.0), expected)


@pytest.mark.parametrize("rcond", [0.1, 0.01])
def test_least_squares_pinv_drops_what_the_bounds_cannot_certify(rcond):
    """A = λC + KKᵀ with its small eigenvalue (≈ 0.051) below rcond·λ_max(A) (λ_max ≈ 10): the pseudo-inverse drops
    it. Bounds that underestimate λ_max(A) (‖K‖² left out, or counted as the number of entries) would certify A and
    keep it."""
    c = _diag(1.0, 0.05)
    keys, residuals = torch.tensor([[3.0], [0.1]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    a = c + keys @ keys.T
    assert torch.linalg.eigvalsh(a)[0] < rcond * torch.linalg.eigvalsh(a)[-1]
    expected = residuals @ keys.T @ torch.linalg.pinv(a, rtol=rcond, hermitian=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        delta = least_squares_update(residuals, keys, c, 1.0, solver=SecondMomentSolver("pinv", rcond=rcond))
    torch.testing.assert_close(delta, expected)
    assert not torch.allclose(delta, residuals @ keys.T @ torch.linalg.inv(a))


def test_rcond_zero_is_allowed_and_one_is_refused():
    assert SecondMomentSolver("pinv", rcond=0.0).rcond == 0.0
    with pytest.raises(ValueError, match="solver.rcond must be in"):
        SecondMomentSolver("pinv", rcond=1.0)


def test_pinv_with_rcond_zero_drops_an_exact_zero_eigenvalue():
    x = solve_psd(_diag(2.0, 0.0), torch.tensor([[4.0], [1.0]], dtype=torch.float64),
                  solver=SecondMomentSolver("pinv", rcond=0.0))
    torch.testing.assert_close(x, torch.tensor([[2.0], [0.0]], dtype=torch.float64))


def test_pinv_cutoff_is_relative_to_the_largest_eigenvalue():
    """diag(100, 0.5) at rcond 0.01: the cut-off is 1, so 0.5 is dropped; a small matrix diag(0.5, 0.25) keeps all."""
    b = torch.ones(2, 1, dtype=torch.float64)
    solver = SecondMomentSolver("pinv", rcond=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.testing.assert_close(solve_psd(_diag(100.0, 0.5), b, solver=solver),
                                   torch.tensor([[0.01], [0.0]], dtype=torch.float64))
    torch.testing.assert_close(solve_psd(_diag(0.5, 0.25), b), torch.tensor([[2.0], [4.0]], dtype=torch.float64))


def test_pinv_falls_back_to_the_pseudo_inverse_when_bounds_claim_too_much():
    b = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x = Factorisation(_diag(2.0, 0.0), PINV, bounds=(1.0, 2.0)).solve(b)
    torch.testing.assert_close(x, torch.tensor([[0.5], [0.0]], dtype=torch.float64))


def test_exact_names_the_column_where_cholesky_stops():
    with pytest.raises(UpdateSolveError, match=r"^layer 5: the test matrix is not positive definite \(Cholesky "
                       r"stops at column 2 of 3\).*choose solver method 'ridge' \(C \+ ε·λ_max·I, option ridge\) "
                       r"or 'pinv' \(the pseudo-inverse, option rcond\)$"):
        solve_psd(_diag(1.0, 1.0, -1.0), torch.ones(3, 1), "layer 5", SecondMomentSolver("exact"), what="test matrix")


def test_the_condition_warning_fires_strictly_above_its_threshold():
    a = _diag(1.0, 0.25)                       # condition number exactly 4
    with pytest.warns(UserWarning, match=r"^layer 6: the matrix is ill-conditioned \(condition number 4\.00e\+00 > "
                      r"2e\+00\); raise the preservation weight λ$"):
        Factorisation(a, PINV, "layer 6", condition_warning=2.0)
    for threshold in (4.0, None):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Factorisation(a, PINV, "layer 6", condition_warning=threshold)


def test_a_second_moment_that_is_not_a_square_matrix_is_refused():
    for shape in ((3,), (2, 3), (2, 2, 3)):
        with pytest.raises(ValueError, match=rf"^layer 7: the second moment C must be square, got \({shape[0]},"):
            PreparedMoment(torch.ones(shape), "layer 7")


def test_bounds_are_the_extreme_eigenvalues_plus_the_ridge():
    moment = PreparedMoment(_diag(4.0, 1.0, 2.0))
    assert moment.bounds(PINV) == (1.0, 4.0)
    assert moment.bounds(SecondMomentSolver("ridge", ridge=0.1)) == pytest.approx((1.4, 4.4))


def test_the_conditioning_record_of_hand_made_moments():
    pinv = SecondMomentSolver("pinv", rcond=0.01)
    record = PreparedMoment(_diag(0.5, 100.0, 0.0)).conditioning(pinv)
    assert record == {"dimension": 3, "smallest_eigenvalue": 0.0, "largest_eigenvalue": 100.0,
                      "smallest_to_largest": 0.0, "condition_number": None, "cutoff": 0.01, "below_cutoff": 2,
                      "zero_keys": 1}
    small = PreparedMoment(_diag(0.5, 0.25)).conditioning(pinv)
    assert small["smallest_to_largest"] == 0.5 and small["condition_number"] == 2.0 and small["below_cutoff"] == 0
    zero = PreparedMoment(torch.zeros(2, 2, dtype=torch.float64)).conditioning(pinv)
    assert zero["smallest_to_largest"] is None and zero["condition_number"] is None and zero["below_cutoff"] == 2
    at_cutoff = PreparedMoment(_diag(1.0, 1e-10)).conditioning(PINV)   # 1e-10 · 1 is exactly the cut-off
    assert at_cutoff["below_cutoff"] == 1


def test_preparing_a_tensor_keeps_its_label():
    with pytest.raises(UpdateSolveError, match="^layer 8: the second moment contains NaN or inf"):
        prepared(torch.eye(2) * float("nan"), "layer 8")


def test_check_refuses_for_exact_only_a_moment_cholesky_cannot_factorise():
    singular = PreparedMoment(_diag(1.0, 0.0), "layer 9")
    with pytest.raises(UpdateSolveError, match="^layer 9: the second moment C is not positive definite"):
        singular.check(SecondMomentSolver("exact"))
    singular.check(SecondMomentSolver("ridge"))
    singular.check(PINV)
    PreparedMoment(_diag(1.0, 2.0)).check(SecondMomentSolver("exact"))


def test_moving_a_moment_keeps_its_matrix_label_and_eigenvalues():
    moment = PreparedMoment(_diag(3.0, 1.0), "layer 10")
    moved = moment.to("cpu")
    assert moved is not moment and moved.where == "layer 10"
    assert torch.equal(moved.matrix, moment.matrix) and torch.equal(moved.eigenvalues, moment.eigenvalues)
