"""The hook layers (docs/methods.md §8): the gate-statistics message, the z-score window at two real tokens
(computed by hand), one hook layer's state (its start, a float32 master whatever the default dtype, ΔW set or
added after rounding to float32, D = ΔW k cast again when the activations' dtype changes), and a bank on a tiny
GPT-2: its state read back, the modes per layer, the inputs the gate reads (ids by position, embeddings, no mask,
a module called on its own, one cached step), the refusal of a step for other sequences, and the threshold
update (eq. 18) against z and outputs written here."""

from __future__ import annotations

import math

import pytest
import torch

from lit_edit.editing.hook_layers import HookBank, HookLayer, check_gate_statistics, gate_zscores
from lit_edit.hooks import record
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.models.kv_cache import cache_keyword
from lit_edit.scoring import pad_right
from tests.conftest import make_tiny_model


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


def test_the_float32_master_holds_whatever_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        hook = HookLayer(0, "m", 2, 3, alpha=1.0, device=torch.device("cpu"))
    finally:
        torch.set_default_dtype(previous)
    assert hook.delta.dtype == torch.float32


def test_an_added_change_is_rounded_to_float32_before_it_is_added():
    """1 + (2⁻²⁴ + 2⁻⁵⁰): the change rounds to 2⁻²⁴ in float32, and 1 + 2⁻²⁴ is a tie that rounds to even, 1 (the
    float64 sum rounded once would be 1 + 2⁻²³)."""
    hook = HookLayer(0, "m", 2, 3, alpha=1.0, device=torch.device("cpu"))
    hook.set_delta(torch.ones(2, 3))
    hook.add(torch.full((2, 3), 2.0 ** -24 + 2.0 ** -50, dtype=torch.float64))
    assert torch.equal(hook.delta, torch.ones(2, 3))


# ------------------------------------------------------------------------------- a bank on a tiny GPT-2

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model("gpt2", tmp_path_factory.mktemp("hooks"), seed=4)))
    return model.eval(), tokenizer, architecture_of(model)


def _bank(tiny, alpha=1.0, **options):
    """Hook layers at 0 and 2 with ΔW drawn from a fixed seed."""
    model, _, arch = tiny
    bank = HookBank(model, arch, [0, 2], alpha=alpha, **options).install()
    g = torch.Generator().manual_seed(0)
    for hook in bank.layers.values():
        hook.add(torch.randn(hook.delta.shape, generator=g) * 0.5)
    return bank


@pytest.fixture
def bank(tiny):
    bank = _bank(tiny)
    yield bank
    bank.remove()


def _ids(tokenizer, *texts):
    return pad_right([tokenizer(text)["input_ids"] for text in texts], tokenizer.pad_token_id)


def _plain_z(norms):
    """z over every position of one sequence: (M − mean M) / unbiased std M."""
    norms = norms.double()
    return (norms - norms.mean()) / norms.std(unbiased=True)


def test_the_state_reads_back_bit_for_bit_with_its_thresholds(tiny, bank):
    model, _, arch = tiny
    bank.layers[0].alpha, bank.layers[2].alpha = 0.1, 1.7
    saved = bank.state_dict()
    assert set(saved) == {"layer0.delta", "layer2.delta", "layer0.alpha", "layer2.alpha"}
    assert saved["layer0.alpha"].dtype == torch.float64 and float(saved["layer0.alpha"]) == 0.1
    other = HookBank(model, arch, [0, 2])
    k = torch.randn(3, other.layers[0].delta.shape[1])
    assert not other.layers[0].difference(k).any()                    # the zero ΔW, cast and kept
    other.load_state_dict({name: value.clone() for name, value in saved.items()})
    for layer in (0, 2):
        assert torch.equal(other.layers[layer].delta, bank.layers[layer].delta)
    assert (other.layers[0].alpha, other.layers[2].alpha) == (0.1, 1.7)
    torch.testing.assert_close(other.layers[0].difference(k), k @ bank.layers[0].delta.T)


def test_a_state_without_a_layer_or_of_another_shape_is_refused(bank):
    saved = bank.state_dict()
    with pytest.raises(ValueError) as refused:
        bank.load_state_dict({name: value for name, value in saved.items() if name.startswith("layer0")})
    assert str(refused.value) == "the saved hook state has no layer 2 (it holds ['layer0.alpha', 'layer0.delta'])"
    with pytest.raises(ValueError) as refused:
        bank.load_state_dict(saved | {"layer2.delta": torch.zeros(3, 4)})
    assert str(refused.value) == ("the saved hook layer 2 has shape (3, 4), this model's is (32, 64): the state "
                                  "comes from another model")


