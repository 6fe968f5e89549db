"""Closed-domain QA: BoolQ (``docs/tasks.md`` §2). A yes/no answer about a passage; one of the four choice tasks."""

from __future__ import annotations

from pathlib import Path

from lit_edit.tasks.base import ChoiceTask
from lit_edit.tasks.formats import BadLines, GoldCheck, read_jsonl, write_jsonl
from lit_edit.tasks.paper import after_marker, four_counters
from lit_edit.tasks.parsing import first_word

FILE = "test-ClosedDomainQA.jsonl"
GOLD = GoldCheck("answer", "true or false", lambda v: isinstance(v, bool) or str(v).lower() in ("true", "false"))


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    return read_jsonl(path, ("question", "answer", "passage"), bad, GOLD)


def prompt(record: dict) -> str:
    return ("Please answer the given question based on the passage. The answer should be exact 'yes' or 'no'. "
            f"passage: {record['passage']} question: {record['question']}. answer:")


def parse(continuation: str) -> bool | None:
    return {"yes": True, "no": False}.get(first_word(continuation))


def gold_label(record: dict) -> bool:
    answer = record["answer"]
    return answer if isinstance(answer, bool) else str(answer).lower() == "true"


def paper_counts(full_text: str, gold: bool, after_edit: bool) -> dict[str, int]:
    """The reference's score: the text between the first ``answer:`` and the next; exact `` yes``/`` no`` before
    editing, substring after.

    Returns the reference's counters: ``correct`` (its TP + "FN"), ``parsed`` (TP+FN+TN+FP)."""
    predict = after_marker(full_text, "answer:", 1).lower()
    if after_edit:
        return four_counters("yes" in predict, "no" in predict, gold)
    return four_counters(predict == " yes", predict == " no", gold)


TASK = ChoiceTask(
    name="closed_domain_qa", file=FILE, max_new_tokens=1, read=read, write=write_jsonl, prompt=prompt,
    parse=parse, gold_label=gold_label, paper_prompt=prompt,
    paper_counts=lambda text, record, after_edit: paper_counts(text, gold_label(record), after_edit),
    option_texts=("yes", "no"), gold_option=lambda record: 0 if gold_label(record) else 1)
