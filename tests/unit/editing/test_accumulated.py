"""The accumulated least squares of D4S/COMEBA-HK against direct computations."""

import warnings

import pytest
import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.alphaedit import alphaedit_update, null_space_basis


def _spd(m, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 3 * m, generator=g, dtype=torch.float64)
    return scale * x @ x.T / (3 * m)


@pytest.mark.parametrize("incremental", [True, False])
def test_gains_equal_a_direct_solve_and_the_recursion_gives_the_batch_solution(incremental):
    m, d = 12, 5
    g = torch.Generator().manual_seed(1)
    preserved = 4.0 * _spd(m, 0)
    acc = AccumulatedKeys(preserved, incremental=incremental, refactor_every=4)
    keys, residuals = [], []
    solution = torch.zeros(d, m, dtype=torch.float64)
    for step in range(9):
        k = torch.randn(m, 1 + step % 3, generator=g, dtype=torch.float64)
        r = torch.randn(d, k.shape[1], generator=g, dtype=torch.float64)
        keys.append(k)
        residuals.append(r)
        gain = acc.add(k)
        all_k, all_r = torch.cat(keys, 1), torch.cat(residuals, 1)
        a = preserved + all_k @ all_k.T
        torch.testing.assert_close(gain, k.T @ torch.linalg.inv(a), rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(acc.inverse(), torch.linalg.inv(a), rtol=1e-9, atol=1e-12)
        solution = solution + (r - solution @ k) @ gain                    # recursive least squares
        torch.testing.assert_close(solution, all_r @ all_k.T @ torch.linalg.inv(a), rtol=1e-9, atol=1e-12)


def test_refactorisation_happens_on_schedule_and_state_round_trips():
    acc = AccumulatedKeys(_spd(6, 2), refactor_every=3)
    g = torch.Generator().manual_seed(3)
    counts = []
    for _ in range(7):
        acc.add(torch.randn(6, 2, generator=g, dtype=torch.float64))
        counts.append(acc.since_refactor)
    assert counts == [0, 1, 2, 0, 1, 2, 0]
    copy = AccumulatedKeys(_spd(6, 2), refactor_every=3)
    copy.load_state_dict(acc.state_dict())
    k = torch.randn(6, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(copy.add(k.clone()), acc.add(k.clone()))
    with pytest.raises(ValueError, match="another λ, corpus or model"):
        AccumulatedKeys(2 * _spd(6, 2)).load_state_dict(acc.state_dict())
    with pytest.raises(ValueError, match="another model or layer"):
        AccumulatedKeys(_spd(5, 2)).load_state_dict(acc.state_dict())


def test_ill_conditioned_and_singular_matrices_are_reported():
    tiny = torch.diag(torch.tensor([1.0, 1e-8, 1.0], dtype=torch.float64))
    with pytest.warns(UserWarning, match="ill-conditioned"):
        AccumulatedKeys(tiny, condition_warning=1e6).add(torch.tensor([[1.0], [0.0], [0.0]], dtype=torch.float64))
    singular = torch.diag(torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    with pytest.warns(UserWarning, match="singular accumulated matrix"):
        gain = AccumulatedKeys(singular).add(torch.tensor([[1.0], [0.0], [2.0]], dtype=torch.float64))
    assert torch.isfinite(gain).all() and gain[0, 1] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        AccumulatedKeys(_spd(4, 0)).add(torch.ones(4, 1, dtype=torch.float64))


def test_alphaedit_update_equals_the_published_nonsymmetric_solve():
    m, d, n = 10, 4, 3
    g = torch.Generator().manual_seed(5)
    c = _spd(m, 6)
    eigenvalues = torch.linalg.eigvalsh(c)
    # midway between the 4th and 5th eigenvalue: the 4 smallest eigenvectors span the null space on any CPU (a
    # threshold equal to an eigenvalue would count it or not depending on the last bits of the eigensolver)
    threshold = float(eigenvalues[3] + eigenvalues[4]) / 2
    assert eigenvalues[4] - eigenvalues[3] > 1e-3 * eigenvalues[4]
    basis = null_space_basis(c, threshold)
    assert basis.shape == (m, 4)
    projector = basis @ basis.T
    k = torch.randn(m, n, generator=g, dtype=torch.float64)
    r = torch.randn(d, n, generator=g, dtype=torch.float64)
    previous = _spd(m, 7)
    published = torch.linalg.solve(projector @ (k @ k.T + previous) + 10.0 * torch.eye(m, dtype=torch.float64),
                                   projector @ k @ r.T).T
    torch.testing.assert_close(alphaedit_update(r, k, basis, previous, 10.0), published, rtol=1e-9, atol=1e-12)
    # the update leaves every preserved direction (the range of C outside the null space) untouched
    kept = torch.linalg.eigh(c).eigenvectors[:, 4:]
    assert alphaedit_update(r, k, basis, previous, 10.0).matmul(kept).abs().max() < 1e-10
    with pytest.raises(ValueError, match="null space of C is empty"):
        null_space_basis(c, float(eigenvalues[0]) / 2)   # half the smallest: far from any eigenvalue
