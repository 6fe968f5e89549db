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


def _require(record: dict, fields: Iterable[str], where: str) -> dict:
    missing = [f for f in fields if f not in record]
    if missing:
        raise TaskFormatError(f"{where}: missing field(s) {missing}; found {sorted(record)}")
    return record


def read_jsonl(path: Path, fields: Iterable[str]) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise TaskFormatError(f"{path}:{number}: not valid JSON ({e})") from e
            records.append(_require(record, fields, f"{path}:{number}"))
    return records


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def read_tsv(path: Path, columns: list[str], legacy_quotes: bool = False) -> list[dict]:
    """A header-row TSV read without quote handling (``QUOTE_NONE``): quotes stay part of the text.

    ``legacy_quotes`` reads it as the reference harness did (``csv`` default quoting: a field that starts with
    ``"`` loses its quotes, ``docs/tasks.md`` §3), for the ``paper`` prompts."""
    with open(path, encoding="utf-8", newline="") as f:
        quoting = csv.QUOTE_MINIMAL if legacy_quotes else csv.QUOTE_NONE
        rows = list(csv.reader(f, delimiter="\t", quoting=quoting))
    if not rows or [c.strip() for c in rows[0]][: len(columns)] != columns:
        raise TaskFormatError(f"{path}:1: expected header {columns}, found {rows[0] if rows else 'an empty file'}")
    records = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) < len(columns):
            raise TaskFormatError(f"{path}:{number}: expected {len(columns)} tab-separated fields, found {len(row)}")
        records.append({c: row[i].strip() if c == columns[-1] else row[i] for i, c in enumerate(columns)})
    return records


def write_tsv(path: Path, columns: list[str], rows: Iterable[list]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("\t".join(columns) + "\n")
        for row in rows:
            f.write("\t".join(str(v) for v in row) + "\n")


def read_dialogue_dir(path: Path) -> list[dict]:
    """MuTual: one JSON object per ``dev_N.txt`` file, ordered by N."""
    files = sorted(path.glob("dev_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
    if not files:
        raise TaskFormatError(f"{path}: no dev_*.txt files")
    records = []
    for file in files:
        try:
            record = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TaskFormatError(f"{file}: not valid JSON ({e})") from e
        _require(record, ("answers", "options", "article", "id"), str(file))
        if len(record["options"]) != 4 or record["answers"] not in "ABCD":
            raise TaskFormatError(f"{file}: needs 4 options and an answer in A-D")
        records.append(record)
    return records


def write_dialogue_dir(path: Path, records: Iterable[dict], prefix: str = "dev") -> None:
    path.mkdir(parents=True, exist_ok=True)
    for i, record in enumerate(records, 1):
        (path / f"{prefix}_{i}.txt").write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")


def read_conll(path: Path, keep_docstart: bool = False) -> list[dict]:
    """CoNLL-2003 (token POS chunk NER, blank-line separated); ``-DOCSTART-`` blocks are skipped unless
    ``keep_docstart`` (the reference harness queries them as sentences, ``docs/tasks.md`` §9)."""
    sentences, current = [], []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                if current and (keep_docstart or current[0][0] != "-DOCSTART-"):
                    sentences.append({"tokens": [t[0] for t in current], "tags": [t[3] for t in current]})
                current = []
                continue
            parts = line.split()
            if len(parts) != 4:
                raise TaskFormatError(f"{path}:{number}: expected 4 columns (token POS chunk NER), found {len(parts)}")
            current.append(parts)
    if current and (keep_docstart or current[0][0] != "-DOCSTART-"):
        sentences.append({"tokens": [t[0] for t in current], "tags": [t[3] for t in current]})
    return sentences


def write_conll(path: Path, sentences: Iterable[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("-DOCSTART- -X- -X- O\n\n")
        for s in sentences:
            for token, pos, chunk, tag in zip(s["tokens"], s["pos"], s["chunks"], s["tags"]):
                f.write(f"{token} {pos} {chunk} {tag}\n")
            f.write("\n")


def read_task(root: Path | str, task: str, reference_view: bool = False) -> list[dict]:
    """Read the test set of ``task`` (a key of :data:`TASK_FILES`) from ``root``.

    ``reference_view`` keeps what the reference harness saw beside the corrected reading: CoNLL ``-DOCSTART-``
    blocks as sentences (``"docstart": True``), and for RTE the quote-stripped texts as ``paper_sentence1/2``."""
    if task not in TASK_FILES:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASK_FILES)}")
    path = Path(root) / TASK_FILES[task]
    if not path.exists():
        raise FileNotFoundError(f"task {task!r}: {path} does not exist (check the data root)")
    if task == "reasoning":
        return read_jsonl(path, ("question", "answer"))
    if task == "open_domain_qa":
        return read_jsonl(path, ("question", "answer", "output"))
    if task == "closed_domain_qa":
        return read_jsonl(path, ("question", "answer", "passage"))
    if task == "nli":
        columns = ["index", "sentence1", "sentence2", "label"]
        records = read_tsv(path, columns)
        if reference_view:
            for record, legacy in zip(records, read_tsv(path, columns, legacy_quotes=True), strict=True):
                record["paper_sentence1"], record["paper_sentence2"] = legacy["sentence1"], legacy["sentence2"]
        return records
    if task == "sentiment":
        return read_tsv(path, ["sentence", "label"])
    if task == "dialogue":
        return read_dialogue_dir(path)
    if task == "summarization":
        records = json.loads(path.read_text(encoding="utf-8"))
        return [_require(r, ("summary", "dialogue"), f"{path}[{i}]") for i, r in enumerate(records)]
    sentences = read_conll(path, keep_docstart=reference_view)
    for sentence in sentences:
        sentence["docstart"] = sentence["tokens"][:1] == ["-DOCSTART-"]
    return sentences
