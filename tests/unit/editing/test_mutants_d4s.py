"""D4S's per-layer state and its residual rule (docs/methods.md §7): the settings and label handed on, the state
saved and read back bit for bit, and, under ``recompute``, the second layer's residual measured on the model with
the first layer already set (against a pass written here)."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.d4s import D4sHyperparams, D4sLayerState, apply_d4s
from lit_edit.editing.keys import module_io_at_subject
from lit_edit.editing.solver import UpdateSolveError
from lit_edit.editing.values import ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import make_tiny_model
from tests.direct import LIVE_VALUES

C = torch.tensor([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]], dtype=torch.float64)


def _steps(state, count, seed):
    g = torch.Generator().manual_seed(seed)
    for _ in range(count):
        state.add(torch.randn(4, 2, generator=g, dtype=torch.float64), torch.randn(3, 2, generator=g,
                                                                                    dtype=torch.float64))


def test_an_unknown_residual_rule_is_refused_with_the_choices():
    with pytest.raises(ValueError) as refused:
        D4sHyperparams(layers=(1,), residual="halved")
    assert str(refused.value) == "unknown D4S residual rule 'halved'; choose from ('recompute', 'reference')"


def test_the_label_and_the_solve_settings_reach_the_layer_state():
    with pytest.raises(ValueError, match=r"^layer 7: the second moment C must be square, got \(2, 3\)$"):
        D4sLayerState(torch.ones(2, 3), 4, D4sHyperparams(layers=(1,)), "layer 7")
    state = D4sLayerState(C, 4, D4sHyperparams(layers=(1,), incremental=False, refactor_every=7), "layer 7")
    assert (state.keys.incremental, state.keys.refactor_every, state.keys.where) == (False, 7, "layer 7")
    with pytest.raises(UpdateSolveError, match=r"^layer 7: the keys contain NaN or inf$"):
        state.add(torch.ones(4, 1), torch.full((3, 1), float("inf")))
    assert D4sLayerState(C, 4, D4sHyperparams(layers=(1,)), "").keys.incremental


def test_a_fresh_state_saves_zero_sums_of_the_layer_s_shape():
    saved = D4sLayerState(C, 4, D4sHyperparams(layers=(1,)), "layer 1").state_dict()
    for name in ("numerator", "solution"):
        assert torch.equal(saved[name], torch.zeros(4, 3, dtype=torch.float64)), name


@pytest.mark.parametrize("incremental", [True, False])
def test_the_state_reads_back_bit_for_bit_and_the_next_step_is_the_same(incremental):
    hp = D4sHyperparams(layers=(1,), preservation_weight=2.0, incremental=incremental, refactor_every=3)
    state = D4sLayerState(C, 4, hp, "layer 1")
    _steps(state, 4, seed=0)
    saved = state.state_dict()
    assert {"numerator", "solution", "keys.preserved", "keys.key_sum"} <= set(saved)
    copy = D4sLayerState(C, 4, hp, "layer 1")
    copy.load_state_dict({name: value.clone() for name, value in saved.items()})
    again = copy.state_dict()
    assert set(again) == set(saved)
    assert all(torch.equal(again[name], saved[name]) for name in saved)
    r, k = torch.ones(4, 1, dtype=torch.float64), torch.tensor([[0.5], [-1.0], [2.0]], dtype=torch.float64)
    assert torch.equal(copy.add(r, k), state.add(r, k))


def test_a_state_saved_in_float32_is_read_as_float64():
    hp = D4sHyperparams(layers=(1,), preservation_weight=2.0)
    state = D4sLayerState(C, 4, hp, "layer 1")
    _steps(state, 2, seed=1)
    copy = D4sLayerState(C, 4, hp, "layer 1")
    copy.load_state_dict({name: value.float() if value.is_floating_point() else value
                          for name, value in state.state_dict().items()})
    assert copy.numerator.dtype == copy.solution.dtype == torch.float64
    torch.testing.assert_close(copy.solution, state.solution, rtol=1e-6, atol=1e-7)


def test_a_state_of_another_shape_is_refused_naming_both():
    saved = D4sLayerState(C, 4, D4sHyperparams(layers=(1,)), "layer 1").state_dict()
    with pytest.raises(ValueError) as refused:
        D4sLayerState(C, 5, D4sHyperparams(layers=(1,)), "layer 2").load_state_dict(saved)
    assert str(refused.value) == ("layer 2: the saved D4S state has shape (4, 3), this layer's is (5, 3): another "
                                  "model or layer")


def test_recompute_measures_the_second_layer_s_residual_after_the_first_layer_is_set(tmp_path):
    folder = make_tiny_model("gpt2", tmp_path, seed=5)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model = model.double()
    arch = architecture_of(model)
    m = arch.inner_size(model)
    base = torch.randn(m, 4 * m, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    layers, groups = (0, 1), (("{}",), ("The weather was mild. {}",))
    target = ValueTarget("{} was born in", "Alda Venkor", "Port Ivory")
    hp = D4sHyperparams(layers=layers, preservation_weight=3.0, values=LIVE_VALUES)
    w0 = {layer: arch.edit_weight(model, layer).detach().clone() for layer in layers}
    d = arch.to_math(w0[0]).shape[0]
    states = {layer: D4sLayerState(base @ base.T / (4 * m), d, hp, f"layer {layer}") for layer in layers}
    updates, values = apply_d4s(model, tokenizer, arch, [target], hp, groups, w0, states)
    with torch.no_grad():                                   # the model as layer 1's pass saw it
        arch.edit_weight(model, 1).copy_(w0[1])
    _, h = module_io_at_subject(model, tokenizer, arch.layer(1), [target.prompt], [target.subject])
    expected = (values.values.double() - h.double()).T       # Z − H, over L − p = 1 layer
    torch.testing.assert_close(updates[1].residuals, expected, rtol=1e-7, atol=1e-9)
    assert not torch.allclose(updates[1].residuals, 2 * updates[0].residuals, rtol=1e-4, atol=1e-6)
