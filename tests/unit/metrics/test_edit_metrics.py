"""Edit metrics against hand-built logits: token accuracy, probability comparison, exact match, aggregation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lit_edit.editing.requests import EditRequest, LocalityProbe, PortabilityProbe
from lit_edit.metrics import MeanScores, exact_match, metric_keys, pre_edit_reference, score_requests
from lit_edit.models.loading import load_tokenizer
from lit_edit.scoring import score_answers
from tests.conftest import FACTWORLD


class BigramModel(nn.Module):
    """Logits at position t depend only on the token at t: a table we write by hand. It also decodes greedily (the
    generation family): no state is needed, so the KV cache it hands back is None."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(vocab, vocab))

    def forward(self, input_ids, attention_mask=None, **unused):
        return type("Out", (), {"logits": self.table[input_ids], "past_key_values": None})()


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
    r = request(rephrase_prompts=("Hathio Mafubral was born in",))
    model = BigramModel(len(tokenizer))
    new, true = ids(tokenizer, " Grauden"), ids(tokenizer, " Vashti Falls")
    last, rephrase_last = ids(tokenizer, r.text)[-1], ids(tokenizer, r.rephrase_prompts[0])[-1]
    assert rephrase_last != last
    with torch.no_grad():
        model.table[last, new[0]] = 4.0          # p(new) high after the prompt
        model.table[rephrase_last, true[0]] = 2.0   # the true answer's first token favoured after the rephrase
    [scores] = score_requests(model, tokenizer, [r], ["probability"], None)
    assert scores["probability/reliability"] == 1.0
    log_probs = model.table.detach().log_softmax(-1)
    nll_new = -float(log_probs[last, new[0]])
    nll_true = -float(sum(log_probs[a, b] for a, b in zip([last] + true[:-1], true))) / len(true)
    assert scores["probability/reliability_magnitude"] == pytest.approx(math.exp(-nll_new) - math.exp(-nll_true),
                                                                         rel=1e-5)
    # the rephrase ends with another token, whose row favours the true answer: the edit does not generalise
    rephrase_nll_new = -float(log_probs[rephrase_last, new[0]])
    rephrase_nll_true = -float(log_probs[rephrase_last, true[0]] + log_probs[true[0], true[1]]) / 2
    assert rephrase_nll_true < rephrase_nll_new and scores["probability/generality"] == 0.0
    assert scores["probability/generality_magnitude"] == pytest.approx(
        math.exp(-rephrase_nll_new) - math.exp(-rephrase_nll_true), rel=1e-5)


STRONG = 10.0   # the logit that makes a token the argmax of its row (p ≈ 0.92 against 2,056 zeros)


def _chain(model, last: int, answer: list[int], assigned: dict[int, int]) -> None:
    """Rows that make ``last`` predict ``answer`` token by token, then EOS (token 0, also a flat row's argmax);
    ``assigned`` keeps the row → token choices so that no row is given two."""
    for row, token in zip([last, *answer], [*answer, 0]):
        assert assigned.setdefault(row, token) == token, (row, token, assigned[row])
        with torch.no_grad():
            model.table[row] = 0.0
            model.table[row, token] = STRONG


def _nll(log_probs, last: int, answer: list[int]) -> float:
    """Mean per-token NLL of ``answer`` after a prompt ending in ``last``, read off the bigram table."""
    return -float(sum(log_probs[a, b] for a, b in zip([last, *answer[:-1]], answer))) / len(answer)


