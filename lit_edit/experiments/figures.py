"""The papers' figures from the tidy tables (docs/experiments.md); each function returns its matplotlib Figure.

A line joins the runs of one group (method and mode) by the number of edits; where several runs of a group scored
the same number of edits (the prefix of a longer sequential run), the run with the most edits gives the point.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lit_edit.experiments.table import headline_metrics  # noqa: E402
from lit_edit.factworld.edit_sets import LEVELS, level_and_length  # noqa: E402
from lit_edit.plots import _save as save_png  # noqa: E402

GROUP = ("method", "mode")
PRE_EDIT_GID = "pre-edit"
"""The ``gid`` of the dashed line that marks a pre-edit level."""


def group_name(key: tuple) -> str:
    """``memit (batch-sequential)``: a group's legend label."""
    method, mode = (list(key) + [None, None])[:2]
    return f"{method} ({mode})" if mode else str(method)


def _series(rows: pd.DataFrame, override: str | None = None) -> pd.DataFrame:
    """``n_edits_at`` → value (and interval) of ``rows``, one per number of edits: the rows of stage ``override``
    first, then of the run with the most edits."""
    rows = rows.dropna(subset=["value"]).assign(
        _first=lambda f: (f["stage"] == override) if override else False).sort_values(
        ["_first", "n_edits"], ascending=False, kind="stable")
    return rows.drop_duplicates("n_edits_at").sort_values("n_edits_at")


LINE_STYLES = ("-", "--", ":", "-.")


def group_style(keys: list[tuple]) -> dict[tuple, dict]:
    """A colour per method and a line style per mode, the same in every panel, for the groups ``keys``."""
    methods = sorted({str(key[0]) for key in keys})
    modes = sorted({str(key[1]) for key in keys if len(key) > 1})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {key: {"color": colours[methods.index(str(key[0])) % len(colours)],
                  "linestyle": LINE_STYLES[modes.index(str(key[1])) % len(LINE_STYLES)] if len(key) > 1 else "-"}
            for key in keys}


