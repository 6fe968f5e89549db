import pytest
import torch

from lit_edit.editing.rank_one import rank_one_update, rome_direction


def test_rank_one_update_maps_the_key_to_the_value_exactly():
    g = torch.Generator().manual_seed(0)
    d, m = 5, 9
    w, b = torch.randn(d, m, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    k_star, k_mean = torch.randn(m, generator=g, dtype=torch.float64), torch.randn(m, generator=g, dtype=torch.float64)
    base = torch.randn(m, 3 * m, generator=g, dtype=torch.float64)
    c = base @ base.T / (3 * m)
    v_star = torch.randn(d, generator=g, dtype=torch.float64)
    o_star = w @ k_star + b
    for second_moment in (c, None):
        u = rome_direction(k_mean, second_moment)
        delta = rank_one_update(v_star - o_star, k_star, u)
        torch.testing.assert_close((w + delta) @ k_star + b, v_star, rtol=1e-12, atol=1e-12)
        assert torch.linalg.matrix_rank(delta) == 1
    # closed form with C⁻¹ written out
    c_inv_k = torch.linalg.inv(c) @ k_mean
    expected = torch.outer(v_star - o_star, c_inv_k) / (c_inv_k @ k_star)
    torch.testing.assert_close(rank_one_update(v_star - o_star, k_star, rome_direction(k_mean, c)), expected)


def test_orthogonal_key_is_refused():
    with pytest.raises(FloatingPointError, match="layer 2"):
        rank_one_update(torch.ones(3), torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), where="layer 2")
