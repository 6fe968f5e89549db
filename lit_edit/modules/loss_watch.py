"""Edits that went wrong without failing: an optimisation whose loss rose or did not fall
(:func:`lit_edit.editing.values.loss_trend`), and a step after which the monitor perplexity is more than
:data:`PERPLEXITY_DIVERGED` times its pre-edit value (the edits broke the model, e.g. FT at a huge learning rate).
Each gets a warning naming the edit step, the records and the loss or perplexity, and a tally in ``metrics.json``
(``optimisation``); with ``model.stop_on_divergence`` the run ends after the step where either diverged."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from lit_edit.editors.base import LossProblem

PERPLEXITY_DIVERGED = 10.0
"""A monitor perplexity above this multiple of its pre-edit value after an edit step counts as a divergence."""
MEANING = {"diverged": "rose (diverged)", "stalled": "did not fall (the edit may not have taken)"}
STOP_HINT = "model.stop_on_divergence: true ends the run there"


def new_tally() -> dict:
    """The ``optimisation`` entry of ``metrics.json``: requests per verdict, one row per problem, and the first step
    after which the perplexity diverged (None: none)."""
    return {"diverged": 0, "stalled": 0, "problems": [], "perplexity_diverged": None}


def report_loss_problems(step: int, problems: Sequence[LossProblem], tally: dict) -> list[str]:
    """Warn about each problem of edit step ``step`` and add it to ``tally``; returns the records whose loss
    diverged."""
    for p in problems:
        steps = f" over {p.steps} steps" if p.steps is not None else ""
        warnings.warn(f"edit step {step}, record(s) {p.records}: the {p.stage} loss {MEANING[p.verdict]}: "
                      f"{p.first:.4g} at its first step, {p.last:.4g} at its last{steps}; check the method's learning "
                      f"rate and steps ({STOP_HINT})", stacklevel=3)
        tally[p.verdict] += 1
        tally["problems"].append({"step": step, "records": p.records, "stage": p.stage, "verdict": p.verdict,
                                  "first_loss": p.first, "last_loss": p.last, "steps": p.steps})
    return [p.records for p in problems if p.verdict == "diverged"]


def watch_step(step: int, records: Sequence[str], problems: Sequence[LossProblem], perplexity: float | None,
               pre_perplexity: float | None, tally: dict, stop_on_divergence: bool) -> str | None:
    """Report edit step ``step`` (see the module docstring); returns the reason to stop the run when
    ``stop_on_divergence`` and a loss or the perplexity diverged, else None."""
    diverged = report_loss_problems(step, problems, tally)
    reason = None
    if diverged:
        reason = f"the optimisation loss of record(s) {', '.join(diverged)} diverged at edit step {step}"
    if perplexity is not None and pre_perplexity and perplexity > PERPLEXITY_DIVERGED * pre_perplexity:
        if tally["perplexity_diverged"] is None:
            warnings.warn(f"edit step {step}, record(s) {', '.join(records)}: the monitor perplexity is "
                          f"{perplexity:.4g}, more than {PERPLEXITY_DIVERGED:g} × its pre-edit {pre_perplexity:.4g}: "
                          f"the edits are breaking the model; check the method's learning rate ({STOP_HINT})",
                          stacklevel=2)
            tally["perplexity_diverged"] = {"step": step, "records": list(records), "perplexity": perplexity,
                                            "pre_edit": pre_perplexity}
        reason = reason or (f"the monitor perplexity {perplexity:.4g} at edit step {step} is more than "
                            f"{PERPLEXITY_DIVERGED:g} × its pre-edit {pre_perplexity:.4g}")
    return f"{reason} and model.stop_on_divergence is true" if reason and stop_on_divergence else None


def perplexity_stop(perplexity: float | None, pre_perplexity: float | None, factor: float | None,
                    n_edits: int) -> str | None:
    """The reason to stop when the monitor perplexity exceeds ``factor`` × its pre-edit value
    (``model.stop_perplexity_factor``; None: never), else None."""
    if factor and perplexity and perplexity > factor * pre_perplexity:
        return (f"perplexity {perplexity:.3g} after {n_edits} edits exceeds {factor} × its pre-edit value "
                f"{pre_perplexity:.3g}")
    return None
