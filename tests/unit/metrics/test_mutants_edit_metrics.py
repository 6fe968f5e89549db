"""Edit metrics at their edges, on hand-built bigram logits: family checks, ties in the probability family, the
generation length and newline cut, locality without a reference, and the pre-edit reference's file form."""

from __future__ import annotations

import json

import pytest
import torch

from lit_edit.editing.requests import LocalityProbe
from lit_edit.metrics import pre_edit_reference, score_requests
from lit_edit.metrics.edit import FAMILIES, PreEditReference, check_families
from lit_edit.models.loading import load_tokenizer
from tests.conftest import FACTWORLD
from tests.unit.metrics.test_edit_metrics import STRONG, BigramModel, ids, request


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FACTWORLD / "tokenizer-gpt2")


def say(model, chain: list[int]) -> None:
    """Each token of ``chain`` predicts the next (greedy decoding walks the chain from its first token)."""
    with torch.no_grad():
        for row, token in zip(chain, chain[1:]):
            model.table[row] = 0.0
            model.table[row, token] = STRONG


@pytest.mark.parametrize("families", [["bogus"], ["token", "bogus"], ["probability", "token", "Generation"], []])
def test_unknown_or_no_families_are_refused_naming_the_choices(families):
    with pytest.raises(ValueError, match="unknown edit-metric families") as error:
        check_families(families)
    assert str(FAMILIES) in str(error.value)
    assert all(repr(f) in str(error.value) for f in families if f not in FAMILIES)


def test_counterfact_first_is_refused_naming_every_family_it_can_follow():
    with pytest.raises(ValueError, match="cannot come first") as error:
        check_families(["counterfact", "probability"])
    assert "('token', 'probability', 'generation')" in str(error.value)
    assert check_families(["generation", "counterfact"]) == ("generation", "counterfact")


def test_the_pre_edit_reference_survives_its_json_file():
    reference = PreEditReference({"r0": [[1, 2], [3]], "r1": []}, {"r0": [" ferret", ""], "r1": []})
    text = json.dumps(reference.to_dict())
    assert set(json.loads(text)) == {"locality_tokens", "locality_generations"}
    assert PreEditReference.from_dict(json.loads(text)) == reference


def test_a_tie_counts_as_no_success_in_the_probability_family(tokenizer):
    """[NLL(new) < NLL(true)] is strict: the same answer for both targets (identical NLLs) scores 0, and a locality
    probe whose answer is the new target scores 0 too; both magnitudes are 0."""
    r = request(target_true="Grauden", locality=(LocalityProbe("Daizes Geakio owns a", "Grauden"),))
    model = BigramModel(len(tokenizer))
    say(model, [ids(tokenizer, r.text)[-1], *ids(tokenizer, " Grauden")])
    [scores] = score_requests(model, tokenizer, [r], ["probability"], None)
    assert scores["probability/reliability"] == 0.0 and scores["probability/reliability_magnitude"] == 0.0
    assert scores["probability/generality"] == 0.0
    assert scores["probability/locality"] == 0.0 and scores["probability/locality_magnitude"] == 0.0


def test_generations_stop_at_the_first_newline(tokenizer):
    """The model says the answer, a newline and more: reliability (exact match) and the pre-edit locality text only
    see the part before the newline."""
    r = request(target_new="Grauden", rephrase_prompts=(), locality=(LocalityProbe("Daizes Geakio owns a", "ferret"),))
    newline, more = ids(tokenizer, "\n"), ids(tokenizer, " Orrin Motors")
    assert len(newline) == 1
    model = BigramModel(len(tokenizer))
    say(model, [ids(tokenizer, r.text)[-1], *ids(tokenizer, " Grauden"), *newline, *more, 0])
    say(model, [ids(tokenizer, r.locality[0].prompt)[-1], *ids(tokenizer, " ferret"), *newline])
    reference = pre_edit_reference(model, tokenizer, [r], ["generation"])
    assert reference.locality_generations == {"r0": [" ferret"]}
    [scores] = score_requests(model, tokenizer, [r], ["generation"], reference)
    assert scores["generation/reliability"] == 1.0 and scores["generation/locality"] == 1.0


def test_generations_are_cut_at_max_new_tokens(tokenizer):
    """A one-token answer that the model goes on from without a newline or EOS: exact match only within one new
    token; the reference's locality text is one token long too."""
    r = request(target_new="Grauden", rephrase_prompts=(), locality=(LocalityProbe("Daizes Geakio owns a", "ferret"),))
    answer, more = ids(tokenizer, " Grauden"), ids(tokenizer, " Orrin Motors")
    assert len(answer) == 1
    model = BigramModel(len(tokenizer))
    say(model, [ids(tokenizer, r.text)[-1], *answer, *more, *answer])      # a loop: never EOS
    local = ids(tokenizer, " Brisk Harbor")
    assert len(local) == 2
    say(model, [ids(tokenizer, r.locality[0].prompt)[-1], *local])
    reference = pre_edit_reference(model, tokenizer, [r], ["generation"], max_new_tokens=1)
    assert reference.locality_generations == {"r0": [tokenizer.decode(local[:1])]}
    [one] = score_requests(model, tokenizer, [r], ["generation"], reference, max_new_tokens=1)
    [three] = score_requests(model, tokenizer, [r], ["generation"], reference, max_new_tokens=3)
    assert (one["generation/reliability"], three["generation/reliability"]) == (1.0, 0.0)


def test_generation_locality_is_none_without_a_reference_or_probes(tokenizer):
    model = BigramModel(len(tokenizer))
    [without_reference] = score_requests(model, tokenizer, [request()], ["generation"], None)
    assert without_reference["generation/locality"] is None
    assert without_reference["generation/reliability"] == 0.0
    bare = request(locality=(), record_id="r1")
    reference = pre_edit_reference(model, tokenizer, [bare], ["generation"])
    [without_probes] = score_requests(model, tokenizer, [bare], ["generation"], reference)
    assert without_probes["generation/locality"] is None
