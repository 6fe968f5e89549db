"""What the reference harness's scorers share, for ``paper`` mode (``docs/tasks.md`` §1).

Every paper-mode scorer, kept in its task's module beside the corrected one, reads what the reference looked at:
``full_text``, the decode of prompt + continuation with the tokenizer's clean-up and the EOS token spelled out
(:attr:`lit_edit.generation.Generation.reference_text`), and returns that example's contribution to the
reference's counters. Both modes are computed from the same generation.
"""

from __future__ import annotations


def after_marker(full_text: str, marker: str, index: int) -> str:
    """``full_text.split(marker)[index]`` for index 1 or -1 (empty when the marker is missing)."""
    parts = full_text.split(marker)
    if index == -1:
        return parts[-1]
    return parts[index] if len(parts) > index else ""


def four_counters(says_positive: bool, says_negative: bool, gold_positive: bool) -> dict[str, int]:
    """The reference's ``if``/``elif`` over (positive & gold, negative & not gold, negative & gold, positive & not
    gold): parsed when either word was found, correct when the gold's word was — so an answer holding both words is
    correct whatever the gold."""
    if not (says_positive or says_negative):
        return {"correct": 0, "parsed": 0}
    return {"correct": int(says_positive if gold_positive else says_negative), "parsed": 1}


def substring_pair(predict: str, positive: str, negative: str, gold_positive: bool) -> dict[str, int]:
    """:func:`four_counters` of two words looked for as substrings of the lower-cased ``predict``."""
    predict = predict.lower()
    return four_counters(positive in predict, negative in predict, gold_positive)
