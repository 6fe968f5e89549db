"""Dialogue: MuTual (``docs/tasks.md`` §5). The reply (A-D) consistent with a dialogue; one of the choice tasks.
Its test set is a folder of ``dev_N.txt`` files, one JSON object each."""

from __future__ import annotations

import json
import re
from pathlib import Path

from lit_edit.tasks.base import ChoiceTask
from lit_edit.tasks.formats import BadLines, TaskFormatError, missing_fields
from lit_edit.tasks.paper import after_marker

FILE = "test-dialogue"


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    """One JSON object per ``dev_N.txt`` file, ordered by N."""
    named = sorted(path.glob("dev_*.txt"))
    if not named:
        raise TaskFormatError(f"{path}: no dev_*.txt files")
    for file in named:
        if not file.stem[4:].isdigit():
            bad(f"{file}: expected a name dev_<number>.txt")
    files = sorted((f for f in named if f.stem[4:].isdigit()), key=lambda p: int(p.stem[4:]))
    records = []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            bad(f"{file}: not valid JSON ({e})")
            continue
        problem = missing_fields(record, ("answers", "options", "article", "id"), str(file))
        if not problem and (len(record["options"]) != 4 or record["answers"] not in ("A", "B", "C", "D")):
            problem = f"{file}: needs 4 options and an answer in A-D"
        if problem:
            bad(problem)
            continue
        records.append(record)
    return records


def write(path: Path, records, prefix: str = "dev") -> None:
    path.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records, 1):
        (path / f"{prefix}_{i}.txt").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def prompt(record: dict) -> str:
    o = record["options"]
    return (f"Q: {record['article']} Which choice is correct? Answer Chioces: (A){o[0]}(B){o[1]}(C){o[2]}(D){o[3]}"
            " A: Among A through D, the answer is")


def parse(continuation: str) -> str | None:
    match = re.match(r"\s*\(?([ABCD])\b", continuation)
    return match.group(1) if match else None


def gold_label(record: dict) -> str:
    return record["answers"]


def paper_counts(full_text: str, gold_letter: str, after_edit: bool) -> dict[str, int]:
    """The reference's score: any capital A-D anywhere in the text after the last ``the answer is`` parses
    (`` According`` is an A); correct iff the gold letter is in it; after editing only, text containing ``Chi`` is
    unparsed."""
    predict = after_marker(full_text, "the answer is", -1)
    if after_edit and "Chi" in predict:
        return {"correct": 0, "parsed": 0}
    if not any(letter in predict for letter in "ABCD"):
        return {"correct": 0, "parsed": 0}
    return {"correct": int(gold_letter in predict), "parsed": 1}


TASK = ChoiceTask(
    name="dialogue", file=FILE, max_new_tokens=1, read=read, write=write, prompt=prompt, parse=parse,
    gold_label=gold_label, paper_prompt=prompt,
    paper_counts=lambda text, record, after_edit: paper_counts(text, record["answers"], after_edit),
    option_texts=("A", "B", "C", "D"), gold_option=lambda record: "ABCD".index(gold_label(record)))
