"""Corrected parsers and per-example scores of the 8 downstream tasks (``docs/tasks.md`` recommendations).

One rule before and after editing; a continuation is the *new* text only. Each scorer returns a number
in [0, 1] per example, and ``None`` in ``parse`` means "could not parse" (counted as wrong).
"""

from __future__ import annotations

import re
import string

from lit_edit.factworld.tasks import entities
from lit_edit.tasks.prompts import NER_TYPES

MAX_NEW_TOKENS = {"closed_domain_qa": 1, "nli": 1, "sentiment": 1, "dialogue": 1, "reasoning": 5,
                  "open_domain_qa": 20, "summarization": 25, "ner": 10}


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def first_word(continuation: str) -> str:
    words = continuation.strip().lower().split()
    return words[0].strip(string.punctuation) if words else ""


def parse_yes_no(continuation: str) -> bool | None:
    return {"yes": True, "no": False}.get(first_word(continuation))


def parse_true_false(continuation: str) -> bool | None:
    return {"true": True, "false": False}.get(first_word(continuation))


def parse_sentiment(continuation: str) -> int | None:
    return {"positive": 1, "negative": 0}.get(first_word(continuation))


def parse_choice(continuation: str) -> str | None:
    match = re.match(r"\s*\(?([ABCD])\b", continuation)
    return match.group(1) if match else None


def parse_number(continuation: str) -> float | None:
    match = re.search(r"-?\d[\d,]*(\.\d+)?", continuation)
    return float(match.group(0).replace(",", "")) if match else None


def normalize_entity(text: str) -> str:
    """One entity as it is compared, gold and prediction alike: surrounding spaces and quotes off (``"…"``, a pair of
    ``'…'``), one space between words, a stand-alone ``.`` or ``,`` glued to the word before it (the rule the prompt
    writes the sentence with, :func:`lit_edit.tasks.prompts.ner_sentence`: CoNLL's ``Salomon Bros .`` is shown as
    ``Salomon Bros.``), and no final full stop (``Acme.`` ending a list is ``Acme``)."""
    text = text.strip().strip('"').strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        text = text[1:-1]
    text = re.sub(r" ([.,])(?= |$)", r"\1", " ".join(text.split()))
    return text.rstrip(".").rstrip()


def _is_entity(item: str) -> bool:
    return item != "" and item.lower() != "none"


def parse_entities(continuation: str) -> set[str]:
    """Entities listed after ``Entity:``: cut at newline, split on ``,``/``;``/`` and ``, each item normalised
    (:func:`normalize_entity`) before the empty ones and ``none`` are dropped. A set: an entity named twice counts
    once."""
    parts = re.split(r",|;| and ", continuation.split("\n")[0])
    return {item for item in map(normalize_entity, parts) if _is_entity(item)}


def gold_entities(tokens: list[str], tags: list[str], entity_type: str) -> set[str]:
    """The gold entities of one type (IOB2 spans of CoNLL tokens) through the same :func:`normalize_entity`; a set,
    so an entity that occurs twice in the sentence counts once."""
    return {item for item in map(normalize_entity, entities(tokens, tags, entity_type)) if item}


def gold_label(task: str, record: dict):
    """The gold answer of a test record in the parsed space of its task."""
    if task == "closed_domain_qa":
        answer = record["answer"]
        return answer if isinstance(answer, bool) else str(answer).lower() == "true"
    if task == "nli":
        return record["label"] == "entailment"
    if task == "sentiment":
        return int(record["label"])
    if task == "dialogue":
        return record["answers"]
    if task == "reasoning":
        return float(record["answer"].split("#### ")[-1].replace(",", "").strip())
    if task == "open_domain_qa":
        return list(record["answer"])
    if task == "summarization":
        return record["summary"]
    raise KeyError(task)


PARSERS = {"closed_domain_qa": parse_yes_no, "nli": parse_true_false, "sentiment": parse_sentiment,
           "dialogue": parse_choice, "reasoning": parse_number}


def classification_correct(task: str, continuation: str, record: dict) -> bool:
    """Whether a continuation answers a classification-like task (everything but QA, summaries, NER)."""
    parsed = PARSERS[task](continuation)
    return parsed is not None and parsed == gold_label(task, record)


def open_qa_exact_match(continuation: str, answers: list[str]) -> bool:
    prediction = normalize_answer(continuation.split("\n")[0])
    return any(prediction == normalize_answer(a) for a in answers)


def ner_counts(predicted: set[str], gold: set[str]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one sentence and entity type."""
    return len(predicted & gold), len(predicted - gold), len(gold - predicted)


def entity_f1(tp: float, fp: float, fn: float) -> float:
    """Entity-level F1 = 2·tp / (2·tp + fp + fn); 0 when there is nothing to count."""
    return 2 * tp / max(2 * tp + fp + fn, 1)


__all__ = ["MAX_NEW_TOKENS", "NER_TYPES", "classification_correct", "entity_f1", "gold_entities", "gold_label",
           "ner_counts", "normalize_answer", "normalize_entity", "open_qa_exact_match", "parse_entities"]
