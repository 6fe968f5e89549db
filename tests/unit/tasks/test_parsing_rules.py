"""The corrected parsers' normalisation rules and gold labels (each task's module in lit_edit/tasks/, the shared
`first_word` in lit_edit/tasks/parsing.py, `normalize_answer` in lit_edit/answer_match.py), each written out by
hand from the rule in the function's docstring."""

import pytest

from lit_edit.answer_match import normalize_answer
from lit_edit.tasks.ner import normalize_entity
from lit_edit.tasks.parsing import first_word
from lit_edit.tasks.registry import get_task


def test_normalize_answer_lowers_and_drops_punctuation_and_articles():
    assert normalize_answer("The Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("A cat and an owl, the END.") == "cat and owl end"


def test_first_word_of_nothing_is_empty():
    assert first_word("") == "" and first_word("  \n ") == ""
    assert first_word(" Yes, it is") == "yes"


@pytest.mark.parametrize("text, expected", [
    ('"Xerox"', "Xerox"),                       # quotes off, a leading X kept
    ("''", ""),                                 # a pair of single quotes around nothing
    ("'Acme'", "Acme"),
    ("Salomon Bros . Inc", "Salomon Bros. Inc"),  # a stand-alone full stop glued to the word before it
    ("FEDEX.", "FEDEX"),                        # only the final full stop goes, a final X stays
    ("Acme ..", "Acme"),                        # full stops off the end, then the space before them
])
def test_normalize_entity(text, expected):
    assert normalize_entity(text) == expected


def test_gold_labels_of_every_task():
    assert get_task("closed_domain_qa").gold_label({"answer": "True"}) is True
    assert get_task("closed_domain_qa").gold_label({"answer": "false"}) is False
    assert get_task("closed_domain_qa").gold_label({"answer": False}) is False
    assert get_task("reasoning").gold_label({"answer": "3 + 4 = 7\n#### 1,207"}) == 1207.0
    assert get_task("open_domain_qa").gold_label({"answer": ("Paris", "paris, France")}) == ["Paris", "paris, France"]
    assert get_task("summarization").gold_label({"summary": "They met."}) == "They met."
    with pytest.raises(KeyError, match="translation"):
        get_task("translation").gold_label({})


@pytest.mark.parametrize("task, continuation, record, correct", [
    ("closed_domain_qa", " No, it is not", {"answer": "False"}, True),
    ("closed_domain_qa", " yes", {"answer": "False"}, False),
    ("nli", " True.", {"label": "entailment"}, True),
    ("sentiment", " negative", {"label": 0}, True),
    ("sentiment", " great", {"label": 1}, False),      # not parsed: wrong, even against either label
    ("sentiment", " great", {"label": 0}, False),
    ("dialogue", " (C) sure", {"answers": "C"}, True),
    ("reasoning", " 12 apples", {"answer": "so\n#### 12"}, True),
])
def test_classification_correct(task, continuation, record, correct):
    assert get_task(task).is_correct(continuation, record) is correct
