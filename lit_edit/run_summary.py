"""The table an editing run prints at its end, read from its ``metrics.json`` alone (so any run folder can be
summarised again): the edit metrics before and after, each downstream task's change with its bootstrap interval,
the warnings of the run and where its files are (docs/evaluation.md, section 7)."""

from __future__ import annotations

from pathlib import Path

from lit_edit.tasks.registry import get_task

EDIT_METRICS = ("reliability", "generality", "locality", "portability")
MISSING = "–"
"""What a number the run did not compute (a stage not scored, a metric without data) prints as."""


def _number(value) -> str:
    return MISSING if value is None else f"{value:.3f}"


def _signed(value) -> str:
    return MISSING if value is None else f"{value:+.3f}"


def edit_metric_lines(metrics: dict) -> list[str]:
    """One row per metric family that ran: ``pre → final`` of each edit metric (``final`` is, with rollback, the
    immediate scores: ``final_source`` says which)."""
    pre, final = metrics.get("pre") or {}, metrics.get("final") or {}
    families = list(dict.fromkeys([*pre, *final]))
    if not families:
        return ["edit metrics: none scored"]
    source = metrics.get("final_source")
    lines = [f"edit metrics, pre → final{f' [final: {source}]' if source else ''}:",
             f"  {'family':<12}" + "".join(f"{m:>18}" for m in EDIT_METRICS)]
    for family in families:
        cells = [f"{_number(pre.get(family, {}).get(m))} → {_number(final.get(family, {}).get(m))}"
                 for m in EDIT_METRICS]
        lines.append(f"  {family:<12}" + "".join(f"{c:>18}" for c in cells))
    return lines


def _headline(task: str, delta: dict) -> tuple[str, str] | None:
    """The first scoring mode of ``task`` that has a change, and its headline metric (``Task.primary``)."""
    primary = get_task(task).primary
    for mode, values in delta.items():
        if mode in primary and primary[mode] in values:
            return mode, primary[mode]
    return None


def downstream_lines(metrics: dict) -> list[str]:
    """One row per downstream task: its headline metric pre, post, and post − pre with the 95 % bootstrap interval
    (``metrics.json`` ``downstream``; none without downstream tasks)."""
    tasks = metrics.get("downstream") or {}
    rows = []
    for task, scores in tasks.items():
        chosen = _headline(task, scores.get("delta") or {})
        if chosen is None:
            continue
        mode, metric = chosen
        low_high = (scores.get("delta_ci95") or {}).get(mode, {}).get(metric)
        interval = f"[{_signed(low_high[0])}, {_signed(low_high[1])}]" if low_high else MISSING
        rows.append(f"  {task:<18}{f'{mode} {metric}':<22}{_number(scores['pre'][mode].get(metric)):>7}"
                    f"{_number(scores['post'][mode].get(metric)):>8}{_signed(scores['delta'][mode][metric]):>9}"
                    f"  {interval}")
    if not rows:
        return []
    header = f"  {'task':<18}{'metric':<22}{'pre':>7}{'post':>8}{'Δ':>9}  95 % interval"
    return ["downstream, post − pre:", header, *rows]


def warning_lines(metrics: dict) -> list[str]:
    """What went wrong without failing: an early stop, optimisation losses that diverged or stalled, a diverged or
    non-finite monitor perplexity, ranks that disagree."""
    found = []
    if metrics.get("stopped_early"):
        found.append(f"stopped early: {metrics['stopped_early']}")
    tally = metrics.get("optimisation") or {}
    for verdict, meaning in (("diverged", "diverged"), ("stalled", "did not fall")):
        if tally.get(verdict):
            steps = sorted({p["step"] for p in tally.get("problems", []) if p.get("verdict") == verdict})
            found.append(f"the value loss {meaning} for {tally[verdict]} request(s), at edit step(s) "
                         f"{', '.join(map(str, steps))}")
    blowup = tally.get("perplexity_diverged")
    if blowup:
        found.append(f"the monitor perplexity diverged at edit step {blowup['step']}: {blowup['perplexity']:.4g} "
                     f"(pre-edit {blowup['pre_edit']:.4g})")
    monitors = metrics.get("monitors") or {}
    if (monitors.get("pre") or {}).get("perplexity") is not None and "final" in monitors \
            and (monitors["final"] or {}).get("perplexity") is None:
        found.append("the final monitor perplexity is not finite")
    if (metrics.get("processes") or {}).get("identical_weights") is False:
        found.append("the processes' edited weights differ")
    return [f"warning: {w}" for w in found] or ["warnings: none"]


def summary_text(metrics: dict, folder) -> str:
    """The end-of-run table of the run whose ``metrics.json`` is ``metrics`` and whose results folder is
    ``folder``: a title line, the edit metrics, the downstream changes, the warnings and the paths."""
    folder = Path(folder)
    mode = metrics.get("mode") or {}
    seconds = metrics.get("seconds")
    timing = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [f"[lit-edit] {metrics.get('n_edits', 0)} edits ({mode.get('name', MISSING)}, "
             f"{metrics.get('method', MISSING)}){timing}",
             *edit_metric_lines(metrics), *downstream_lines(metrics), *warning_lines(metrics),
             f"results: {folder}", f"  {folder / 'metrics.json'}", f"  {folder / 'plots'}/"]
    return "\n".join(lines)