def test_the_default_threshold_and_modes_set_per_layer(tiny, bank):
    model, _, arch = tiny
    assert HookBank(model, arch, [0]).layers[0].alpha == 2.2
    bank.set_mode("temporary", [2])
    assert {layer: hook.mode for layer, hook in bank.layers.items()} == {0: "off", 2: "temporary"}


def _ffn_output(model, arch, bank, mode, **inputs):
    with torch.no_grad(), bank.mode(mode), record(model, [arch.ffn_out_at(0)]) as seen:
        model(**inputs)
    return seen[arch.ffn_out_at(0)]


def test_temporary_adds_the_change_at_every_token_and_survives_a_reinstall(tiny, bank):
    model, tokenizer, arch = tiny
    ids, mask = _ids(tokenizer, "alpha beta gamma delta epsilon")
    off = _ffn_output(model, arch, bank, "off", input_ids=ids, attention_mask=mask)
    bank.remove()
    bank.install()
    assert bank.installed
    on = _ffn_output(model, arch, bank, "temporary", input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(on.output, off.output + off.input @ bank.layers[0].delta.T)


def _recorded_z(model, bank, *args, **kwargs):
    """The (z, mask, M) recorded at layer 0 in one pass ``model(*args, **kwargs)``."""
    bank.layers[0].recorded_z = []
    with torch.no_grad(), bank.mode("recording"):
        model(*args, **kwargs)
    return bank.layers[0].recorded_z


def test_the_gate_reads_ids_given_by_position_or_embeddings_given_instead(tiny, bank):
    model, tokenizer, arch = tiny
    ids, mask = _ids(tokenizer, "alpha beta gamma delta epsilon", "one two")
    (expected, _, _), = _recorded_z(model, bank, input_ids=ids, attention_mask=mask)
    assert torch.isinf(expected[~mask.bool()]).all() and torch.isfinite(expected[mask.bool()]).all()
    (positional, _, _), = _recorded_z(model, bank, ids, attention_mask=mask)
    embeds = model.get_input_embeddings()(ids)
    (embedded, _, _), = _recorded_z(model, bank, inputs_embeds=embeds, attention_mask=mask)
    assert torch.equal(positional, expected) and torch.equal(embedded, expected)


def test_each_pass_without_a_mask_is_a_plain_pass_over_every_position(tiny, bank):
    model, tokenizer, _ = tiny
    ids, _ = _ids(tokenizer, "alpha beta gamma delta epsilon")
    (first, _, norms), = _recorded_z(model, bank, input_ids=ids)
    (second, _, _), = _recorded_z(model, bank, input_ids=ids)
    torch.testing.assert_close(first[0].double(), _plain_z(norms[0]), rtol=1e-5, atol=1e-6)
    assert torch.equal(second, first)


def test_a_hooked_module_called_on_its_own_gates_over_every_position(tiny, bank):
    model, _, arch = tiny
    module = model.get_submodule(arch.ffn_out_at(0))
    k = torch.randn(1, 6, bank.layers[0].delta.shape[1], generator=torch.Generator().manual_seed(1))
    bank.layers[0].recorded_z = []
    with torch.no_grad(), bank.mode("recording"):
        module(k)
        module(k)
    (first, mask, norms), (second, _, _) = bank.layers[0].recorded_z
    assert mask.dtype == torch.bool and mask.all()
    torch.testing.assert_close(first[0].double(), _plain_z(norms[0]), rtol=1e-5, atol=1e-6)
    assert torch.equal(second, first)


def test_the_recorded_mask_of_all_positions_is_boolean_and_covers_the_padding(tiny):
    model, tokenizer, _ = tiny
    bank = _bank(tiny, gate_statistics="all_positions")
    try:
        ids, mask = _ids(tokenizer, "alpha beta gamma delta epsilon", "one two")
        (_, recorded_mask, _), = bank.record_scores(ids, mask)[0]
    finally:
        bank.remove()
    assert recorded_mask.dtype == torch.bool and recorded_mask.all() and not mask.all()


def test_a_decoding_step_after_one_prompt_token_continues_its_history(tiny, bank):
    """Prompt of one token (no z: one value), then one cached step: over (M₀, M₁) the new token's z is
    ±(|M₁ − M₀|/2)/(|M₁ − M₀|/√2) = ±1/√2, its sign that of M₁ − M₀."""
    model, tokenizer, _ = tiny
    ids = torch.tensor([tokenizer("alpha beta")["input_ids"][:2]])
    bank.layers[0].recorded_z = []
    with torch.no_grad(), bank.mode("recording"):
        past = model(input_ids=ids[:, :1], attention_mask=torch.ones(1, 1, dtype=torch.long), use_cache=True)
        model(input_ids=ids[:, 1:], attention_mask=torch.ones(1, 2, dtype=torch.long),
              **{cache_keyword(model): past.past_key_values})
    (prompt_z, _, prompt_m), (step_z, _, step_m) = bank.layers[0].recorded_z
    assert torch.isinf(prompt_z).all()
    sign = 1.0 if float(step_m[0, 0]) > float(prompt_m[0, 0]) else -1.0
    assert float(step_z[0, 0]) == pytest.approx(sign / math.sqrt(2), abs=1e-6)


def test_a_decoding_step_for_other_sequences_than_the_prompt_s_is_refused(tiny, bank):
    model, tokenizer, _ = tiny
    single = torch.tensor([tokenizer("alpha beta gamma")["input_ids"]])
    with torch.no_grad():
        with bank.mode("off"):
            cache = model(input_ids=single, use_cache=True).past_key_values
        ids, mask = _ids(tokenizer, "one two three", "four five")
        with bank.mode("validated"):
            model(input_ids=ids, attention_mask=mask)
            with pytest.raises(RuntimeError) as refused:
                model(input_ids=single[:, :2], attention_mask=torch.ones(1, single.shape[1] + 2, dtype=torch.long),
                      **{cache_keyword(model): cache})
    assert str(refused.value) == ("layer 0: a decoding step for 1 sequences follows a prompt of 2; the gate's "
                                  "history does not fit")


def test_the_lowered_threshold_lets_the_prompt_s_top_token_through(tiny, bank):
    """α ← the prompt's max z (eq. 18, dynamic by default): no prompt is missed, and in the validated pass the
    change shows at that token, which sits exactly on α."""
    model, tokenizer, arch = tiny
    ids, mask = _ids(tokenizer, "alpha beta gamma delta epsilon")
    bank.layers[0].alpha = bank.layers[2].alpha = 100.0
    recorded = bank.record_scores(ids, mask)
    assert bank.lower_thresholds() == {0: 0, 2: 0}
    z = recorded[0][0][0][0]
    top = int(z.argmax())
    assert bank.layers[0].alpha == pytest.approx(float(z[top]), rel=1e-6)    # z recorded in float32
    off = _ffn_output(model, arch, bank, "off", input_ids=ids, attention_mask=mask)
    validated = _ffn_output(model, arch, bank, "validated", input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(validated.output[0, top], off.output[0, top] + off.input[0, top] @ bank.layers[0].delta.T)


def test_a_fixed_threshold_only_counts_the_missed_prompts(tiny, bank):
    model, tokenizer, _ = tiny
    ids, mask = _ids(tokenizer, "alpha beta gamma delta epsilon", "one two three")
    bank.layers[0].alpha = bank.layers[2].alpha = 100.0
    bank.record_scores(ids, mask)
    assert bank.lower_thresholds(dynamic=False) == {0: 2, 2: 2}
    assert bank.layers[0].alpha == bank.layers[2].alpha == 100.0


def test_only_layers_that_recorded_are_lowered_and_again_after_more_recording(tiny, bank):
    model, tokenizer, _ = tiny
    ids, mask = _ids(tokenizer, "alpha beta gamma delta epsilon")
    bank.layers[0].alpha = bank.layers[2].alpha = 100.0
    bank.set_mode("recording", [2])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    assert bank.lower_thresholds() == {2: 0}
    assert bank.layers[0].alpha == 100.0 and bank.layers[2].alpha < 100.0
    bank.layers[2].alpha = 100.0
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    assert bank.lower_thresholds() == {2: 0} and bank.layers[2].alpha < 100.0
