"""NER: CoNLL-2003 (``docs/tasks.md`` §9). Four prompts per sentence, one per entity type; the answer is a list of
entities. Its test set is CoNLL columns (token POS chunk NER), blank-line separated."""

from __future__ import annotations

import re
from pathlib import Path

from lit_edit.tasks.base import DownstreamTask, Query, ratio
from lit_edit.tasks.formats import BadLines
from lit_edit.tasks.paper import after_marker

FILE = "test-NER.txt"
NER_TYPES = {"PER": "Person", "LOC": "Location", "ORG": "Organization", "MISC": "Miscellaneous"}


def read_conll(path: Path, keep_docstart: bool = False, bad: BadLines | None = None) -> list[dict]:
    """CoNLL-2003 sentences; ``-DOCSTART-`` blocks are skipped unless ``keep_docstart`` (the reference harness
    queries them as sentences, ``docs/tasks.md`` §9). A malformed line makes its whole sentence bad (skipped with
    ``on_bad_line: skip``)."""
    bad = bad or BadLines()
    sentences, current, broken = [], [], False

    def close() -> None:
        if current and not broken and (keep_docstart or current[0][0] != "-DOCSTART-"):
            sentences.append({"tokens": [t[0] for t in current], "tags": [t[3] for t in current]})

    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                close()
                current, broken = [], False
                continue
            parts = line.split()
            if len(parts) != 4:
                bad(f"{path}:{number}: expected 4 columns (token POS chunk NER), found {len(parts)}; "
                    "its sentence is left out")
                broken = True
                continue
            current.append(parts)
    close()
    return sentences


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    """The sentences, each marked ``docstart``; ``reference_view`` keeps the ``-DOCSTART-`` blocks."""
    sentences = read_conll(path, keep_docstart=reference_view, bad=bad)
    for sentence in sentences:
        sentence["docstart"] = sentence["tokens"][:1] == ["-DOCSTART-"]
    return sentences


def write(path: Path, sentences) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("-DOCSTART- -X- -X- O\n\n")
        for s in sentences:
            for token, pos, chunk, tag in zip(s["tokens"], s["pos"], s["chunks"], s["tags"]):
                f.write(f"{token} {pos} {chunk} {tag}\n")
            f.write("\n")


def sentence_text(tokens: list[str]) -> str:
    """Tokens joined by spaces, with ``,`` and ``.`` glued to the previous token (reference rule)."""
    text = ""
    for token in tokens:
        text += token if token in {",", "."} else " " + token
    return text[1:]


def prompt(record: dict, entity_type: str) -> str:
    return (f"Please identify {NER_TYPES[entity_type]} Entity from the given text. "
            f"Text: {sentence_text(record['tokens'])} Entity:")


def entities(tokens: list[str], tags: list[str], kind: str) -> list[str]:
    """Entity strings of one type from IOB2 tags (a B- starts a span, following I- of the type extend it)."""
    spans, current = [], None
    for token, tag in zip(tokens, tags):
        if tag == f"B-{kind}":
            current = [token]
            spans.append(current)
        elif tag == f"I-{kind}" and current is not None:
            current.append(token)
        else:
            current = None
    return [" ".join(s) for s in spans]


def normalize_entity(text: str) -> str:
    """One entity as it is compared, gold and prediction alike: surrounding spaces and quotes off (``"…"``, a pair of
    ``'…'``), one space between words, a stand-alone ``.`` or ``,`` glued to the word before it (the rule the prompt
    writes the sentence with, :func:`sentence_text`: CoNLL's ``Salomon Bros .`` is shown as ``Salomon Bros.``), and
    no final full stop (``Acme.`` ending a list is ``Acme``)."""
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


