"""Mean scores accumulate in float64, and SQuAD normalisation's output, written out by hand."""

from __future__ import annotations

import pytest

from lit_edit.answer_match import normalize_answer
from lit_edit.metrics import MeanScores


def test_mean_scores_keep_a_difference_float32_would_round_away():
    """1 + 3e-8 is 1 in float32 (spacing 1.2e-7 at 1); the mean of 1 and 3e-8, summed in float64, keeps it."""
    metric = MeanScores(["probability/reliability_magnitude"])
    metric.update([{"probability/reliability_magnitude": 1.0}, {"probability/reliability_magnitude": 3e-8}])
    assert metric.compute()["probability/reliability_magnitude"] == pytest.approx(0.500000015, rel=1e-12)


@pytest.mark.parametrize(("text", "expected"), [
    ("The  Big, Apple!", "big apple"), ("an owl\tand a\ncat", "owl and cat"), ("  ", "")])
def test_normalize_answer_lowercases_drops_punctuation_and_articles_and_single_spaces(text, expected):
    assert normalize_answer(text) == expected
