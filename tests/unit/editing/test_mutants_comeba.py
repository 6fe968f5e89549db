"""COMEBA-HK at its edges (docs/methods.md §8): the warnings' text and the line they are attributed to (a
caller's, not the module's), the raw edit prompts of the threshold update, and what a step returns about the gate,
on a tiny GPT-2 whose gate starts at a threshold no prompt reaches."""

from __future__ import annotations

import warnings

import pytest
import torch

from lit_edit.editing import comeba
from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.comeba import ComebaHyperparams, apply_comeba, edit_prompt_batch
from lit_edit.editing.hook_layers import HookBank
from lit_edit.editing.values import ValueHyperparams, ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.models.loading import load_tokenizer
from tests.conftest import FACTWORLD, make_tiny_model
from tests.direct import LIVE_VALUES

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot")]
GROUPS = (("{}",), ("The weather was mild. {}",))
LAYERS = (0, 1)


def test_the_padding_warning_says_what_to_set_and_points_at_the_caller():
    with pytest.warns(UserWarning) as caught:
        ComebaHyperparams(gate_statistics="all_positions", values=ValueHyperparams(requests_per_pass=2))
    assert str(caught[0].message) == (
        "gate_statistics 'all_positions' with values.requests_per_pass 2: the gate's z-scores include padding, so "
        "each request's values depend on how many requests share its padded pass; the reference code optimises "
        "them one at a time (set values.requests_per_pass: 1 to reproduce it)")
    assert caught[0].filename != comeba.__file__        # attributed to a caller, not to the module itself


def test_the_threshold_update_reads_the_raw_edit_prompts_with_the_tokenizer_s_special_tokens():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-llama"))          # prepends <s>
    ids, mask = edit_prompt_batch(tokenizer, TARGETS, "cpu")
    expected = [tokenizer("Alda Venkor was born in")["input_ids"], tokenizer("The pet of Bram Tosk is a")["input_ids"]]
    assert all(row[0] == tokenizer.bos_token_id for row in expected)
    width = max(map(len, expected))
    for row, want, real in zip(ids.tolist(), expected, mask.tolist(), strict=True):
        assert row == want + [tokenizer.pad_token_id] * (width - len(want))
        assert real == [1] * len(want) + [0] * (width - len(want))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_model("gpt2", tmp_path_factory.mktemp("comeba"), seed=5)
    model, _ = load_model_and_tokenizer(str(folder))
    m = architecture_of(model).inner_size(model)
    base = torch.randn(m, 4 * m, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return folder, base @ base.T / (4 * m)


def _step(tiny, targets, dynamic):
    folder, moment = tiny
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model = model.double()
    arch = architecture_of(model)
    hp = ComebaHyperparams(layers=LAYERS, preservation_weight=3.0, alpha=1e6, dynamic_threshold=dynamic,
                           values=LIVE_VALUES)
    bank = HookBank(model, arch, LAYERS, hp.alpha)
    accumulated = {layer: AccumulatedKeys(3.0 * moment) for layer in LAYERS}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, step = apply_comeba(model, tokenizer, arch, targets, hp, GROUPS, accumulated, bank)
    bank.remove()
    return step, bank, [w for w in caught if "hook gate" in str(w.message)]


def test_a_fixed_threshold_no_prompt_reaches_is_reported_per_layer(tiny):
    step, bank, caught = _step(tiny, TARGETS, dynamic=False)
    assert step.missed == {0: 2, 1: 2}
    assert step.thresholds == {0: 1e6, 1: 1e6} == {layer: hook.alpha for layer, hook in bank.layers.items()}
    assert len(caught) == 1 and caught[0].filename != comeba.__file__
    assert str(caught[0].message) == ("the hook gate misses edit prompts of this batch (max z below α) at layers "
                                      "{0: 2, 1: 2}: those edits will not show; the threshold is fixed "
                                      "(dynamic_threshold false)")


def test_the_dynamic_threshold_comes_down_to_the_edit_prompts_and_misses_none(tiny):
    step, bank, caught = _step(tiny, TARGETS, dynamic=True)
    assert step.missed == {0: 0, 1: 0} and not caught
    assert step.thresholds == {layer: hook.alpha for layer, hook in bank.layers.items()}
    assert all(alpha < 1e6 for alpha in step.thresholds.values())


def test_a_prompt_too_short_to_gate_is_reported_without_the_fixed_threshold_note(tiny):
    """One real token has no spread, so its max z is −inf: even the dynamic threshold cannot reach it."""
    short = ValueTarget("{}", "The", "Port Ivory")      # one token
    step, _, caught = _step(tiny, [short], dynamic=True)
    assert step.missed == {0: 1, 1: 1}
    assert len(caught) == 1 and str(caught[0].message) == (
        "the hook gate misses edit prompts of this batch (max z below α) at layers {0: 1, 1: 1}: those edits will "
        "not show")
