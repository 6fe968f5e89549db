"""Readers and writers shared by the downstream tasks' files: JSON lines and header-row TSV, the policy for a
malformed line, and the check of a record's gold answer.

A task's own module (:mod:`lit_edit.tasks.registry` lists them) reads its published file with these, so the
fact-world mini tasks are read by exactly the same code as the real sets. Every reader names the file and line at
fault.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


class TaskFormatError(ValueError):
    """A task file does not have the expected format; the message names the file, line and field."""


class BadLines:
    """What a reader does with a malformed line, row, file or record: ``error`` (default) raises
    :class:`TaskFormatError` naming it; ``skip`` leaves it out and keeps the message in :attr:`skipped`."""

    POLICIES = ("error", "skip")

    def __init__(self, policy: str = "error"):
        if policy not in self.POLICIES:
            raise ValueError(f"on_bad_line must be one of {self.POLICIES}, got {policy!r}")
        self.policy = policy
        self.skipped: list[str] = []

    def __call__(self, message: str) -> None:
        if self.policy == "error":
            raise TaskFormatError(message)
        self.skipped.append(message)


@dataclass(frozen=True)
class GoldCheck:
    """The field of a record that holds its gold answer, what the task's scorer needs of it, and the check.
    Checked on reading, so a bad value names its file and line instead of failing mid-run or being scored as
    another label."""

    field: str
    expected: str
    fits: Callable[[object], bool]

    def problem(self, record: dict, where: str) -> str | None:
        """The error message of a record whose gold answer the scorer cannot use; None when it is fine."""
        value = record[self.field]
        return None if self.fits(value) else f"{where}: field {self.field!r} must be {self.expected}, found {value!r}"


def missing_fields(record, fields: Iterable[str], where: str) -> str | None:
    """The error message of a record that is not an object or lacks ``fields``; None when it is fine."""
    if not isinstance(record, dict):
        return f"{where}: expected a JSON object, found {type(record).__name__}"
    missing = [f for f in fields if f not in record]
    return f"{where}: missing field(s) {missing}; found {sorted(record)}" if missing else None


def record_problem(record, fields: Iterable[str], gold: GoldCheck | None, where: str) -> str | None:
    """The first problem of a record: a missing field, else an unusable gold answer; None when it is fine."""
    return missing_fields(record, fields, where) or (gold.problem(record, where) if gold else None)


def read_jsonl(path: Path, fields: Iterable[str], bad: BadLines | None = None, gold: GoldCheck | None = None
               ) -> list[dict]:
    """One JSON object per line with ``fields`` (and, with ``gold``, a gold answer the task's scorer can use)."""
    bad = bad or BadLines()
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                bad(f"{path}:{number}: not valid JSON ({e})")
                continue
            problem = record_problem(record, fields, gold, f"{path}:{number}")
            if problem:
                bad(problem)
                continue
            records.append(record)
    return records


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_tsv(path: Path, columns: list[str], legacy_quotes: bool = False, bad: BadLines | None = None,
             gold: GoldCheck | None = None) -> list[dict]:
    """A header-row TSV read without quote handling (``QUOTE_NONE``): quotes stay part of the text.

    ``legacy_quotes`` reads it as the reference harness did (``csv`` default quoting: a field that starts with
    ``"`` loses its quotes, ``docs/tasks.md`` §3), for the ``paper`` prompts."""
    with open(path, encoding="utf-8", newline="") as f:
        quoting = csv.QUOTE_MINIMAL if legacy_quotes else csv.QUOTE_NONE
        rows = list(csv.reader(f, delimiter="\t", quoting=quoting))
    if not rows or [c.strip() for c in rows[0]][: len(columns)] != columns:
        raise TaskFormatError(f"{path}:1: expected header {columns}, found {rows[0] if rows else 'an empty file'}")
    bad = bad or BadLines()
    records = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) < len(columns):
            bad(f"{path}:{number}: expected {len(columns)} tab-separated fields, found {len(row)}")
            continue
        record = {c: row[i].strip() if c == columns[-1] else row[i] for i, c in enumerate(columns)}
        problem = gold.problem(record, f"{path}:{number}") if gold else None
        if problem:
            bad(problem)
            continue
        records.append(record)
    return records


def write_tsv(path: Path, columns: list[str], records: Iterable[dict]) -> None:
    """``records`` as a header-row TSV of ``columns`` (each record's values of those columns)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(columns) + "\n")
        for record in records:
            f.write("\t".join(str(record[c]) for c in columns) + "\n")
