"""Reading a text corpus file (JSONL, one ``{"text": ...}`` record a line): the pretraining corpus of the fact world
(``lit_edit.data.corpus``), its held-out text (``lit_edit.factworld.acceptance``) and a statistics corpus
(``lit_edit.stats``) all read it here."""

from __future__ import annotations

import json
from pathlib import Path


def read_records(path: Path) -> list[dict]:
    """The records of a JSONL corpus; each must have a ``text`` field (``entities`` is optional)."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                    record["text"]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' field ({e})") from e
                records.append(record)
    return records


def read_texts(path: Path) -> list[str]:
    """The ``text`` of every record of a JSONL corpus, in file order."""
    return [record["text"] for record in read_records(path)]
