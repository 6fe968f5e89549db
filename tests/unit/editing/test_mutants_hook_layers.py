"""The hook layers' small parts (docs/methods.md §8): the gate-statistics message, the z-score window at two real
tokens (computed by hand), and one hook layer's state: its start, ΔW set or added, D = ΔW k cast again when the
activations' dtype changes."""

from __future__ import annotations

import math

import pytest
import torch

from lit_edit.editing.hook_layers import HookLayer, check_gate_statistics, gate_zscores


def test_an_unknown_gate_statistics_rule_is_refused_with_the_choices_explained():
    with pytest.raises(ValueError) as refused:
        check_gate_statistics("padded")
    assert str(refused.value) == (
        "unknown gate_statistics 'padded'; choose from ('real_tokens', 'all_positions') (real_tokens: the z-scores "
        "over the real tokens; all_positions: over every position, padding included, as the reference code)")


def test_two_real_tokens_are_enough_for_a_z_score():
    """M = (1, 3): mean 2, unbiased variance ((1 + 9) − 2·4) / 1 = 2, so z = ∓1/√2; one real token has none."""
    z, after = gate_zscores(torch.tensor([[1.0, 3.0]], dtype=torch.float64), torch.tensor([[1, 1]]))
    torch.testing.assert_close(z, torch.tensor([[-1 / math.sqrt(2), 1 / math.sqrt(2)]], dtype=torch.float64))
    torch.testing.assert_close(after, torch.tensor([[2.0, 4.0, 10.0]], dtype=torch.float64))
    alone, _ = gate_zscores(torch.tensor([[1.0, 3.0]], dtype=torch.float64), torch.tensor([[1, 0]]))
    assert torch.isinf(alone).all() and (alone < 0).all()


def test_a_hook_layer_starts_off_with_a_zero_float32_change_and_no_history():
    hook = HookLayer(3, "transformer.h.3.mlp.c_proj", 2, 3, alpha=2.2, device=torch.device("cpu"))
    assert (hook.mode, hook.history, hook.alpha) == ("off", None, 2.2)
    assert hook.delta.dtype == torch.float32 and not hook.delta.any() and hook.delta.shape == (2, 3)


def test_the_difference_follows_the_change_set_or_added_and_the_activations_dtype():
    hook = HookLayer(0, "m", 2, 3, alpha=1.0, device=torch.device("cpu"))
    k = torch.tensor([[1.0, 2.0, 3.0]])
    delta = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    hook.add(delta)
    torch.testing.assert_close(hook.difference(k), torch.tensor([[-2.0, 3.0]]))
    hook.set_delta(2 * delta)
    torch.testing.assert_close(hook.difference(k), torch.tensor([[-4.0, 6.0]]))
    wide = hook.difference(k.double())
    assert wide.dtype == torch.float64
    torch.testing.assert_close(wide, torch.tensor([[-4.0, 6.0]], dtype=torch.float64))
    assert hook.difference(k).dtype == torch.float32
