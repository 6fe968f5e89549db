"""Downstream evaluation's plumbing on a hand-built bigram model and a small task written here: the stop string
of a query, the summed option NLLs (read off the table), records without options, and the after-edit flag."""

from __future__ import annotations

import pytest
import torch

from lit_edit.models.loading import load_tokenizer
from lit_edit.tasks.base import DownstreamTask, Query
from lit_edit.tasks.evaluate import generate_for_records, option_nlls, score_records
from tests.conftest import FACTWORLD
from tests.unit.metrics.test_edit_metrics import STRONG, BigramModel, ids


class EchoTask(DownstreamTask):
    """One query per record (its prompt, 6 tokens, stopping at a newline); options where the record has them;
    the score says what it was handed."""

    def queries(self, record):
        return [Query("only", record["prompt"], 6, stop="\n")]

    def options(self, record):
        return (record["prompt"], record["options"]) if "options" in record else None

    def score(self, record, generations, after_edit, option_nll=None):
        return {"text": generations["only"].continuation, "after_edit": after_edit, "option_nll": option_nll}


def echo_task() -> EchoTask:
    return EchoTask(name="echo", file="echo.jsonl", max_new_tokens=6, read=None, write=None, prompt=None)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FACTWORLD / "tokenizer-gpt2")


def test_a_query_stop_string_cuts_the_continuation(tokenizer):
    prompt = "The capital is"
    chain = [ids(tokenizer, prompt)[-1], *ids(tokenizer, " Paris"), *ids(tokenizer, "\n"), *ids(tokenizer, " London")]
    model = BigramModel(len(tokenizer))
    with torch.no_grad():
        for row, token in zip(chain, chain[1:]):
            model.table[row, token] = STRONG
    [generated] = generate_for_records(model, tokenizer, echo_task(), [{"prompt": prompt}])
    assert generated["only"].continuation == " Paris"


def test_option_nlls_are_summed_per_option_and_records_without_options_are_skipped(tokenizer):
    model = BigramModel(len(tokenizer))
    with torch.no_grad():
        model.table.normal_(generator=torch.Generator().manual_seed(0))
    records = [{"prompt": "Is it true?"}, {"prompt": "Is it true?", "options": ["yes", "no way"]},
               {"prompt": "Mood:", "options": ["Brisk Harbor"]}]
    log_probs = model.table.detach().double().log_softmax(-1)

    def summed_nll(prompt: str, answer: str) -> float:
        tokens = [ids(tokenizer, prompt)[-1], *ids(tokenizer, " " + answer)]
        return -float(sum(log_probs[a, b] for a, b in zip(tokens, tokens[1:])))

    assert min(len(ids(tokenizer, " no way")), len(ids(tokenizer, " Brisk Harbor"))) > 1   # sum ≠ mean
    result = option_nlls(model, tokenizer, echo_task(), records)
    assert result[0] is None and len(result) == 3
    assert result[1] == pytest.approx([summed_nll("Is it true?", "yes"), summed_nll("Is it true?", "no way")],
                                      rel=1e-5)
    assert result[2] == pytest.approx([summed_nll("Mood:", "Brisk Harbor")], rel=1e-5)


@pytest.mark.parametrize("after_edit", [True, False])
def test_score_records_hands_each_record_the_after_edit_flag(tokenizer, after_edit):
    model = BigramModel(len(tokenizer))
    [scored] = score_records(model, tokenizer, echo_task(), [{"prompt": "Hi", "options": ["a"]}], after_edit,
                             choice_loglik=True)
    assert scored["after_edit"] is after_edit and len(scored["option_nll"]) == 1
