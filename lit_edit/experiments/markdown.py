"""Markdown tables of the tidy tables (docs/experiments.md): the method table of the COMEBA-HK paper (rows method,
columns reliability / generality / locality per data set and model), the downstream changes, and two runs side by
side."""

from __future__ import annotations

import math

import pandas as pd

from lit_edit.experiments.table import headline_metrics

EDIT_METRICS = {"reliability": "Rel.", "generality": "Gen.", "locality": "Loc."}
EDIT_KEY = ("stage", "n_edits_at", "family", "metric")
DOWNSTREAM_KEY = ("stage", "n_edits_at", "task", "task_mode", "metric")


def number(value, digits: int = 3) -> str:
    """A table cell: a number to ``digits`` places, ``–`` for a missing one."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return str(value)


def option_text(value) -> str:
    """A run option as a cell: a whole number as one (pandas makes a column with gaps float), else :func:`number`."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return number(value)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (cells made text with :func:`number`; ``|`` escaped)."""
    def cell(value) -> str:
        return number(value).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _row_keys(frame: pd.DataFrame) -> list[str]:
    """method, and mode and the number of edits where they vary between the runs."""
    return ["method"] + [key for key in ("mode", "n_edits") if frame[key].nunique(dropna=False) > 1]


def method_table(edits: pd.DataFrame, family: str = "token") -> str:
    """Rows: method (and mode, number of edits where they vary); columns: final reliability, generality and
    locality of ``family`` per data set and model; the mean over the runs that share a cell (seeds), their count in
    the last column."""
    final = edits[(edits["stage"] == "final") & (edits["family"] == family) & edits["metric"].isin(EDIT_METRICS)]
    if final.empty:
        return f"(no final {family} scores)\n"
    final = final.fillna({"data": "?", "model": "?"})
    keys = _row_keys(final)
    settings = list(dict.fromkeys(zip(final["data"], final["model"])))
    headers = [*keys] + [f"{data} · {model} {EDIT_METRICS[m]}" for data, model in settings for m in EDIT_METRICS]
    rows = []
    for key, group in final.groupby(keys, dropna=False, sort=True):
        means = group.groupby(["data", "model", "metric"])["value"].mean()
        row = list(key if isinstance(key, tuple) else (key,))
        row += [means.get((data, model, metric)) for data, model in settings for metric in EDIT_METRICS]
        rows.append(row + [group["run"].nunique()])
    return markdown_table(headers + ["runs"], rows)


def downstream_table(downstream: pd.DataFrame) -> str:
    """Rows: method, mode, number of edits; columns: each task's post-edit score of its headline metric (the first
    scoring mode's, :func:`headline_metrics`) with the change from before the edits and its bootstrap interval."""
    post = downstream[downstream["stage"] == "post"]
    if post.empty:
        return "(no downstream scores)\n"
    delta = downstream[downstream["stage"] == "delta"].set_index(["run", "task", "task_mode", "metric"])
    columns = [(task, *headline_metrics(task, post[post["task"] == task])[0]) for task in dict.fromkeys(post["task"])
               if headline_metrics(task, post[post["task"] == task])]
    rows = []
    for key, group in post.groupby(["method", "mode", "n_edits"], dropna=False, sort=True):
        row = list(key)
        for task, mode, metric in columns:
            match = group[(group["task"] == task) & (group["task_mode"] == mode) & (group["metric"] == metric)]
            if match.empty:
                row.append(None)
                continue
            first = match.iloc[0]
            change = delta.loc[(first["run"], task, mode, metric)] if (first["run"], task, mode, metric) in \
                delta.index else None
            text = number(first["value"])
            if change is not None:
                interval = ("" if pd.isna(change["ci_low"]) else
                            f" [{number(change['ci_low'])}, {number(change['ci_high'])}]")
                text += f" (Δ {number(change['value'])}{interval})"
            row.append(text)
        rows.append(row)
    return markdown_table(["method", "mode", "edits", *(f"{t} {m}/{x}" for t, m, x in columns)], rows)


def comparison_table(table: pd.DataFrame, key: tuple[str, ...], run_a: str, run_b: str) -> str:
    """Every number of ``table`` (its ``key`` columns) of runs A and B side by side, with B − A."""
    if table.empty:
        return "(none)\n"
    a = table[table["run"] == run_a].set_index(list(key))["value"]
    b = table[table["run"] == run_b].set_index(list(key))["value"]
    a, b = a[~a.index.duplicated()], b[~b.index.duplicated()]
    rows = []
    for index in list(dict.fromkeys([*a.index, *b.index])):
        left, right = a.get(index), b.get(index)
        numeric = all(isinstance(v, (int, float)) and not pd.isna(v) for v in (left, right))
        rows.append([*index, left, right, (right - left) if numeric else None])
    return markdown_table([*key, "A", "B", "B − A"], rows)


def comparison(edits: pd.DataFrame, downstream: pd.DataFrame, run_a: str, run_b: str) -> str:
    """The markdown section of ``--compare A B``: the runs' options, then every edit score and monitor (not the per-step
    rows) and every downstream score, side by side."""
    options = [c for c in edits.columns if c in ("method", "mode", "n_edits", "seed", "model", "data")
               or c.startswith("axis_")]
    both = pd.concat([edits, downstream])
    described = [[option, *(option_text(both[both["run"] == run][option].dropna().iloc[0])
                            if both[both["run"] == run][option].notna().any() else None for run in (run_a, run_b))]
                 for option in options]
    return "\n".join([
        f"## Comparison: {run_a} (A) against {run_b} (B)\n", markdown_table(["option", "A", "B"], described),
        "### Edit scores and monitors\n", comparison_table(edits[edits["stage"] != "step"], EDIT_KEY, run_a, run_b),
        "### Downstream tasks\n", comparison_table(downstream, DOWNSTREAM_KEY, run_a, run_b)])
