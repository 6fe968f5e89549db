"""Edit metrics against hand-built logits: token accuracy, probability comparison, exact match, aggregation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lit_edit.editing.requests import EditRequest, LocalityProbe
from lit_edit.metrics import MeanScores, exact_match, metric_keys, pre_edit_reference, score_requests
from lit_edit.models.loading import load_tokenizer
from lit_edit.scoring import score_answers
from tests.conftest import FACTWORLD


class BigramModel(nn.Module):
    """Logits at position t depend only on the token at t: a table we write by hand."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(vocab, vocab))

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FACTWORLD / "tokenizer-gpt2")


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_token_accuracy_and_mean_nll_match_a_direct_computation(tokenizer):
    prompt, answer = "Where was Hathio Mafubral born?", "Brisk Harbor"
    prompt_ids, answer_ids = ids(tokenizer, prompt), ids(tokenizer, " " + answer)
    assert len(answer_ids) == 2
    model = BigramModel(len(tokenizer))
    with torch.no_grad():
        model.table[prompt_ids[-1], answer_ids[0]] = 5.0          # first answer token predicted
        model.table[answer_ids[0], answer_ids[0]] = 3.0           # second is not (argmax repeats the first)
    [score] = score_answers(model, tokenizer, [prompt], [answer])
    assert score.answer == answer_ids
    assert score.token_accuracy == 0.5
    log_probs = model.table.detach().log_softmax(-1)
    expected = -(log_probs[prompt_ids[-1], answer_ids[0]] + log_probs[answer_ids[0], answer_ids[1]]) / 2
    assert score.mean_nll == pytest.approx(float(expected), rel=1e-5)


def test_leading_space_is_added_once_and_ids_are_concatenated(tokenizer):
    model = BigramModel(len(tokenizer))
    plain, spaced = score_answers(model, tokenizer, ["Who employs X?"] * 2, ["Orrin Motors", " Orrin Motors"])
    assert plain.answer == spaced.answer == ids(tokenizer, " Orrin Motors")
    assert plain.answer != ids(tokenizer, "Orrin Motors")


def request(**overrides) -> EditRequest:
    fields = dict(prompt="Where was {} born?", subject="Hathio Mafubral", target_new="Grauden",
                  target_true="Vashti Falls", rephrase_prompts=("In which city was Hathio Mafubral born?",),
                  locality=(LocalityProbe("What pet does Daizes Geakio own?", "ferret"),), record_id="r0")
    fields.update(overrides)
    return EditRequest(**fields)


def test_probability_family_compares_length_normalised_nll(tokenizer):
    r = request()
    model = BigramModel(len(tokenizer))
    new, true = ids(tokenizer, " Grauden"), ids(tokenizer, " Vashti Falls")
    last = ids(tokenizer, r.text)[-1]
    with torch.no_grad():
        model.table[last, new[0]] = 4.0          # p(new) high after the prompt
    [scores] = score_requests(model, tokenizer, [r], ["probability"], None)
    assert scores["probability/reliability"] == 1.0
    log_probs = model.table.detach().log_softmax(-1)
    nll_new = -float(log_probs[last, new[0]])
    nll_true = -float(sum(log_probs[a, b] for a, b in zip([last] + true[:-1], true))) / len(true)
    assert scores["probability/reliability_magnitude"] == pytest.approx(math.exp(-nll_new) - math.exp(-nll_true),
                                                                         rel=1e-5)
    # the rephrase ends with a different token, whose row is flat: p(new) is not above p(true) there
    assert scores["probability/generality"] == float(-math.log(1 / len(tokenizer)) < nll_true)


def test_token_locality_compares_with_the_pre_edit_argmax(tokenizer):
    r = request()
    model = BigramModel(len(tokenizer))
    reference = pre_edit_reference(model, tokenizer, [r], ["token"])
    [same] = score_requests(model, tokenizer, [r], ["token"], reference)
    assert same["token/locality"] == 1.0
    probe_ids = ids(tokenizer, r.locality[0].prompt)
    with torch.no_grad():
        model.table[probe_ids[-1], 7] = 9.0       # the first locality position now predicts another token
    [changed] = score_requests(model, tokenizer, [r], ["token"], reference)
    n = len(ids(tokenizer, " ferret"))
    assert changed["token/locality"] == pytest.approx((n - 1) / n)


def test_requests_without_rephrases_or_true_target_have_none():
    r = request(rephrase_prompts=(), target_true=None, locality=())
    model = BigramModel(5000)
    tok = load_tokenizer(FACTWORLD / "tokenizer-gpt2")
    [scores] = score_requests(model, tok, [r], ["token", "probability"], None)
    assert scores["token/generality"] is None and scores["probability/reliability"] is None
    assert scores["token/locality"] is None and scores["token/portability"] is None


@pytest.mark.parametrize(("prediction", "reference", "expected"), [
    ("The Grauden.", "Grauden", True), (" grauden", "Grauden", True), ("Grauden Falls", "Grauden", False),
    ("a surgeon", ["carpenter", "Surgeon"], True), ("", "x", False)])
def test_exact_match_normalises_like_squad(prediction, reference, expected):
    assert exact_match(prediction, reference) is expected


def test_mean_scores_skip_missing_values_and_sum_states():
    metric = MeanScores(metric_keys(["token"]))
    metric.update([{"token/reliability": 1.0, "token/generality": None}, {"token/reliability": 0.0,
                                                                          "token/generality": 0.5}])
    metric.update([{"token/reliability": 0.5}])
    result = metric.compute()
    assert result["token/reliability"] == pytest.approx(0.5)
    assert result["token/generality"] == pytest.approx(0.5)
    assert result["token/locality"] is None
    assert {f.__name__ for f in metric._reductions.values()} == {"dim_zero_sum"}   # DDP-safe with uneven shards
