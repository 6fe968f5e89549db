"""Readers and writers for the 8 downstream test sets, in the formats of the published files.

Each reader returns a list of plain dicts (one per example) with the fields the prompt builders in
:mod:`lit_edit.tasks.prompts` use. Writers produce byte-compatible files, so the fact-world mini tasks
are read by exactly the same code as the real sets. Every reader names the file and line at fault.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

from lit_edit.paths import resolve_path

TASK_FILES = {
    "reasoning": "test-reasoning.jsonl",
    "nli": "test-NLI.tsv",
    "open_domain_qa": "test-OpenDomainQA.jsonl",
    "closed_domain_qa": "test-ClosedDomainQA.jsonl",
    "dialogue": "test-dialogue",
    "summarization": "test-summarization.json",
    "ner": "test-NER.txt",
    "sentiment": "test-SentimentAnalysis.tsv",
}


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


def _missing(record, fields: Iterable[str], where: str) -> str | None:
    """The error message of a record that is not an object or lacks ``fields``; None when it is fine."""
    if not isinstance(record, dict):
        return f"{where}: expected a JSON object, found {type(record).__name__}"
    missing = [f for f in fields if f not in record]
    return f"{where}: missing field(s) {missing}; found {sorted(record)}" if missing else None


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").strip())
    except ValueError:
        return False
    return True


GOLD_FIELDS = {   # task: (field, what the scorer needs of it, check) -- the fields parsing.gold_label reads
    "reasoning": ("answer", "a solution ending in '#### <number>'",
                  lambda v: isinstance(v, str) and _is_number(v.split("#### ")[-1])),
    "open_domain_qa": ("answer", "a non-empty list of strings",
                       lambda v: isinstance(v, list) and bool(v) and all(isinstance(a, str) for a in v)),
    "closed_domain_qa": ("answer", "true or false", lambda v: isinstance(v, bool) or str(v).lower() in ("true", "false")),
    "nli": ("label", "'entailment' or 'not_entailment'", lambda v: v in ("entailment", "not_entailment")),
    "sentiment": ("label", "0 or 1", lambda v: v in ("0", "1")),
    "summarization": ("summary", "a string with more than dots (the paper score's ROUGE cannot read one of dots only)",
                      lambda v: isinstance(v, str) and v.replace(".", "") != ""),
}


def _gold_problem(task: str | None, record: dict, where: str) -> str | None:
    """The error message of a record whose gold answer the scorer cannot use; None when it is fine. Checked on
    reading, so a bad value names its file and line instead of failing mid-run or being scored as another label."""
    if task not in GOLD_FIELDS:
        return None
    field, expected, fits = GOLD_FIELDS[task]
    return None if fits(record[field]) else f"{where}: field {field!r} must be {expected}, found {record[field]!r}"


def read_jsonl(path: Path, fields: Iterable[str], bad: BadLines | None = None, task: str | None = None
               ) -> list[dict]:
    """One JSON object per line with ``fields`` (and, for ``task``, a gold answer its scorer can use)."""
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
            problem = _missing(record, fields, f"{path}:{number}") or _gold_problem(task, record, f"{path}:{number}")
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
             task: str | None = None) -> list[dict]:
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
        problem = _gold_problem(task, record, f"{path}:{number}")
        if problem:
            bad(problem)
            continue
        records.append(record)
    return records


def write_tsv(path: Path, columns: list[str], rows: Iterable[list]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(str(v) for v in row) + "\n")


def read_dialogue_dir(path: Path, bad: BadLines | None = None) -> list[dict]:
    """MuTual: one JSON object per ``dev_N.txt`` file, ordered by N."""
    bad = bad or BadLines()
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
        problem = _missing(record, ("answers", "options", "article", "id"), str(file))
        if not problem and (len(record["options"]) != 4 or record["answers"] not in ("A", "B", "C", "D")):
            problem = f"{file}: needs 4 options and an answer in A-D"
        if problem:
            bad(problem)
            continue
        records.append(record)
    return records


def write_dialogue_dir(path: Path, records: Iterable[dict], prefix: str = "dev") -> None:
    path.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records, 1):
        (path / f"{prefix}_{i}.txt").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def read_conll(path: Path, keep_docstart: bool = False, bad: BadLines | None = None) -> list[dict]:
    """CoNLL-2003 (token POS chunk NER, blank-line separated); ``-DOCSTART-`` blocks are skipped unless
    ``keep_docstart`` (the reference harness queries them as sentences, ``docs/tasks.md`` §9). A malformed line
    makes its whole sentence bad (skipped with ``on_bad_line: skip``)."""
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


def write_conll(path: Path, sentences: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("-DOCSTART- -X- -X- O\n\n")
        for s in sentences:
            for token, pos, chunk, tag in zip(s["tokens"], s["pos"], s["chunks"], s["tags"]):
                f.write(f"{token} {pos} {chunk} {tag}\n")
            f.write("\n")


def read_task(root: Path | str, task: str, reference_view: bool = False, bad: BadLines | None = None) -> list[dict]:
    """Read the test set of ``task`` (a key of :data:`TASK_FILES`) from ``root``.

    ``reference_view`` keeps what the reference harness saw beside the corrected reading: CoNLL ``-DOCSTART-``
    blocks as sentences (``"docstart": True``), and for RTE the quote-stripped texts as ``paper_sentence1/2``.
    ``bad`` says what a malformed line does (default: raise, naming file and line)."""
    if task not in TASK_FILES:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASK_FILES)}")
    root = resolve_path(root)
    path = root / TASK_FILES[task]
    if not path.exists():
        expected = "\n  ".join(f"{name}: {Path(root) / file}" for name, file in TASK_FILES.items())
        raise FileNotFoundError(f"task {task!r}: {path} does not exist (check the data root). A task root holds:"
                                f"\n  {expected}")
    bad = bad or BadLines()
    if task == "reasoning":
        return read_jsonl(path, ("question", "answer"), bad, task)
    if task == "open_domain_qa":
        return read_jsonl(path, ("question", "answer", "output"), bad, task)
    if task == "closed_domain_qa":
        return read_jsonl(path, ("question", "answer", "passage"), bad, task)
    if task == "nli":
        columns = ["index", "sentence1", "sentence2", "label"]
        records = read_tsv(path, columns, bad=bad, task=task)
        if reference_view:
            legacy_rows = read_tsv(path, columns, legacy_quotes=True, bad=BadLines("skip"), task=task)
            by_index = {row["index"]: row for row in legacy_rows}
            for record in records:
                legacy = by_index.get(record["index"], record)
                record["paper_sentence1"], record["paper_sentence2"] = legacy["sentence1"], legacy["sentence2"]
        return records
    if task == "sentiment":
        return read_tsv(path, ["sentence", "label"], bad=bad, task=task)
    if task == "dialogue":
        return read_dialogue_dir(path, bad)
    if task == "summarization":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TaskFormatError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(records, list):
            raise TaskFormatError(f"{path}: expected a JSON list of dialogues, found {type(records).__name__}")
        kept = []
        for i, record in enumerate(records):
            where = f"{path}[{i}]"
            problem = _missing(record, ("summary", "dialogue"), where) or _gold_problem(task, record, where)
            if problem:
                bad(problem)
            else:
                kept.append(record)
        return kept
    sentences = read_conll(path, keep_docstart=reference_view, bad=bad)
    for sentence in sentences:
        sentence["docstart"] = sentence["tokens"][:1] == ["-DOCSTART-"]
    return sentences
