"""The run folder: per-step table (CSV), final numbers (JSON), provenance, plots. Every write is atomic."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from lit_edit.io import atomic_write_text


def _clean(value):
    """JSON-safe: NaN/inf become None, tensors and numpy scalars become floats."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunRecorder:
    """Collects rows and documents of one run and writes them into ``directory``.

    ``writes=False`` (the ranks other than zero of a multi-process run) keeps the rows but writes nothing: one
    process owns the folder.
    """

    def __init__(self, directory: Path | str, writes: bool = True):
        self.directory = Path(directory)
        self.writes = writes
        if writes:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.steps: list[dict] = []

    def write_json(self, name: str, data) -> Path:
        path = self.directory / name
        if self.writes:
            atomic_write_text(path, json.dumps(_clean(data), indent=1, default=str) + "\n")
        return path

    def copy_in(self, source: Path | str) -> Path:
        """Copy a file (e.g. the resolved config) into the run folder, atomically."""
        target = self.directory / Path(source).name
        if self.writes:
            atomic_write_text(target, Path(source).read_text(encoding="utf-8"))
        return target

    def add_step(self, row: dict) -> None:
        """One row per edit step; the CSV is rewritten (atomically) so it is complete after every step."""
        self.steps.append(_clean(row))
        self._write_steps()

    def restore_steps(self, rows: list[dict]) -> None:
        """Start from the rows of a resumed run (written at once, so the folder is complete before the next step)."""
        self.steps = [_clean(row) for row in rows]
        self._write_steps()

    def _write_steps(self) -> None:
        self.write_csv("steps.csv", self.steps)

    def write_csv(self, name: str, rows: list[dict]) -> Path:
        """``rows`` (already :func:`_clean`) as a CSV table, the columns in order of first appearance (a missing
        value is empty)."""
        path = self.directory / name
        if self.writes:
            columns = list(dict.fromkeys(key for r in rows for key in r))
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(path, buffer.getvalue())
        return path


def request_rows(requests, steps: list[int], scores: dict[str, dict[str, dict]]) -> list[dict]:
    """One row per edited request: its record id, subject, relation, the edit step that applied it and its scores
    at each stage (``scores[stage][record_id]`` → columns ``stage/family/metric``: pre, immediate, final), so a
    reader can split any number by request (same subject, relation, cohort) without running again."""
    rows = []
    for request, step in zip(requests, steps):
        row = {"record_id": request.record_id, "subject": request.subject, "relation": request.relation,
               "step": step}
        for stage, by_record in scores.items():
            row.update({f"{stage}/{key}": value for key, value in by_record.get(request.record_id, {}).items()})
        rows.append(row)
    return _clean(rows)
