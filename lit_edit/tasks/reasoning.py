"""Reasoning: GSM8K (``docs/tasks.md`` §6). A grade-school word problem, answered with a number."""

from __future__ import annotations

import re
from pathlib import Path

from lit_edit.tasks.base import DownstreamTask, Query, ratio
from lit_edit.tasks.formats import BadLines, GoldCheck, read_jsonl, write_jsonl
from lit_edit.tasks.paper import after_marker

FILE = "test-reasoning.jsonl"
MARKER = "Therefore, the answer (arabic numerals) is:"


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").strip())
    except ValueError:
        return False
    return True


GOLD = GoldCheck("answer", "a solution ending in '#### <number>'",
                 lambda v: isinstance(v, str) and _is_number(v.split("#### ")[-1]))


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    return read_jsonl(path, ("question", "answer"), bad, GOLD)


def prompt(record: dict, hinted: bool = True) -> str:
    """``hinted`` feeds the gold rationale, as the reference does."""
    hint = record["answer"].split("#### ")[0] + " " if hinted else ""
    return f"Q: {record['question']} A:Let's think step by step. {hint}{MARKER}"


def parse(continuation: str) -> float | None:
    """The first number of the continuation (thousands commas dropped)."""
    match = re.search(r"-?\d[\d,]*(\.\d+)?", continuation)
    return float(match.group(0).replace(",", "")) if match else None


def gold_label(record: dict) -> float:
    return float(record["answer"].split("#### ")[-1].replace(",", "").strip())


def paper_counts(full_text: str, gold_answer: str) -> dict[str, int]:
    """The reference's score: correct iff the raw gold string (``2,125``) is a substring of the continuation (``1``
    is in `` 10``). Nothing counts as unparsed."""
    predict = after_marker(full_text, MARKER, 1)
    return {"correct": int(gold_answer in predict), "parsed": 1}


class ReasoningTask(DownstreamTask):
    """corrected: the question alone (no solution in the prompt), the first number compared numerically; paper:
    the reference's prompt with the gold solution (labelled ``hinted``), raw substring match."""

    counters = ("n", "correct", "parsed", "paper/correct")
    primary = {"corrected": "acc_all", "paper": "accuracy_hinted"}

    def queries(self, record):
        return [Query("corrected", prompt(record, hinted=False), self.max_new_tokens),
                Query("paper", prompt(record, hinted=True), self.max_new_tokens)]

    def score(self, record, generations, after_edit, option_nll=None):
        parsed = parse(generations["corrected"].continuation)
        gold = record["answer"].split("#### ")[-1].strip()
        return {"n": 1, "parsed": int(parsed is not None),
                "correct": int(parsed is not None and parsed == gold_label(record)),
                "paper/correct": paper_counts(generations["paper"].reference_text, gold)["correct"]}

    def summarize(self, sums, ordered=None):
        return {"corrected": {"acc_all": ratio(sums["correct"], sums["n"]),
                              "parse_rate": ratio(sums["parsed"], sums["n"])},
                "paper": {"accuracy_hinted": ratio(sums["paper/correct"], sums["n"])}}


TASK = ReasoningTask(name="reasoning", file=FILE, max_new_tokens=5, read=read, write=write_jsonl, prompt=prompt,
                     parse=parse, gold_label=gold_label)
