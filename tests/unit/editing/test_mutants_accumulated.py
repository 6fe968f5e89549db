"""AccumulatedKeys at its edges (docs/methods.md §7, §8.1): the shape and value checks with their messages, the
eigenvalue bounds it carries (they must bracket λC + ΣKKᵀ, or the pseudo-inverse is skipped where it must cut),
the counters, and the saved state read back bit for bit."""

from __future__ import annotations

import warnings

import pytest
import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, UpdateSolveError


def _diag(*values):
    return torch.diag(torch.tensor(values, dtype=torch.float64))


def test_a_lambda_c_that_is_not_a_square_matrix_is_refused_naming_its_shape():
    with pytest.raises(ValueError) as refused:
        AccumulatedKeys(torch.ones(3, 4, dtype=torch.float64), where="layer 3")
    assert str(refused.value) == "layer 3: λC must be square, got (3, 4)"
    with pytest.raises(ValueError) as refused:
        AccumulatedKeys(torch.ones(3, dtype=torch.float64))
    assert str(refused.value) == ": λC must be square, got (3,)"


def test_keys_of_the_wrong_shape_or_not_finite_are_refused_naming_the_layer():
    acc = AccumulatedKeys(_diag(1.0, 2.0, 3.0), where="layer 5")
    with pytest.raises(ValueError) as refused:
        acc.add(torch.ones(3, dtype=torch.float64))
    assert str(refused.value) == "layer 5: keys must be [m=3, N], got (3,)"
    with pytest.raises(ValueError, match=r"^layer 5: keys must be \[m=3, N\], got \(2, 1\)$"):
        acc.add(torch.ones(2, 1, dtype=torch.float64))
    with pytest.raises(UpdateSolveError) as refused:
        acc.add(torch.tensor([[1.0], [float("nan")], [0.0]]))
    assert str(refused.value) == "layer 5: the keys contain NaN or inf"
    assert acc.n_updates == 0


def test_the_counters_start_at_zero_and_count_every_step():
    acc = AccumulatedKeys(_diag(1.0, 2.0, 3.0))                 # incremental by default, rebuilt every 100 steps
    state = acc.state_dict()
    assert (int(state["n_updates"]), int(state["since_refactor"]), "inverse" in state) == (0, 0, False)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        acc.add(torch.randn(3, 2, generator=g, dtype=torch.float64))
    assert (acc.n_updates, acc.since_refactor) == (3, 2)
    for _ in range(98):
        acc.add(torch.randn(3, 1, generator=g, dtype=torch.float64))
    assert (acc.n_updates, acc.since_refactor) == (101, 0)          # the 101st step rebuilt A⁻¹ (100 since)
    fresh = AccumulatedKeys(_diag(1.0, 2.0, 3.0), incremental=False)
    fresh.add(torch.ones(3, 1, dtype=torch.float64))
    assert (fresh.n_updates, fresh.since_refactor) == (1, 0)


def test_from_moment_scales_c_and_brackets_its_eigenvalues_with_the_usual_defaults():
    c = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]], dtype=torch.float64)
    acc = AccumulatedKeys.from_moment(PreparedMoment(c), 4.0, SecondMomentSolver())
    torch.testing.assert_close(acc.preserved, 4.0 * c, rtol=0, atol=0)
    eigenvalues = torch.linalg.eigvalsh(4.0 * c)
    lower, upper = acc.preserved_bounds
    assert lower <= float(eigenvalues[0]) * (1 + 1e-12) and upper >= float(eigenvalues[-1]) * (1 - 1e-12)
    assert lower == pytest.approx(float(eigenvalues[0]), rel=1e-9)
    assert upper == pytest.approx(float(eigenvalues[-1]), rel=1e-9)
    assert (acc.incremental, acc.refactor_every, acc.where) == (True, 100, "")
    acc.add(torch.ones(3, 1, dtype=torch.float64))
    acc.add(torch.ones(3, 1, dtype=torch.float64))
    assert acc.since_refactor == 1                                  # the second step was a Woodbury update
    every_two = AccumulatedKeys.from_moment(PreparedMoment(c), 4.0, SecondMomentSolver(), refactor_every=2)
    assert every_two.refactor_every == 2


@pytest.mark.parametrize("weight", [1.0, 3.0])
def test_a_fresh_solve_cuts_what_the_pseudo_inverse_cuts_when_c_has_a_tiny_eigenvalue(weight):
    """λC = λ·diag(1, 1e-13): with a key of norm 2 along e0, A = diag(λ + 4, λ·1e-13), whose small eigenvalue is
    below rcond·λ_max = 1e-10·(λ + 4): the pseudo-inverse drops e1. Bounds that claimed every eigenvalue above the
    cut-off would solve by Cholesky and answer 1e13/λ there."""
    acc = AccumulatedKeys.from_moment(PreparedMoment(_diag(1.0, 1e-13)), weight, SecondMomentSolver(), False)
    acc.add(torch.tensor([[2.0], [0.0]], dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solution = acc.solve(torch.tensor([[1.0], [1.0]], dtype=torch.float64))
    torch.testing.assert_close(solution, torch.tensor([[1 / (weight + 4)], [0.0]], dtype=torch.float64))


def test_the_state_reads_back_bit_for_bit_with_or_without_the_inverse():
    g = torch.Generator().manual_seed(1)
    c = _diag(1.0, 2.0, 3.0, 4.0)
    for incremental in (True, False):
        acc = AccumulatedKeys(c, incremental=incremental, refactor_every=3)
        for _ in range(2):
            acc.add(torch.randn(4, 2, generator=g, dtype=torch.float64))
        saved = acc.state_dict()
        assert ("inverse" in saved) == incremental
        copy = AccumulatedKeys(c)
        copy.load_state_dict(saved)
        again = copy.state_dict()
        assert set(again) == set(saved)
        for name, value in saved.items():
            assert torch.equal(again[name], value) and again[name].dtype == value.dtype, name


def test_a_state_saved_in_float32_is_read_as_float64():
    c = _diag(1.0, 2.0, 3.0)
    acc = AccumulatedKeys(c)
    acc.add(torch.tensor([[1.0], [0.5], [0.25]], dtype=torch.float64))
    saved = {name: value.float() if value.is_floating_point() else value for name, value in acc.state_dict().items()}
    copy = AccumulatedKeys(c)
    copy.load_state_dict(saved)
    assert copy.key_sum.dtype == torch.float64 and copy.inverse().dtype == torch.float64
    torch.testing.assert_close(copy.key_sum, acc.key_sum, rtol=1e-7, atol=0)


def test_a_saved_lambda_c_is_compared_relatively_at_one_in_a_million_with_no_absolute_slack():
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    saved = AccumulatedKeys(c).state_dict()
    AccumulatedKeys(c * (1 + 5e-7)).load_state_dict(saved)              # within 1e-6: the same λC
    with pytest.raises(ValueError, match="differs from this run's"):
        AccumulatedKeys(c * (1 + 3e-6)).load_state_dict(saved)          # between 1e-6 and 1e-5: another λC
    shifted = c.clone()
    shifted[0, 1] = shifted[1, 0] = 5e-9                                 # a zero entry off by less than 1e-8
    with pytest.raises(ValueError, match="differs from this run's"):
        AccumulatedKeys(shifted).load_state_dict(saved)
