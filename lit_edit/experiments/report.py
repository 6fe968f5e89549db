"""``python -m lit_edit.tools report``: the tidy tables, markdown tables and figures of a set of runs
(docs/experiments.md).

Writes into ``out``: ``edits.csv`` and ``downstream.csv`` (and ``.parquet`` beside them where pyarrow is
installed), ``README.md`` (the runs, the method table, the downstream changes, and with ``compare`` the two runs
side by side; the name a repository browser shows with the folder), ``side_effects.png`` and
``side_effects_paper.png`` (where a run scored downstream tasks: the corrected and the paper scoring), ``d4s.png``
(where a run recorded weight monitors), ``methods.png`` (the method table as bars, where a run has final scores)
and ``diversity.png`` (where a run edited one of the fact world's edit sets of varying diversity and length).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd

from lit_edit.experiments.figures import (
    d4s_figure,
    diversity_figure,
    edit_set_scores,
    methods_figure,
    save_figure,
    side_effects_figure,
)
from lit_edit.experiments.markdown import comparison, downstream_table, markdown_table, method_table, option_text
from lit_edit.experiments.table import ReportInputError, run_folders, tidy_tables
from lit_edit.io import atomic_write_text

REPORT_FILE = "README.md"


def _write_table(frame: pd.DataFrame, out: Path, name: str) -> list[str]:
    atomic_write_text(out / f"{name}.csv", frame.to_csv(index=False))
    written = [f"{name}.csv"]
    if importlib.util.find_spec("pyarrow") is not None:
        frame.to_parquet(out / f"{name}.parquet", index=False)
        written.append(f"{name}.parquet")
    return written


def runs_table(edits: pd.DataFrame, downstream: pd.DataFrame) -> str:
    """One row per run: its folder and options."""
    options = [c for c in edits.columns if c not in ("stage", "n_edits_at", "family", "metric", "value")]
    runs = pd.concat([edits[options], downstream[[c for c in options if c in downstream.columns]]])
    runs = runs.drop_duplicates("run")
    return markdown_table(options, [[option_text(value) for value in row] for row in runs.values.tolist()])


def provenance_stamp(folders: list[Path]) -> str:
    """Where the runs came from, to print under every figure: the experiment files of the sweeps that made them and
    their variables (``index.json``), and the commits of the code that ran them (each run's ``run.json``)."""
    experiments, commits = [], []
    for folder in folders:
        index, run = folder.parent / "index.json", folder / "run.json"
        experiment = _json_field(index, "experiment") if index.is_file() else None
        if experiment:
            variables = _json_field(index, "variables") or {}
            experiments.append(experiment + "".join(f" --set {name}={value}" for name, value in variables.items()))
        if run.is_file():
            commits.append((_json_field(run, "git_commit") or "")[:7] or None)
    experiments = list(dict.fromkeys(experiments))
    commits = [c for c in dict.fromkeys(commits) if c]
    made_by = (f"python -m lit_edit.tools sweep {' and '.join(experiments)}" if experiments
               else f"{len(folders)} runs")
    return f"{made_by} · commit {', '.join(commits) if commits else 'unknown'}"


def _json_field(path: Path, field: str):
    try:
        return json.loads(path.read_text(encoding="utf-8")).get(field)
    except (OSError, ValueError, AttributeError):
        return None


def report_markdown(edits: pd.DataFrame, downstream: pd.DataFrame, family: str, figures: list[str],
                    stamp: str = "") -> str:
    parts = ["# Report\n", f"{edits['run'].nunique() if len(edits) else downstream['run'].nunique()} runs; "
             "the tidy tables: edits.csv, downstream.csv.\n" + (f"Made by: `{stamp}`.\n" if stamp else ""),
             "## Runs\n", runs_table(edits, downstream),
             f"## Methods ({family} metrics, after the last edit)\n", method_table(edits, family) if len(edits)
             else "(no editing runs)\n", "## Downstream tasks after the edits (change from before, 95 % interval)\n",
             downstream_table(downstream) if len(downstream) else "(no downstream scores)\n"]
    if figures:
        parts += ["## Figures\n", "\n".join(f"![{name}]({name})" for name in figures) + "\n"]
    return "\n".join(parts)


def write_report(paths: list[Path], out: Path, compare: list[Path] | None = None, family: str = "token") -> dict:
    """Read the runs ``paths`` name and write the report into ``out``; returns the run count and files written.

    Raises:
        ReportInputError: a path holds no run, a run file is unreadable, or ``compare`` is not two run folders.
    """
    if compare is not None and len(compare) != 2:
        raise ReportInputError(f"--compare takes two run folders, got {len(compare)}")
    folders = run_folders(paths)
    edits, downstream = tidy_tables(folders)
    out.mkdir(parents=True, exist_ok=True)
    files = _write_table(edits, out, "edits") + _write_table(downstream, out, "downstream") + [REPORT_FILE]
    stamp = provenance_stamp(folders)
    figures = []
    if len(downstream) and downstream["stage"].isin(["post", "curve"]).any():
        for scoring, name in (("corrected", "side_effects.png"), ("paper", "side_effects_paper.png")):
            if (downstream["task_mode"] == scoring).any():
                figures.append(save_figure(side_effects_figure(downstream, (scoring,)), out / name, stamp).name)
    if len(edits) and (edits["family"] == "monitor").any():
        figures.append(save_figure(d4s_figure(edits, family), out / "d4s.png", stamp).name)
    if len(edits) and ((edits["stage"] == "final") & (edits["family"] == family)).any():
        figures.append(save_figure(methods_figure(edits, family), out / "methods.png", stamp).name)
    if len(edits) and len(edit_set_scores(edits, family)):
        figures.append(save_figure(diversity_figure(edits, family), out / "diversity.png", stamp).name)
    files += figures
    text = report_markdown(edits, downstream, family, figures, stamp)
    if compare:
        pair = run_folders([compare[0]])[:1] + run_folders([compare[1]])[:1]
        pair_edits, pair_downstream = tidy_tables(pair)
        text += "\n" + comparison(pair_edits, pair_downstream, str(pair[0]), str(pair[1]))
    atomic_write_text(out / REPORT_FILE, text)
    return {"runs": len(folders), "files": files}
