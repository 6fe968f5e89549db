"""Run folders read into two tidy tables (docs/experiments.md): one row per number.

- edit table: run × stage (``pre``, ``immediate``, ``periodic``, ``final``, and ``step`` for the per-step monitors)
  × family (``token``, ``probability``, ``generation``, ``monitor``) × metric, with ``n_edits_at``, the number of
  edits the model held when it was scored;
- downstream table: run × task × scoring mode × metric × stage (``pre``, ``post``, ``delta``, ``curve`` from an
  editing run's ``metrics.json``, ``eval`` from an evaluation's ``downstream.json``), with the bootstrap interval
  (``ci_low``, ``ci_high``) where the run computed one: of post − pre for ``delta``, the same shifted by the
  pre-edit score for ``post``.

Each row carries the run's options: ``run`` (its folder), ``method``, ``mode``, ``n_edits``, ``seed``, ``model``,
``data``, and ``axis_<name>`` for each axis of the sweep that made it (its ``index.json``).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import yaml

from lit_edit.errors import UserError

STAGES = ("pre", "immediate", "final")
OPTION_COLUMNS = ("run", "method", "mode", "n_edits", "seed", "model", "data")


class ReportInputError(UserError):
    """A path given to the report that holds no run, or a run file that cannot be read."""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReportInputError(f"{path} is not a readable JSON file ({error}); run the point again or leave the "
                               "folder out") from None


def run_folders(paths: list[Path]) -> list[Path]:
    """The run folders ``paths`` name: a folder with ``metrics.json`` or ``downstream.json`` is a run; a sweep's
    output folder (``index.json``) stands for its finished points; any other folder for the runs one level in."""
    found: list[Path] = []
    for path in paths:
        if not path.is_dir():
            raise ReportInputError(f"{path} is not a folder; give run folders or a sweep's output folder")
        if _is_run(path):
            found.append(path)
        elif (path / "index.json").is_file():
            rows = _read_json(path / "index.json").get("points", [])
            found += [path / row["folder"] for row in rows if _is_run(path / row["folder"])]
        else:
            found += sorted(child for child in path.iterdir() if child.is_dir() and _is_run(child))
    if not found:
        raise ReportInputError("no run folder (one holding metrics.json or downstream.json) in "
                               f"{', '.join(map(str, paths))}; give run folders or a sweep's output folder")
    return list(dict.fromkeys(found))


def _is_run(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() or (folder / "downstream.json").is_file()


def _sweep_axes(folder: Path) -> dict[str, str]:
    """The labels of the sweep point ``folder`` is, from its sweep's ``index.json`` (none outside a sweep)."""
    index = folder.parent / "index.json"
    if not index.is_file():
        return {}
    axes = [axis["name"] for axis in _read_json(index).get("axes", [])]
    for row in _read_json(index).get("points", []):
        if row.get("folder") == folder.name:
            return {f"axis_{name}": row.get(name) for name in axes}
    return {}


def run_options(folder: Path, metrics: dict | None) -> dict:
    """The columns that describe a run: from ``metrics.json`` (method, mode, edits), ``config.yaml`` (seed, model,
    edit data) and the sweep's index (its axes)."""
    config = {}
    if (folder / "config.yaml").is_file():
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    model = (config.get("model") or {}).get("init_args") or {}
    data = (config.get("data") or {}).get("init_args") or {}
    metrics = metrics or {}
    return {"run": str(folder), "method": metrics.get("method"), "mode": (metrics.get("mode") or {}).get("name"),
            "n_edits": metrics.get("n_edits"), "seed": config.get("seed_everything"),
            "model": Path(str(model["name_or_path"])).name if model.get("name_or_path") else None,
            "data": Path(str(data["path"])).stem if data.get("path") else None, **_sweep_axes(folder)}


def _scores(stage: str, n_edits: int | None, nested: dict) -> list[dict]:
    return [{"stage": stage, "n_edits_at": n_edits, "family": family, "metric": metric, "value": value}
            for family, metrics in (nested or {}).items() for metric, value in (metrics or {}).items()]


def _flat_scores(stage: str, n_edits: int, flat: dict) -> list[dict]:
    """``{"token/reliability": v}`` (a periodic point) as rows."""
    rows = []
    for key, value in flat.items():
        family, _, metric = key.partition("/")
        rows.append({"stage": stage, "n_edits_at": n_edits, "family": family, "metric": metric, "value": value})
    return rows


