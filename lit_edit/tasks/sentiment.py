"""Sentiment: SST-2 (``docs/tasks.md`` §4). Positive or negative; one of the choice tasks."""

from __future__ import annotations

from pathlib import Path

from lit_edit.tasks.base import ChoiceTask
from lit_edit.tasks.formats import BadLines, GoldCheck, read_tsv, write_tsv
from lit_edit.tasks.paper import after_marker, substring_pair
from lit_edit.tasks.parsing import first_word

FILE = "test-SentimentAnalysis.tsv"
COLUMNS = ["sentence", "label"]
GOLD = GoldCheck("label", "0 or 1", lambda v: v in ("0", "1"))


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    return read_tsv(path, COLUMNS, bad=bad, gold=GOLD)


def write(path: Path, records) -> None:
    write_tsv(path, COLUMNS, records)


def prompt(record: dict) -> str:
    return ("For each snippet of text,label the sentiment of the text as positive or negative.The answer should be "
            f"exact 'positive' or 'negative'. text: {record['sentence']} answer:")


def parse(continuation: str) -> int | None:
    return {"positive": 1, "negative": 0}.get(first_word(continuation))


def gold_label(record: dict) -> int:
    return int(record["label"])


def paper_counts(full_text: str, gold_positive: bool) -> dict[str, int]:
    """The reference's score: substring ``positive`` / ``negative`` after the last ``answer:``."""
    return substring_pair(after_marker(full_text, "answer:", -1), "positive", "negative", gold_positive)


TASK = ChoiceTask(
    name="sentiment", file=FILE, max_new_tokens=1, read=read, write=write, prompt=prompt, parse=parse,
    gold_label=gold_label, paper_prompt=prompt,
    paper_counts=lambda text, record, after_edit: paper_counts(text, int(record["label"]) == 1),
    option_texts=("negative", "positive"), gold_option=gold_label)
