"""The MEND editor network (docs/methods.md §5) against values written by hand: running moments kept exactly in
float64 (counts past 2²⁴, squares of large inputs, a count of bfloat16 rows), the mean and std from two samples
on, the normalisation's ε, the low-rank layer with parameters set by hand, V's scale 1/√D, the reduction reaching
both moments, the network's defaults, its refusal of no modules and one transform per module when not shared."""

from __future__ import annotations

import math

import pytest
import torch

from lit_edit.editing.mend_network import LowRankResidual, MendNetwork, RunningMoments


def test_the_count_stays_exact_past_two_to_the_24():
    moments = RunningMoments(1)
    moments.count.fill_(2 ** 24)
    moments.update(torch.zeros(1, 1))
    assert moments.count.dtype == torch.float64 and int(moments.count) == 2 ** 24 + 1


def test_the_sum_of_squares_of_large_inputs_is_exact():
    """Rows 10000, 10001, 10002: mean 10001, unbiased variance (1 + 0 + 1)/2 = 1 (Σx² ≈ 3·10⁸ needs 29 bits)."""
    moments = RunningMoments(1)
    moments.update(torch.tensor([[10000.0], [10001.0], [10002.0]]))
    mean, std = moments.mean_std()
    assert float(mean) == 10001.0 and float(std) == 1.0


def test_bfloat16_rows_are_counted_exactly():
    moments = RunningMoments(2)
    moments.update(torch.ones(257, 2, dtype=torch.bfloat16))       # 257 needs 9 significant bits, bfloat16 has 8
    assert int(moments.count) == 257


def test_two_samples_give_their_mean_and_unbiased_std_and_normalise_with_epsilon():
    """Rows 1 and 3: μ = 2, σ = √2 (deviations ±1, n − 1 = 1); x̂ = (5 − 2)/(√2 + 1e-7)."""
    moments = RunningMoments(1)
    moments.update(torch.tensor([[1.0], [3.0]]))
    mean, std = moments.mean_std()
    assert float(mean) == 2.0 and float(std) == pytest.approx(math.sqrt(2), rel=1e-15)
    normalised = moments.normalise(torch.tensor([[5.0]], dtype=torch.float64))
    assert float(normalised) == pytest.approx(3 / (math.sqrt(2) + 1e-7), rel=1e-12)


def test_the_low_rank_layer_with_parameters_set_by_hand():
    """y = x + max(s_mode ⊙ (U V x + b) + t_mode, 0): x = (1, 2), V = (1 1), U = (1, −1)ᵀ, b = (0.5, 0.5):
    U V x + b = (3.5, −2.5); mode 1 (s = 2, t = (0.25, −10)) gives (7.25, −15) → (7.25, 0), y = (8.25, 2);
    mode 0 (s = 1, t = 0) gives (3.5, −2.5) → (3.5, 0), y = (4.5, 2)."""
    layer = LowRankResidual(2, 1, 2)
    with torch.no_grad():
        layer.down.copy_(torch.tensor([[1.0, 1.0]]))
        layer.up.copy_(torch.tensor([[1.0], [-1.0]]))
        layer.bias.copy_(torch.tensor([0.5, 0.5]))
        layer.mode_scale.weight[1] = torch.tensor([2.0, 2.0])
        layer.mode_shift.weight[1] = torch.tensor([0.25, -10.0])
    x = torch.tensor([[1.0, 2.0]])
    assert torch.equal(layer(x, 1), torch.tensor([[8.25, 2.0]]))
    assert torch.equal(layer(x, 0), torch.tensor([[4.5, 2.0]]))


def test_v_is_drawn_with_variance_one_over_the_width():
    torch.manual_seed(0)
    size = 400
    variance = float(LowRankResidual(size, 50, 1).down.detach().double().var())
    assert 0.9 / size < variance < 1.1 / size          # 20000 draws: the estimate is within about 1 %


def test_the_reduction_reaches_the_input_and_the_gradient_moments():
    network = MendNetwork({"a": (3, 2)}, rank=2).train()
    network("a", torch.randn(5, 3), torch.randn(5, 2), reduce=lambda t: 2 * t)    # two ranks, the same rows
    transform = network.transforms["3x2"]
    assert int(transform.input_moments.count) == 10 and int(transform.output_grad_moments.count) == 10


def test_the_defaults_rank_1920_and_edit_lr_1e_4():
    network = MendNetwork({"a": (1000, 1000)}, n_hidden=0)
    assert network.transforms["1000x1000"].layers[0].down.shape == (1920, 2000)
    assert float(network.edit_lr("a")) == pytest.approx(1e-4, rel=1e-7)


def test_no_edited_module_is_refused():
    with pytest.raises(ValueError) as refused:
        MendNetwork({})
    assert str(refused.value) == "MendNetwork needs at least one edited module"


def test_without_sharing_each_module_has_its_own_transform_with_one_mode():
    network = MendNetwork({"a": (6, 4), "b": (6, 4)}, rank=2, shared=False)
    assert set(network.transforms) == {"module0", "module1"}
    assert all(t.layers[0].mode_scale.num_embeddings == 1 for t in network.transforms.values())
