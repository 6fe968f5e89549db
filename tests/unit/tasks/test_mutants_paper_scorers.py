"""The paper-mode scorers on inputs written from the rules of docs/tasks.md §2-9 by hand: the exact counters of
each quirk the mutants of the scorers found unchecked."""

from __future__ import annotations

import pytest

from lit_edit.tasks import closed_domain_qa, dialogue, ner, nli, open_domain_qa, reasoning


@pytest.mark.parametrize(("text", "gold", "expected"), [
    ("Is it? answer: no", False, {"correct": 1, "parsed": 1}),
    ("Is it? answer: no", True, {"correct": 0, "parsed": 1}),
    ("Is it? answer: No", False, {"correct": 1, "parsed": 1}),        # lower-cased before the comparison
    ("Is it? answer: nope", False, {"correct": 0, "parsed": 0}),       # before editing: exact " no" only
])
def test_closed_domain_qa_before_editing_takes_an_exact_no(text, gold, expected):
    assert closed_domain_qa.paper_counts(text, gold, after_edit=False) == expected


def test_nli_reads_all_the_text_after_the_last_answer_marker():
    text = "Premise. answer: false. Hypothesis? answer: true, as the premise says so"
    assert nli.paper_counts(text, gold_entailment=True) == {"correct": 1, "parsed": 1}
    assert nli.paper_counts("Premise? answer: maybe", gold_entailment=True) == {"correct": 0, "parsed": 0}


def test_dialogue_parses_only_the_letters_a_to_d():
    assert dialogue.paper_counts("Which? the answer is X, or Y", "A", after_edit=False) == {"correct": 0, "parsed": 0}
    assert dialogue.paper_counts("Which? the answer is (B)", "B", after_edit=False) == {"correct": 1, "parsed": 1}


def test_reasoning_counts_every_example_as_parsed():
    marker = "Therefore, the answer (arabic numerals) is:"
    assert reasoning.paper_counts(f"Q. {marker} 2,125 apples", "2,125") == {"correct": 1, "parsed": 1}
    assert reasoning.paper_counts(f"Q. {marker} 17", "2,125") == {"correct": 0, "parsed": 1}
    assert reasoning.paper_counts("Q. no marker at all 2,125", "2,125") == {"correct": 0, "parsed": 1}


@pytest.mark.parametrize(("continuation", "answers", "expected"), [
    ("Answer: paris or paris tomorrow", ["Paris"], (1, False)),        # the first word matches: one, at once
    ("Answer: big paris and paris end", ["Paris"], (2, False)),        # each inner single-word match counts
    ("Answer: London\nParis", ["Paris"], (1, False)),                  # a newline separates words
    ("Answer:", ["Paris"], (0, False)),                                 # nothing said: no match, no error
    ("Answer: big new york city", ["New York"], (1, True)),            # a multi-word match raises the flag
    ("Answer: big paris then new york city", ["Paris", "New York"], (2, True)),   # and adds to the count
])
def test_open_domain_qa_scan_counts_as_the_reference_did(continuation, answers, expected):
    assert open_domain_qa.paper_scan(continuation, answers, flagged=False) == expected


def test_replay_adds_the_flagged_count_once_the_flag_is_up():
    # example 1 sets the flag; examples 2 and 3 then add their "flag up" counts
    outcomes = [(1, 1, 0), (5, 0, 2), (4, 0, 1)]
    assert open_domain_qa.replay_paper_scan(outcomes) == 1 + 2 + 1
    assert open_domain_qa.replay_paper_scan([(3, 0, 9), (2, 0, 9)]) == 5


@pytest.mark.parametrize(("text", "entity_type", "expected"), [
    ("Sentence. Entity:", "PER", {"hits": 1, "total": 1}),              # empty prediction, no gold: a hit out of 1
    ("Sentence, no marker", "PER", {"hits": 1, "total": 1}),           # no "Entity:": the prediction is empty
    ("Sentence. Entity: ", "PER", {"hits": 0, "total": 0}),            # one character said, no gold
    ("Sentence. Entity: x", "MISC", {"hits": 0, "total": 1}),          # MISC without gold adds one to the total
])
def test_ner_without_gold_entities(text, entity_type, expected):
    assert ner.paper_counts(text, ["Rain", "fell"], ["O", "O"], entity_type) == expected