def entity_counts(predicted: set[str], gold: set[str]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one sentence and entity type."""
    return len(predicted & gold), len(predicted - gold), len(gold - predicted)


def entity_f1(tp: float, fp: float, fn: float) -> float:
    """Entity-level F1 = 2·tp / (2·tp + fp + fn); 0 when there is nothing to count."""
    return 2 * tp / max(2 * tp + fp + fn, 1)


def paper_gold(words: list[str], tags: list[str], entity_type: str) -> list[str]:
    """The reference's gold entities of one type: a span runs from ``B-X`` to the next ``O`` (so it swallows an
    adjacent entity and drops the last token of a sentence-final one, which can leave an empty string)."""
    found, k = [], 0
    while k < len(tags):
        if tags[k] == f"B-{entity_type}":
            m = k
            for m in range(k, len(tags)):
                if tags[m] == "O":
                    break
            text = ""
            while k < m:
                text += " " + words[k]
                k += 1
            found.append(text[1:])
            k = m
        k += 1
    return found


def paper_counts(full_text: str, words: list[str], tags: list[str], entity_type: str) -> dict[str, int]:
    """One sentence and type of the reference's NER "accuracy": ``hits`` gold strings found as substrings of the
    text after ``Entity:``, over ``total`` = the number of gold strings; for MISC only, a sentence without gold MISC
    adds 1 to the total; an empty continuation with no gold is a hit out of 1."""
    predict = after_marker(full_text, "Entity:", 1)
    gold = paper_gold(words, tags, entity_type)
    if not gold:
        if len(predict) == 0:
            return {"hits": 1, "total": 1}
        return {"hits": 0, "total": int(entity_type == "MISC")}
    return {"hits": sum(entity in predict for entity in gold), "total": len(gold)}


class NERTask(DownstreamTask):
    """corrected: entity-level F1 from IOB2 spans, gold and listed items through one normalisation
    (:func:`normalize_entity`), each distinct entity of a sentence counted once, ``-DOCSTART-`` skipped: per type
    (``f1_PER`` ...), ``micro_f1`` over all entities of all types (primary, CoNLL's usual headline) and
    ``macro_f1``, the mean of the four types; paper: the reference's per-type substring hit rate with its span bug
    and MISC denominator, and their mean."""

    counters = ("n",) + tuple(f"{c}/{t}" for t in NER_TYPES for c in ("tp", "fp", "fn")) + tuple(
        f"paper/{c}/{t}" for t in NER_TYPES for c in ("hits", "total"))
    primary = {"corrected": "micro_f1", "paper": "acc_total"}

    def queries(self, record):
        return [Query(kind, prompt(record, kind), self.max_new_tokens) for kind in NER_TYPES]

    def score(self, record, generations, after_edit, option_nll=None):
        docstart = record.get("docstart", False)
        out = {"n": int(not docstart)}
        for kind in NER_TYPES:
            generation = generations[kind]
            if not docstart:
                predicted = parse_entities(generation.continuation)
                gold = gold_entities(record["tokens"], record["tags"], kind)
                for name, value in zip(("tp", "fp", "fn"), entity_counts(predicted, gold)):
                    out[f"{name}/{kind}"] = value
            counts = paper_counts(generation.reference_text, record["tokens"], record["tags"], kind)
            out[f"paper/hits/{kind}"], out[f"paper/total/{kind}"] = counts["hits"], counts["total"]
        return out

    def summarize(self, sums, ordered=None):
        f1 = {kind: entity_f1(sums[f"tp/{kind}"], sums[f"fp/{kind}"], sums[f"fn/{kind}"]) for kind in NER_TYPES}
        micro = entity_f1(*(sum(sums[f"{c}/{kind}"] for kind in NER_TYPES) for c in ("tp", "fp", "fn")))
        hit_rate = {kind: ratio(sums[f"paper/hits/{kind}"], sums[f"paper/total/{kind}"]) for kind in NER_TYPES}
        rates = [r for r in hit_rate.values() if r is not None]
        return {"corrected": {"micro_f1": micro, "macro_f1": sum(f1.values()) / len(f1),
                              **{f"f1_{k}": v for k, v in f1.items()}},
                "paper": {"acc_total": sum(rates) / len(rates) if rates else None,
                          **{f"acc_{k}": v for k, v in hit_rate.items()}}}


TASK = NERTask(name="ner", file=FILE, max_new_tokens=10, read=read, write=write, prompt=prompt)