def side_effects_figure(downstream: pd.DataFrame, scoring_modes: tuple[str, ...] | None = None) -> plt.Figure:
    """Each downstream task's score against the number of edits, one line per method (and mode) and scoring mode
    (those of ``scoring_modes``, default all), the bootstrap interval of the post-edit score as error bars, the
    pre-edit level as a dashed grey line; a colour per method, a line style per mode."""
    scored = downstream[downstream["stage"].isin(["pre", "post", "curve"])]
    if scoring_modes is not None:
        scored = scored[scored["task_mode"].isin(scoring_modes)]
    styles = group_style([tuple(key) for key in scored[list(GROUP)].drop_duplicates().itertuples(index=False)])
    tasks = list(dict.fromkeys(scored["task"]))
    columns = min(4, max(1, len(tasks)))
    rows = max(1, math.ceil(len(tasks) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False,
                                layout="constrained")
    for ax, task in zip(axes.flat, tasks):
        by_task = scored[scored["task"] == task]
        for (mode, metric) in headline_metrics(task, by_task):
            selected = by_task[(by_task["task_mode"] == mode) & (by_task["metric"] == metric)]
            for key, group in selected.groupby(list(GROUP), dropna=False, sort=True):
                points = _series(group[group["stage"] != "pre"], override="post")
                name = f"{group_name(key)} {mode}/{metric}"
                (line,) = ax.plot(points["n_edits_at"], points["value"], marker="o", label=name,
                                  **styles.get(tuple(key), {}))
                bars = points.dropna(subset=["ci_low", "ci_high"])
                if len(bars):
                    ax.errorbar(bars["n_edits_at"], bars["value"], fmt="none", color=line.get_color(), capsize=3,
                                yerr=[(bars["value"] - bars["ci_low"]).clip(lower=0),
                                      (bars["ci_high"] - bars["value"]).clip(lower=0)])
                pre = group[group["stage"] == "pre"]["value"].dropna()
                if len(pre):
                    level = ax.axhline(float(pre.mean()), linestyle=(0, (2, 2)), color="0.5", alpha=0.6,
                                       label=f"_pre-edit {name}")
                    level.set_gid(PRE_EDIT_GID)
        ax.set(title=task, xlabel="number of edits",
               ylabel=", ".join(f"{m}/{x}" for m, x in headline_metrics(task, by_task)) or "score")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    legend = {}     # one legend for the figure: a line per group (and scoring mode), as drawn in the first panel
    for ax in axes.flat:
        for line in ax.lines:
            if not line.get_label().startswith("_"):
                legend.setdefault(line.get_label().rsplit("/", 1)[0].rsplit(" ", 1)[0]
                                  if scoring_modes and len(scoring_modes) == 1 else line.get_label(), line)
    if legend:
        figure.legend(list(legend.values()), list(legend), loc="outside right upper", fontsize=8)
    figure.suptitle("downstream tasks against the number of edits"
                    + (f" ({', '.join(scoring_modes)} scoring)" if scoring_modes else "") + " (grey: pre-edit)")
    return figure


def d4s_figure(edits: pd.DataFrame, family: str = "token") -> plt.Figure:
    """Left: ‖W‖₁/numel of each edited matrix against the number of edits per method (the per-step monitors);
    right: reliability and locality of ``family`` against the number of edits (pre, periodic and final scores).
    A colour per method and mode; a line style per matrix (left) and per metric (right)."""
    figure, (norms, scores) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    monitors = edits[(edits["family"] == "monitor") & edits["metric"].astype(str).str.startswith("l1_per_numel/")
                     & edits["stage"].isin(["pre", "step", "final"])]
    chosen = edits[(edits["family"] == family) & edits["metric"].isin(["reliability", "locality"])
                   & edits["stage"].isin(["pre", "periodic", "final"])]
    groups = sorted({tuple(map(str, key)) for frame in (monitors, chosen)
                     for key in frame[list(GROUP)].drop_duplicates().itertuples(index=False)})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {key: colours[i % len(colours)] for i, key in enumerate(groups)}     # one per method and mode
    layers = sorted(set(monitors["metric"]))
    for (*key, metric), group in monitors.groupby([*GROUP, "metric"], dropna=False, sort=True):
        points = _series(group)
        layer = metric.removeprefix("l1_per_numel/").removesuffix(".weight")
        norms.plot(points["n_edits_at"], points["value"], marker=".", label=f"{group_name(tuple(key))} {layer}",
                   color=colour[tuple(map(str, key))], linestyle=LINE_STYLES[layers.index(metric) % len(LINE_STYLES)])
    norms.set(title="‖W‖₁ / numel of each edited matrix", xlabel="number of edits", ylabel="mean |w|")
    for (*key, metric), group in chosen.groupby([*GROUP, "metric"], dropna=False, sort=True):
        points = _series(group, override="final")
        scores.plot(points["n_edits_at"], points["value"], marker="o", label=f"{group_name(tuple(key))} {metric}",
                    linestyle="-" if metric == "reliability" else ":", color=colour[tuple(map(str, key))])
    scores.set(title=f"{family} reliability and locality (all edits so far)", xlabel="number of edits",
               ylabel="score", ylim=(-0.02, 1.02))
    for ax in (norms, scores):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    return figure


def methods_figure(edits: pd.DataFrame, family: str = "token") -> plt.Figure:
    """The method table as bars (COMEBA-HK's Tables 1 and 2 side by side): one panel per metric (final reliability,
    generality, locality of ``family``), a group of bars per method, one bar per mode (the mean over the runs
    that share a method and mode)."""
    final = edits[(edits["stage"] == "final") & (edits["family"] == family)
                  & edits["metric"].isin(["reliability", "generality", "locality"])]
    methods = sorted(final["method"].dropna().unique())
    modes = sorted(final["mode"].fillna("").unique())
    figure, axes = plt.subplots(1, 3, figsize=(4.6 * 3, 3.8), layout="constrained", sharey=True)
    width = 0.8 / max(1, len(modes))
    for ax, metric in zip(axes, ("reliability", "generality", "locality")):
        means = final[final["metric"] == metric].fillna({"mode": ""}).groupby(["method", "mode"])["value"].mean()
        for i, mode in enumerate(modes):
            heights = [means.get((method, mode), math.nan) for method in methods]
            ax.bar([m + (i - (len(modes) - 1) / 2) * width for m in range(len(methods))], heights, width,
                   label=mode or "(mode not recorded)")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set(title=f"{family} {metric} after the last edit", ylim=(0, 1.02))
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("score")
    axes[0].legend(fontsize=7)
    return figure


def edit_set_scores(edits: pd.DataFrame, family: str = "token") -> pd.DataFrame:
    """The final reliability and locality of ``family`` of the runs whose edit data is a shipped edit set
    (``<level>-<length>.json``, docs/factworld.md), with the set's ``level`` and ``length`` as columns; empty when
    no run edited such a set."""
    named = edits["data"].map(lambda stem: level_and_length(stem) if isinstance(stem, str) else None)
    chosen = edits[named.notna() & (edits["stage"] == "final") & (edits["family"] == family)
                   & edits["metric"].isin(["reliability", "locality"])]
    sets = named[chosen.index]
    return chosen.assign(level=[level for level, _ in sets], length=[length for _, length in sets])


def diversity_figure(edits: pd.DataFrame, family: str = "token") -> plt.Figure:
    """The final reliability (left) and locality (right) of ``family`` against the edit set's diversity level
    (in the order of ``LEVELS``: one relation, all relations, two requests per subject, subjects shared by many),
    one line per method and set length (docs/experiments.md)."""
    scores = edit_set_scores(edits, family)
    levels = [level for level in LEVELS if level in set(scores["level"])]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    lengths = sorted(set(scores["length"]))
    for ax, metric in zip(axes, ("reliability", "locality")):
        by_metric = scores[scores["metric"] == metric]
        for (method, length), group in by_metric.groupby(["method", "length"], dropna=False, sort=True):
            means = group.groupby("level")["value"].mean()
            shown = [level for level in levels if level in means.index]
            ax.plot([levels.index(level) for level in shown], [means[level] for level in shown], marker="o",
                    linestyle=LINE_STYLES[lengths.index(length) % len(LINE_STYLES)], label=f"{method}, {length} edits")
        ax.set_xticks(range(len(levels)), [level.replace("_", " ") for level in levels])
        ax.set(title=f"{family} {metric} after the last edit", xlabel="edit set (diversity level)",
               ylabel="score", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    figure.suptitle("what sequential editing keeps, by the edit set's diversity and length")
    return figure


STAMP_GID = "stamp"
"""The ``gid`` of the provenance line printed under a figure."""


def save_figure(figure: plt.Figure, path: Path, stamp: str = "") -> Path:
    """Write ``figure`` as a PNG at ``path`` atomically and close it (``lit_edit/plots.py``), with ``stamp`` (where
    the runs came from) in small grey text at its bottom left."""
    if stamp:
        figure.text(0.005, -0.02, stamp, fontsize=7, color="0.4", ha="left", va="top", gid=STAMP_GID)
    return save_png(figure, path)
