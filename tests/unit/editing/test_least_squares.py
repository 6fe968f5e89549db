import pytest
import torch

from lit_edit.editing.least_squares import UpdateSolveError, least_squares_update


def _problem(d=6, m=10, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(m, 4 * m, generator=g)
    c = base @ base.T / (4 * m)
    c = (c + c.T) / 2   # exactly symmetric: a float32 product is symmetric only up to rounding
    return torch.randn(d, n, generator=g), torch.randn(m, n, generator=g), c


def test_update_equals_the_closed_form_in_float64():
    r, k, c = _problem()
    lam = 3.0
    expected = r.double() @ k.double().T @ torch.linalg.inv(lam * c.double() + k.double() @ k.double().T)
    torch.testing.assert_close(least_squares_update(r.double(), k, c, lam), expected, rtol=1e-10, atol=1e-12)


def test_update_satisfies_the_normal_equations():
    r, k, c = _problem(seed=1)
    lam = 0.5
    delta = least_squares_update(r.double(), k.double(), c.double(), lam)
    lhs = delta @ (lam * c.double() + k.double() @ k.double().T)
    torch.testing.assert_close(lhs, r.double() @ k.double().T, rtol=1e-9, atol=1e-10)


def test_small_weight_fits_the_new_keys_almost_exactly():
    r, k, c = _problem(seed=2)
    delta = least_squares_update(r.double(), k.double(), c.double(), 1e-8)
    torch.testing.assert_close(delta @ k.double(), r.double(), rtol=1e-5, atol=1e-5)


def test_dtype_is_preserved():
    r, k, c = _problem()
    assert least_squares_update(r.float(), k, c, 1.0).dtype == torch.float32


def test_singular_statistics_give_the_minimum_norm_solution():
    """Dead neurons (a key entry that is 0 everywhere) make λC + KKᵀ singular: the update must still fit
    the normal equations, be zero in the dead directions, and warn."""
    r, k, c = _problem(seed=3)
    dead = [2, 7]
    k[dead] = 0
    c[dead, :] = 0
    c[:, dead] = 0
    with pytest.warns(UserWarning, match="layer 5: λC \\+ KKᵀ: singular matrix \\(numerical rank 8 of 10\\)"):
        delta = least_squares_update(r.double(), k.double(), c.double(), 2.0, where="layer 5")
    assert delta[:, dead].abs().max() < 1e-12
    lhs = delta @ (2.0 * c.double() + k.double() @ k.double().T)
    torch.testing.assert_close(lhs, r.double() @ k.double().T, rtol=1e-8, atol=1e-9)


def test_nan_and_degenerate_inputs_are_refused_with_the_layer_named():
    r, k, c = _problem()
    r[0, 0] = float("nan")
    with pytest.raises(UpdateSolveError, match="layer 3: the residuals contain NaN"):
        least_squares_update(r, k, c, 1.0, where="layer 3")
    r, k, _ = _problem()
    with pytest.raises(UpdateSolveError, match="layer 4: .*not positive semi-definite"):
        least_squares_update(r, torch.zeros_like(k), torch.zeros(10, 10), 1.0, where="layer 4")
    with pytest.raises(ValueError, match="shapes do not fit"):
        least_squares_update(r, k[:5], torch.eye(10), 1.0)
