"""NLI: RTE (``docs/tasks.md`` §3). Whether a sentence entails another, True or False; one of the choice tasks."""

from __future__ import annotations

from pathlib import Path

from lit_edit.tasks.base import ChoiceTask
from lit_edit.tasks.formats import BadLines, GoldCheck, read_tsv, write_tsv
from lit_edit.tasks.paper import after_marker, substring_pair
from lit_edit.tasks.parsing import first_word

FILE = "test-NLI.tsv"
COLUMNS = ["index", "sentence1", "sentence2", "label"]
GOLD = GoldCheck("label", "'entailment' or 'not_entailment'", lambda v: v in ("entailment", "not_entailment"))


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    """The rows; ``reference_view`` adds the texts as the reference read them (quotes stripped) as
    ``paper_sentence1/2``."""
    records = read_tsv(path, COLUMNS, bad=bad, gold=GOLD)
    if reference_view:
        legacy_rows = read_tsv(path, COLUMNS, legacy_quotes=True, bad=BadLines("skip"), gold=GOLD)
        by_index = {row["index"]: row for row in legacy_rows}
        for record in records:
            legacy = by_index.get(record["index"], record)
            record["paper_sentence1"], record["paper_sentence2"] = legacy["sentence1"], legacy["sentence2"]
    return records


def write(path: Path, records) -> None:
    write_tsv(path, COLUMNS, records)


def prompt(record: dict) -> str:
    return f"{record['sentence1']} entails the {record['sentence2']}. True or False? answer:"


def paper_prompt(record: dict) -> str:
    """The prompt of the texts as the reference read them (:func:`read` with ``reference_view``)."""
    return prompt({**record, "sentence1": record.get("paper_sentence1", record["sentence1"]),
                   "sentence2": record.get("paper_sentence2", record["sentence2"])})


def parse(continuation: str) -> bool | None:
    return {"true": True, "false": False}.get(first_word(continuation))


def gold_label(record: dict) -> bool:
    return record["label"] == "entailment"


def paper_counts(full_text: str, gold_entailment: bool) -> dict[str, int]:
    """The reference's score: substring ``true`` / ``false`` in the text after the last ``answer:`` (``untrue`` is
    true). The reference's two ``if`` (not ``elif``) add an answer holding both words to two of its counters; here it
    is one parsed answer (a one-token answer never holds both)."""
    return substring_pair(after_marker(full_text, "answer:", -1), "true", "false", gold_entailment)


TASK = ChoiceTask(
    name="nli", file=FILE, max_new_tokens=1, read=read, write=write, prompt=prompt, parse=parse,
    gold_label=gold_label, paper_prompt=paper_prompt,
    paper_counts=lambda text, record, after_edit: paper_counts(text, record["label"] == "entailment"),
    option_texts=("True", "False"), gold_option=lambda record: 0 if gold_label(record) else 1)
