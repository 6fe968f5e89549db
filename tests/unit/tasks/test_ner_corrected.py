"""Corrected-mode NER: every listed item and every gold entity go through one normalisation before they are compared
(quotes, ``none``, the prompt's glued ``.``/``,``); entity F1 per type, macro over the types and micro over all
entities, against hand counts."""

import pytest

from lit_edit.generation import Generation
from lit_edit.tasks import ner
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import TASKS

# CoNLL tokens as the data has them: "Salomon Bros ." is one ORG whose last token is the full stop
RECORD = {"tokens": ["Salomon", "Bros", ".", "hired", "John", "Smith", "and", "John", "Smith", "in", "New", "York", ",",
                     "Bodman", ",", "Longely", "said", "."],
          "tags": ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O",
                   "B-ORG", "I-ORG", "I-ORG", "O", "O"]}


def counts(continuations: dict[str, str], record: dict = RECORD) -> dict[str, tuple[int, int, int]]:
    """(tp, fp, fn) per type of one sentence, each type's continuation generated after its real prompt (`` none``
    for the types not given)."""
    texts = {kind: continuations.get(kind, " none") for kind in ner.NER_TYPES}
    generations = {kind: Generation([], [], text, ner.prompt(record, kind) + text) for kind, text in texts.items()}
    score = TASKS["ner"].score(record, generations, after_edit=False)
    return {kind: (score[f"tp/{kind}"], score[f"fp/{kind}"], score[f"fn/{kind}"]) for kind in continuations}


def test_the_prompt_shows_the_entities_with_glued_punctuation():
    assert "Text: Salomon Bros. hired John Smith and John Smith in New York, Bodman, Longely said. Entity:" in \
        ner.prompt(RECORD, "ORG")


@pytest.mark.parametrize(("continuation", "expected"), [
    (' "none"', (0, 0, 1)),                 # quoted none: no entity (was the entity "none")
    (' ""', (0, 0, 1)),                     # quoted nothing: no entity (was the empty entity)
    (" None.", (0, 0, 1)),                  # none with a full stop
    (" John Smith.", (1, 0, 0)),            # the list ends in a full stop
    (' "John Smith", "none"', (1, 0, 0)),
    (" 'John Smith'", (1, 0, 0)),           # single quotes around the item
    ("  John   Smith ;", (1, 0, 0)),        # runs of spaces, an empty item after the separator
    (" John Smith, John Smith", (1, 0, 0)),  # a repeated entity counts once (gold has it twice, also once)
    (" John Smith and Bob", (1, 1, 0)),
    (" Smith", (0, 1, 1)),
])
def test_person_items_are_normalised_before_none_and_empty_are_filtered(continuation, expected):
    assert counts({"PER": continuation})["PER"] == expected


@pytest.mark.parametrize(("continuation", "expected"), [
    (" Salomon Bros.", (1, 0, 1)),           # copied as the prompt shows it (was: fp and fn)
    (" Salomon Bros .", (1, 0, 1)),          # as the CoNLL tokens are spaced
    (' "Salomon Bros."\n', (1, 0, 1)),
    (" Salomon Bros", (1, 0, 1)),            # a final full stop is no part of the compared string, on either side
    (" Salomon", (0, 1, 2)),
    # an entity with a comma cannot be listed: the list is split on commas ("Bodman, Longely" is gold)
    (" Bodman, Longely", (0, 2, 2)),
])
def test_gold_and_prediction_meet_through_the_prompts_punctuation_rule(continuation, expected):
    assert counts({"ORG": continuation})["ORG"] == expected


def test_location_followed_by_a_comma_token():
    assert counts({"LOC": " New York,"})["LOC"] == (1, 0, 0)
    assert counts({"LOC": " New York , Bodman"})["LOC"] == (1, 1, 0)


def test_macro_and_micro_f1_equal_hand_counts():
    """Two sentences. PER: tp 2, fp 1, fn 1 -> F1 4/6; LOC: tp 0, fp 0, fn 2 -> 0; ORG: tp 1, fp 0, fn 0 -> 1;
    MISC: nothing at all -> 0. Macro (2/3 + 0 + 1 + 0) / 4 = 5/12; micro over all: tp 3, fp 1, fn 3 -> 6/10."""
    first = {"tokens": ["Anna", "met", "Bob", "in", "Paris", "."], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]}
    second = {"tokens": ["Carl", "of", "Acme", "left", "Rome", "."], "tags": ["B-PER", "O", "B-ORG", "O", "B-LOC", "O"]}
    outputs = [{"PER": " Anna, Carl", "LOC": " none", "ORG": ' "none"', "MISC": " none"},
               {"PER": " Carl", "LOC": ' ""', "ORG": " Acme.", "MISC": " None"}]
    scores = []
    for record, output in zip([first, second], outputs):
        generations = {kind: Generation([], [], text, ner.prompt(record, kind) + text)
                       for kind, text in output.items()}
        scores.append(TASKS["ner"].score(record, generations, after_edit=False))
    metric = DownstreamMetric("ner")
    metric.update(scores, [0, 1])
    corrected = metric.compute()["corrected"]
    assert corrected["f1_PER"] == pytest.approx(2 / 3) and corrected["f1_LOC"] == 0.0
    assert corrected["f1_ORG"] == pytest.approx(1.0) and corrected["f1_MISC"] == 0.0
    assert corrected["macro_f1"] == pytest.approx(5 / 12)
    assert corrected["micro_f1"] == pytest.approx(0.6)
    assert TASKS["ner"].primary["corrected"] == "micro_f1"