def test_every_metric_of_every_family_on_hand_built_logits(tokenizer):
    """Three rephrases, locality probes and portability probes, each ending in its own token, with partial
    correctness (and two-token answers), so that a fraction differs from all-or-nothing, from the first prompt's
    score and from reliability; every value derived here from the table (token and generation: by construction)."""
    r0 = EditRequest(prompt="Where was {} born?", subject="Hathio Mafubral", target_new="Port Ivory",
                     target_true="Vashti Falls",
                     rephrase_prompts=("Hathio Mafubral was born in", "The birthplace of Hathio Mafubral is",
                                       "Hathio Mafubral's hometown:"),
                     locality=(LocalityProbe("Daizes Geakio owns a", "Orrin Motors"),
                               LocalityProbe("Ulmo Breck plays", "Quillon Systems"),
                               LocalityProbe("Tova Rindle works for", "Brisk Harbor")),
                     portability=(PortabilityProbe("Hathio Mafubral's birth city belongs to", "Torvale"),
                                  PortabilityProbe("The country of Hathio Mafubral's birth city is called", "Torvale"),
                                  PortabilityProbe("The country Hathio Mafubral comes from", "Torvale")),
                     record_id="r0")
    r1 = EditRequest(prompt="{} is employed by", subject="Tova Rindle", target_new="Saint Oda", target_true="Grauden",
                     record_id="r1")
    last = lambda text: ids(tokenizer, text)[-1]
    new, true, portable = (ids(tokenizer, " " + a) for a in ("Port Ivory", "Vashti Falls", "Torvale"))
    local = [ids(tokenizer, " " + probe.answer) for probe in r0.locality]
    prompts = [r0.text, *r0.rephrase_prompts, *(p.prompt for p in r0.locality), *(p.prompt for p in r0.portability),
               r1.text]
    assert len({last(p) for p in prompts}) == len(prompts)               # every prompt ends in its own token
    assert [len(a) for a in (new, true, *local, ids(tokenizer, " Saint Oda"))] == [2] * 6

    before, assigned = BigramModel(len(tokenizer)), {}
    for probe, answer in zip(r0.locality, local):                         # the unedited model answers each probe
        _chain(before, last(probe.prompt), answer, assigned)
    reference = pre_edit_reference(before, tokenizer, [r0, r1], ["token", "generation"])
    after = BigramModel(len(tokenizer))
    after.load_state_dict(before.state_dict())
    assigned = {k: v for k, v in assigned.items() if k not in (last(r0.locality[1].prompt),
                                                               last(r0.locality[2].prompt), local[2][0])}
    _chain(after, last(r0.text), new, assigned)                           # the edit holds after the prompt...
    for rephrase in r0.rephrase_prompts[:2]:                              # ...and two of the three rephrases;
        _chain(after, last(rephrase), new, assigned)
    _chain(after, last(r0.rephrase_prompts[2]), true, assigned)           # the third still gives the true answer
    _chain(after, last(r0.locality[1].prompt), new, assigned)             # probe 2: the first answer position moves
    _chain(after, last(r0.locality[2].prompt), true, assigned)            # probe 3: both positions move
    _chain(after, local[2][0], ids(tokenizer, " Grauden"), assigned)
    _chain(after, last(r0.portability[0].prompt), portable, assigned)     # portability: one right, one says the
    _chain(after, last(r0.portability[1].prompt), true, assigned)         # true answer, one flat (says EOS)
    _chain(after, ids(tokenizer, " Saint")[0], ids(tokenizer, " Oda"), assigned)   # r1: the second token only

    families = ["token", "probability", "generation"]
    s0, s1 = score_requests(after, tokenizer, [r0, r1], families, reference)
    assert set(s0) == set(metric_keys(families))
    # token: teacher-forced accuracy per prompt, the mean over prompts; locality against the pre-edit argmax
    assert (s0["token/reliability"], s1["token/reliability"]) == (1.0, 0.5)
    assert s0["token/generality"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert s0["token/locality"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert s0["token/portability"] == pytest.approx(1 / 3)
    # generation: greedy text, exact match; locality: the same text as before the edit
    assert (s0["generation/reliability"], s1["generation/reliability"]) == (1.0, 0.0)
    assert s0["generation/generality"] == pytest.approx(2 / 3)
    assert s0["generation/locality"] == pytest.approx(1 / 3)
    assert s0["generation/portability"] == pytest.approx(1 / 3)
    # probability: [NLL(new) < NLL(true)] and e^−NLL(new) − e^−NLL(true) per prompt; locality compares the probe's
    # answer with the new target on the edited model
    log_probs = after.table.detach().log_softmax(-1)
    for scores, request in ((s0, r0), (s1, r1)):
        answers = [ids(tokenizer, " " + a) for a in (request.target_new, request.target_true)]
        for metric, texts in (("reliability", [request.text]), ("generality", request.rephrase_prompts)):
            pairs = [[_nll(log_probs, last(t), a) for a in answers] for t in texts]
            if not pairs:
                assert scores[f"probability/{metric}"] is None
                continue
            assert scores[f"probability/{metric}"] == pytest.approx(sum(n < t for n, t in pairs) / len(pairs))
            assert scores[f"probability/{metric}_magnitude"] == pytest.approx(
                sum(math.exp(-n) - math.exp(-t) for n, t in pairs) / len(pairs), rel=1e-5)
    pairs = [(_nll(log_probs, last(p.prompt), a), _nll(log_probs, last(p.prompt), new)) for p, a in zip(r0.locality,
                                                                                                        local)]
    assert [k < n for k, n in pairs] == [True, False, False]
    assert s0["probability/locality"] == pytest.approx(1 / 3)
    assert s0["probability/locality_magnitude"] == pytest.approx(
        sum(math.exp(-k) - math.exp(-n) for k, n in pairs) / 3, rel=1e-5)
    assert s0["probability/reliability"] == 1.0 and s0["probability/generality"] == pytest.approx(2 / 3)
    assert s1["probability/portability"] is None and s1["token/generality"] is None and s1["token/locality"] is None


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
