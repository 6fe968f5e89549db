"""Metrics: edit metrics (per request) and their DDP-safe aggregation."""

from lit_edit.answer_match import exact_match, normalize_answer
from lit_edit.metrics.aggregate import MeanScores
from lit_edit.metrics.edit import (
    FAMILIES,
    METRICS,
    PreEditReference,
    check_families,
    metric_keys,
    pre_edit_reference,
    score_requests,
)

__all__ = ["FAMILIES", "METRICS", "MeanScores", "PreEditReference", "check_families", "exact_match", "metric_keys",
           "normalize_answer", "pre_edit_reference", "score_requests"]
