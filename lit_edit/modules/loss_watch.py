"""Edits whose optimisation went wrong: a warning per request naming the edit step, the record and its loss, a tally
in ``metrics.json`` (``optimisation``), and with ``model.stop_on_divergence`` the end of the run after the step where
a loss diverged. The verdicts come from :func:`lit_edit.editing.values.loss_trend`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from lit_edit.editors.base import LossProblem

MEANING = {"diverged": "rose (diverged)", "stalled": "did not fall (the edit may not have taken)"}


def new_tally() -> dict:
    """The ``optimisation`` entry of ``metrics.json``: counts per verdict and one row per problem."""
    return {"diverged": 0, "stalled": 0, "problems": []}


def report_loss_problems(step: int, problems: Sequence[LossProblem], tally: dict, stop_on_divergence: bool
                         ) -> str | None:
    """Warn about each problem of edit step ``step`` and add it to ``tally``; returns the reason to stop the run
    when ``stop_on_divergence`` and a loss diverged (None otherwise)."""
    for p in problems:
        steps = f" over {p.steps} steps" if p.steps is not None else ""
        warnings.warn(f"edit step {step}, record(s) {p.records}: the {p.stage} loss {MEANING[p.verdict]}: "
                      f"{p.first:.4g} at its first step, {p.last:.4g} at its last{steps}; check the method's learning "
                      "rate and steps (model.stop_on_divergence: true ends the run at a diverged loss)", stacklevel=2)
        tally[p.verdict] += 1
        tally["problems"].append({"step": step, "records": p.records, "stage": p.stage, "verdict": p.verdict,
                                  "first_loss": p.first, "last_loss": p.last, "steps": p.steps})
    diverged = [p.records for p in problems if p.verdict == "diverged"]
    if stop_on_divergence and diverged:
        return (f"the {problems[0].stage} loss diverged at edit step {step} (record(s) {', '.join(diverged)}) and "
                "model.stop_on_divergence is true")
    return None
