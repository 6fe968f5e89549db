"""Context templates: the shape of each method's default set (count, groups, the length of every template under
each length rule), on the GPT-2 tokenizer (no BOS) and the LLaMA one (which prepends <s>, counted by the reference's
rule), and the settings' messages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_edit.editing.contexts import MEMIT_SEEDS, new_token_count, sample_context_templates, sample_continuations
from lit_edit.editors import COMEBA, D4S, MEMIT, ROME, AlphaEdit
from lit_edit.models import load_model_and_tokenizer
from tests.conftest import make_tiny_model


class _NeverEos(torch.nn.Module):
    """The model with its EOS logit at −inf, so every sample runs to its full length."""

    def __init__(self, model, eos_id: int):
        super().__init__()
        self.model, self.eos_id = model, eos_id

    def forward(self, input_ids):
        logits = self.model(input_ids=input_ids).logits.clone()
        logits[..., self.eos_id] = float("-inf")
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request, tmp_path_factory):
    model, tokenizer = load_model_and_tokenizer(str(make_tiny_model(request.param, tmp_path_factory.mktemp("ctx"))))
    return _NeverEos(model.eval(), tokenizer.eos_token_id), tokenizer


def _expected_lengths(tokenizer, per_seed, lengths, rule) -> list[int]:
    """Tokens of every template (seed + sampled), by the rule's definition, in the set's order."""
    out = []
    for length in lengths:
        for word in MEMIT_SEEDS:
            seed = len(tokenizer(word)["input_ids"])
            out += [max(length, seed) if rule == "total" else seed + length] * per_seed
    return out


def _shape(editor, model, tokenizer) -> tuple[int, list[int]]:
    """How many templates ``editor`` samples and how many tokens each has (seed word included)."""
    settings = editor.hp
    templates = editor._context.sample_templates(model, tokenizer)
    ids = sample_continuations(model, tokenizer, MEMIT_SEEDS, settings.templates_per_seed, settings.template_lengths,
                               settings.template_length_rule, settings.template_seed)
    words = [word for _ in settings.template_lengths for word in MEMIT_SEEDS for _ in range(settings.templates_per_seed)]
    assert len(templates) == 1 + len(ids) == 1 + len(words)
    for template, word in zip(templates[1:], words):
        assert template.startswith(word) and template.endswith(". {}") and template.count("{}") == 1
    assert templates[0] == "{}"
    return len(templates), [len(sample) for sample in ids]


def test_rome_default_is_the_reference_set_of_21(tiny):
    """ROME: the bare prompt, then 2 samples of each of 5 seed words of length 5, then of length 10, the length
    counting the seed word's tokens (special tokens included): 21 templates."""
    model, tokenizer = tiny
    count, lengths = _shape(ROME(layer=0), model, tokenizer)
    assert count == 21
    assert lengths == _expected_lengths(tokenizer, 2, (5, 10), "total")


@pytest.mark.parametrize("editor", [MEMIT, D4S, COMEBA, AlphaEdit])
def test_memit_family_default_is_the_reference_set_of_6(tiny, editor):
    """MEMIT and its descendants: the bare group and 5 templates of length 10 (seed word included), one per seed."""
    model, tokenizer = tiny
    memit = editor(layers=[0])
    count, lengths = _shape(memit, model, tokenizer)
    assert count == 6 and lengths == _expected_lengths(tokenizer, 1, (10,), "total")
    if isinstance(memit, MEMIT) and type(memit) is MEMIT:
        assert [len(group) for group in memit.template_groups] == [1, 5]


def test_the_new_tokens_rule_samples_the_length_after_the_seed(tiny):
    """``template_length_rule="new"``: every template is its seed word plus exactly ``template_tokens`` tokens
    (ROME with length 10 and 2 per seed word: 11 templates)."""
    model, tokenizer = tiny
    count, lengths = _shape(ROME(layer=0, template_tokens=10, template_length_rule="new"), model, tokenizer)
    assert count == 11 and lengths == _expected_lengths(tokenizer, 2, (10,), "new")
    count, lengths = _shape(MEMIT(layers=[0], template_length_rule="new"), model, tokenizer)
    assert count == 6 and lengths == _expected_lengths(tokenizer, 1, (10,), "new")


def test_the_total_rule_counts_special_tokens_of_the_seed(tiny):
    """The reference's length counts every token of the tokenised seed, LLaMA's ``<s>`` included: a template of
    length 5 is the seed's ids (with ``<s>`` on LLaMA) followed by 5 − len(seed ids) sampled tokens."""
    model, tokenizer = tiny
    seed_ids = tokenizer("The")["input_ids"]
    assert (seed_ids[0] == tokenizer.bos_token_id) == (tokenizer.bos_token_id is not None and
                                                       tokenizer("x")["input_ids"][0] == tokenizer.bos_token_id)
    [sample] = sample_continuations(model, tokenizer, ["The"], 1, (5,), "total")
    assert sample[:len(seed_ids)] == seed_ids and len(sample) == 5


def test_new_token_count_on_a_direct_computation():
    assert [new_token_count(10, seed, "total") for seed in (1, 2, 10, 12)] == [9, 8, 0, 0]
    assert [new_token_count(10, seed, "new") for seed in (1, 2, 12)] == [10, 10, 10]
    with pytest.raises(ValueError, match="length rule must be one of"):
        new_token_count(10, 1, "prompt")


def test_sampling_is_reproducible_and_seeded(tiny):
    model, tokenizer = tiny
    first = sample_context_templates(model, tokenizer, per_seed=1, lengths=(6,), seed=3)
    assert first == sample_context_templates(model, tokenizer, per_seed=1, lengths=(6,), seed=3)
    assert first != sample_context_templates(model, tokenizer, per_seed=1, lengths=(6,), seed=4)


@pytest.mark.parametrize(("options", "message"), [
    ({"templates_per_seed": 0}, "templates_per_seed must be >= 1, got 0"),
    ({"template_tokens": []}, r"template_tokens must be one or more lengths >= 1, got \[\]"),
    ({"template_tokens": [5, 0]}, r"template_tokens must be one or more lengths >= 1, got \[5, 0\]"),
    ({"template_length_rule": "prompt"}, r"template_length_rule must be one of \('total', 'new'\), got 'prompt'"),
])
def test_bad_template_settings_name_the_option(options, message):
    for editor in (lambda: ROME(layer=0, **options), lambda: MEMIT(layers=[0], **options),
                   lambda: D4S(layers=[0], **options)):
        with pytest.raises(ValueError, match=message):
            editor()
