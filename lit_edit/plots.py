"""PNG plots of a run against the number of edits (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _save(figure, path: Path, title: str = "") -> Path:
    """Write ``figure`` to ``path`` (PNG, atomically), titled ``title`` above its panels where given."""
    if title:
        figure.suptitle(title)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(figure)
    os.replace(tmp, path)
    return path


def plot_edit_metrics(curve: list[dict], family: str, path: Path, title: str = "") -> Path:
    """All edits so far, scored at each evaluation point: one line per metric of ``family``."""
    figure, ax = plt.subplots(figsize=(6, 4))
    for metric in ("reliability", "generality", "locality", "portability"):
        points = [(p["n_edits"], p["scores"].get(f"{family}/{metric}")) for p in curve]
        points = [(x, y) for x, y in points if y is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=metric)
    ax.set(xlabel="number of edits", ylabel=f"{family} score (all edits so far)", ylim=(-0.02, 1.02))
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(figure, path, title)


def plot_retention(retention: list[dict], key: str, path: Path, title: str = "") -> Path:
    """``key`` of the first and of the latest cohort of edits at each evaluation point."""
    figure, ax = plt.subplots(figsize=(6, 4))
    for cohort in ("first_cohort", "latest_cohort"):
        points = [(p["n_edits"], p[cohort].get(key)) for p in retention if p[cohort].get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=cohort.replace("_", " "))
    ax.set(xlabel="number of edits", ylabel=key, ylim=(-0.02, 1.02), title="retention")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(figure, path, title)


def plot_monitors(steps: list[dict], path: Path, title: str = "") -> Path:
    """‖W‖₁/numel and ‖W − W₀‖_F per edited matrix, and the perplexity, against the number of edits."""
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    x = [s["n_edits"] for s in steps]
    for ax, prefix in zip(axes, ("l1_per_numel/", "drift_fro/")):
        for key in [k for k in steps[0] if k.startswith(prefix)] if steps else []:
            ax.plot(x, [s.get(key) for s in steps], label=key.removeprefix(prefix))
        ax.set(xlabel="number of edits", title=prefix.rstrip("/"))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    perplexity = [(s["n_edits"], s["perplexity"]) for s in steps if s.get("perplexity") is not None]
    if perplexity:
        axes[2].plot(*zip(*perplexity))
    axes[2].set(xlabel="number of edits", title="perplexity (fixed text)")
    axes[2].ticklabel_format(axis="y", useOffset=False)
    axes[2].grid(alpha=0.3)
    return _save(figure, path, title)


def post_edit_intervals(downstream: dict) -> dict[tuple[str, str, str], tuple[float, float]]:
    """``(task, mode, metric)`` → the 95 % bootstrap interval of the post-edit score: the run's interval of
    post − pre (``metrics.json``'s ``downstream.<task>.delta_ci95``) moved by the pre-edit score."""
    intervals = {}
    for task, result in (downstream or {}).items():
        for mode, by_metric in (result.get("delta_ci95") or {}).items():
            for metric, ci in (by_metric or {}).items():
                pre = ((result.get("pre") or {}).get(mode) or {}).get(metric)
                if pre is not None and ci is not None and None not in ci:
                    intervals[(task, mode, metric)] = (pre + ci[0], pre + ci[1])
    return intervals


def plot_downstream(curve: list[dict], path: Path, title: str = "", intervals: dict | None = None,
                    at: int | None = None) -> Path:
    """The headline metric of each downstream task and mode against the number of edits (one panel per task), with
    the post-edit score's 95 % interval (``intervals``, :func:`post_edit_intervals`) as an error bar at ``at``
    edits."""
    from lit_edit.tasks.registry import get_task

    tasks = list(curve[0]["scores"]) if curve else []
    columns = min(4, max(len(tasks), 1))
    rows = max(1, -(-len(tasks) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.4 * rows), squeeze=False, layout="constrained")
    for ax, task in zip(axes.flat, tasks):
        for mode, metric in get_task(task).primary.items():
            points = [(p["n_edits"], p["scores"][task].get(mode, {}).get(metric)) for p in curve]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                (line,) = ax.plot(*zip(*points), marker="o", linestyle="-" if mode == "corrected" else "--",
                                  label=f"{mode}: {metric}")
                low_high, y = (intervals or {}).get((task, mode, metric)), dict(points).get(at)
                if low_high is not None and y is not None:
                    ax.errorbar([at], [y], yerr=[[y - low_high[0]], [low_high[1] - y]], fmt="none", capsize=3,
                                color=line.get_color())
        ax.set(title=task, xlabel="number of edits", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    return _save(figure, path, title)


def plot_gate_scores(max_z: dict, alphas: dict, path: Path) -> Path:
    """COMEBA-HK's gate: per hooked layer, histograms of the prompts' max z by group, with the threshold α."""
    layers = list(max_z)
    figure, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.4), squeeze=False, layout="constrained")
    for ax, layer in zip(axes.flat, layers):
        for group, values in max_z[layer].items():
            finite = [v for v in values if v is not None and math.isfinite(v)]
            if finite:
                ax.hist(finite, bins=40, alpha=0.5, label=f"{group} ({len(finite)})")
        ax.axvline(alphas[layer], color="black", linestyle="--", label=f"α = {alphas[layer]:.2f}")
        ax.set(title=f"layer {layer}", xlabel="max z over the prompt", ylabel="prompts")
        ax.legend(fontsize=7)
    return _save(figure, path)