def _steps(folder: Path) -> list[dict]:
    """The monitors of ``steps.csv`` (every column but the step, its immediate scores and the edit count)."""
    path = folder / "steps.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="", encoding="utf-8") as handle:
        for step in csv.DictReader(handle):
            n_edits = int(step["n_edits"])
            for key, text in step.items():
                if key in ("step", "n_edits", "seconds") or key.startswith("immediate/") or text in ("", None):
                    continue
                rows.append({"stage": "step", "n_edits_at": n_edits, "family": "monitor", "metric": key,
                             "value": float(text)})
    return rows


def edit_rows(folder: Path, metrics: dict) -> list[dict]:
    """Every edit score and monitor of one run (see the module's docstring)."""
    n_edits = metrics.get("n_edits")
    rows = _scores("pre", 0, metrics.get("pre"))
    rows += _scores("immediate", n_edits, metrics.get("immediate"))
    for point in metrics.get("periodic") or []:
        rows += _flat_scores("periodic", point["n_edits"], point["scores"])
    rows += _scores("final", n_edits, metrics.get("final"))
    for stage, at in (("pre", 0), ("final", n_edits)):
        rows += [{"stage": stage, "n_edits_at": at, "family": "monitor", "metric": key, "value": value}
                 for key, value in ((metrics.get("monitors") or {}).get(stage) or {}).items()]
    return rows + _steps(folder)


def _interval(ci, shift: float | None = 0.0) -> tuple[float | None, float | None]:
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or shift is None or None in ci:
        return None, None
    return ci[0] + shift, ci[1] + shift


def downstream_rows(metrics: dict | None, evaluation: dict | None) -> list[dict]:
    """Every downstream score of one run: its editing run's (pre, post, delta, curve) and an evaluation's."""
    rows = []

    def add(stage, n_edits, task, scores, intervals=None, shift=None):
        """Rows of ``scores`` (mode → metric → value); ``shift`` (mode → metric → value) moves the intervals."""
        for mode, by_metric in (scores or {}).items():
            for metric, value in (by_metric or {}).items():
                ci = (intervals or {}).get(mode, {}).get(metric)
                offset = (shift or {}).get(mode, {}).get(metric) if shift is not None else 0.0
                low, high = _interval(ci, offset) if ci else (None, None)
                rows.append({"stage": stage, "n_edits_at": n_edits, "task": task, "task_mode": mode,
                             "metric": metric, "value": value, "ci_low": low, "ci_high": high})

    metrics = metrics or {}
    n_post = (metrics.get("downstream_setup") or {}).get("post_n_edits", metrics.get("n_edits"))
    for task, result in (metrics.get("downstream") or {}).items():
        pre = result.get("pre") or {}
        add("pre", 0, task, pre)
        add("post", n_post, task, result.get("post"), result.get("delta_ci95"), shift=pre)
        add("delta", n_post, task, result.get("delta"), result.get("delta_ci95"))
    for point in metrics.get("downstream_curve") or []:
        for task, scores in point["scores"].items():
            add("curve", point["n_edits"], task, scores)
    for task, scores in ((evaluation or {}).get("scores") or {}).items():
        add("eval", None, task, scores)
    return rows


def headline_metrics(task: str, rows: pd.DataFrame) -> list[tuple[str, str]]:
    """The (scoring mode, metric) pairs a task is shown by, of those in ``rows``: its primary metric per scoring
    mode where the task is known (``lit_edit/tasks/registry.py``), else each scoring mode's first metric."""
    try:
        from lit_edit.tasks.registry import get_task

        pairs = list(get_task(task).primary.items())
    except (KeyError, ValueError, ImportError):
        pairs = list(rows.drop_duplicates("task_mode")[["task_mode", "metric"]].itertuples(index=False, name=None))
    present = set(zip(rows["task_mode"], rows["metric"]))
    return [pair for pair in pairs if pair in present]


def tidy_tables(folders: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The edit table and the downstream table of ``folders`` (run folders), options first."""
    edits, downstream = [], []
    for folder in folders:
        metrics = _read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
        evaluation = _read_json(folder / "downstream.json") if (folder / "downstream.json").is_file() else None
        options = run_options(folder, metrics)
        if metrics:
            edits += [{**options, **row} for row in edit_rows(folder, metrics)]
        downstream += [{**options, **row} for row in downstream_rows(metrics, evaluation)]
    return _frame(edits, ("stage", "n_edits_at", "family", "metric", "value")), _frame(
        downstream, ("stage", "n_edits_at", "task", "task_mode", "metric", "value", "ci_low", "ci_high"))


def _frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    axes = sorted({key for row in rows for key in row if key.startswith("axis_")})
    order = [*OPTION_COLUMNS, *axes, *columns]
    return frame.reindex(columns=order)
