"""The edit-metric scores of a run (lit_edit/modules/edit_scores.py): the final scores taken from the last periodic
point when no edit came after it, equal to scoring every edit again."""

from __future__ import annotations

import pytest

import lit_edit.modules.edit_scores as edit_scores
from lit_edit.data import EditDataModule
from lit_edit.metrics import pre_edit_reference
from lit_edit.models import load_model_and_tokenizer
from lit_edit.modules.edit_scores import EditScores
from tests.conftest import FACTWORLD, ROOT

FAMILIES = ("token", "probability", "generation")


@pytest.fixture(scope="module")
def setting():
    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints" / "factworld-gpt2"))
    data = EditDataModule(root=str(FACTWORLD), n=6, batch_size=2)
    data.setup("test")
    requests = data.requests
    return model, tokenizer, requests, pre_edit_reference(model, tokenizer, requests, FAMILIES, 8)


def _scores(setting) -> EditScores:
    scores = EditScores(FAMILIES, max_new_tokens=8, batch_size=4)
    scores.reference = setting[3]
    return scores


@pytest.fixture
def calls(monkeypatch):
    """How many requests were scored on the model."""
    counted = []
    original = edit_scores.score_requests
    monkeypatch.setattr(edit_scores, "score_requests",
                        lambda model, tokenizer, requests, *args: counted.append(len(requests)) or original(
                            model, tokenizer, requests, *args))
    return counted


def test_final_scores_equal_scoring_every_edit_again(setting):
    """The straightforward path (every edit scored after the last step) against the final scores taken from a
    periodic point at the same number of edits: the same means and the same scores of every request."""
    model, tokenizer, requests, _ = setting
    fresh = _scores(setting)
    expected = fresh.final(model, tokenizer, requests, rollback=False, evaluate=True)
    reused = _scores(setting)
    reused.periodic(model, tokenizer, requests, [2, 2, 2], cohort_batches=1)
    assert reused.final(model, tokenizer, requests, rollback=False, evaluate=True) == expected
    assert reused.by_request["final"] == fresh.by_request["final"]
    assert list(reused.by_request["final"]) == [r.record_id for r in requests]


def test_the_last_periodic_point_is_not_scored_again(setting, calls):
    model, tokenizer, requests, _ = setting
    scores = _scores(setting)
    scores.periodic(model, tokenizer, requests, [2, 2, 2], cohort_batches=1)
    assert sum(calls) == 6
    scores.final(model, tokenizer, requests, rollback=False, evaluate=True)
    assert sum(calls) == 6


def test_edits_after_the_last_periodic_point_are_all_scored_again(setting, calls):
    """Four edits at the last periodic point, six at the end: all six are scored, none taken from the point."""
    model, tokenizer, requests, _ = setting
    fresh = _scores(setting)
    expected = fresh.final(model, tokenizer, requests, rollback=False, evaluate=True)
    scores = _scores(setting)
    scores.periodic(model, tokenizer, requests[:4], [2, 2], cohort_batches=1)
    calls.clear()
    assert scores.final(model, tokenizer, requests, rollback=False, evaluate=True) == expected
    assert sum(calls) == 6 and scores.by_request["final"] == fresh.by_request["final"]
