"""The downstream tasks of an editing run: scored before the first edit (cached), after the last, and on the periodic
schedule where ``model.downstream.periodic`` is true (docs/evaluation.md); the points of the curve, the post − pre
differences with their bootstrap intervals, and what a run state keeps of them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lit_edit.distributed import Ranks
from lit_edit.modules.downstream import flatten_scores
from lit_edit.tasks.suite import DownstreamSuite
from lit_edit.tasks.summary import TaskScores, bootstrap_delta, nested_delta

Log = Callable[[dict, int], None]
"""Logs numbers at a number of edits (the module's loggers)."""


class DownstreamRun:
    """The downstream scores of one editing run.

    Args:
        suite: the task records, read and checked before the run folder exists.
        log: where each scored point goes (``downstream/...`` and, at the end, ``downstream_delta/...``).
        progress: show progress bars while scoring.
    """

    def __init__(self, suite: DownstreamSuite, log: Log, progress: bool):
        self.suite, self.config, self.log, self.progress = suite, suite.config, log, progress
        self.pre: dict[str, TaskScores] = {}
        self.pre_cached: list[str] = []
        self.latest: tuple[int, dict[str, TaskScores]] | None = None
        self.curve: list[dict] | None = None      # None until :meth:`start`

    def start(self, model, tokenizer, model_identity: str, cache_dir: str | Path, ranks: Ranks, write: bool) -> None:
        """The pre-edit scores (from the cache when this model was scored before; ``write``: this rank writes it),
        the ranks sharing the records."""
        self.suite.ranks = ranks
        self.pre, self.pre_cached = self.suite.pre_edit(model, tokenizer, model_identity, cache_dir,
                                                        progress=self.progress, write=write)
        self.latest = None
        self.curve = [self._point(0, self.pre)]

    def _point(self, n_edits: int, scores: dict[str, TaskScores]) -> dict:
        point = {"n_edits": n_edits, "scores": {task: s.summary() for task, s in scores.items()}}
        self.log({f"downstream/{k}": v for k, v in flatten_scores(point["scores"]).items()}, n_edits)
        return point

    def evaluate(self, model, tokenizer, n_edits: int) -> None:
        """Score the model as it is now (after ``n_edits`` edits) on every task."""
        scores = self.suite.evaluate(model, tokenizer, after_edit=True, progress=self.progress)
        self.latest = (n_edits, scores)
        self.curve.append(self._point(n_edits, scores))

    def finish(self, model, tokenizer, n_edits: int, rollback: bool) -> dict:
        """``downstream.<task>.{pre, post, delta, delta_ci95}`` (each ``{mode: {metric: value}}``), the curve of
        every scored point and what was scored (the entries of ``metrics.json``). Without rollback the model after
        the last edit is scored here unless the last point already did."""
        if not rollback and n_edits and (self.latest is None or self.latest[0] != n_edits):
            self.evaluate(model, tokenizer, n_edits)
        post = self.latest[1] if self.latest else None
        per_task = {}
        for task, pre in self.pre.items():
            entry = {"pre": pre.summary(), "post": None, "delta": None, "delta_ci95": None}
            if post is not None:
                entry["post"] = post[task].summary()
                entry["delta"] = nested_delta(entry["pre"], entry["post"])
                entry["delta_ci95"] = bootstrap_delta(pre, post[task], self.config.bootstrap_resamples,
                                                      seed=self.config.seed)
            per_task[task] = entry
        if post is not None:
            deltas = flatten_scores({task: entry["delta"] for task, entry in per_task.items()})
            self.log({f"downstream_delta/{k}": v for k, v in deltas.items()}, n_edits)
        post_model = ("the model holding the last step's edits, scored before its rollback" if rollback
                      else f"the model after all {n_edits} edits")
        setup = {**self.suite.describe(), "pre_from_cache": self.pre_cached,
                 "post_model": post_model if post is not None else None,
                 "post_n_edits": self.latest[0] if self.latest else None}
        return {"downstream": per_task, "downstream_curve": self.curve, "downstream_setup": setup}

    def state(self) -> dict:
        """What a run state keeps: the curve, which pre-edit scores came from the cache, the latest scores."""
        latest = None if self.latest is None else [self.latest[0], {task: scores.to_dict()
                                                                    for task, scores in self.latest[1].items()}]
        return {"curve": self.curve, "pre_cached": self.pre_cached, "latest": latest}

    def restore(self, state: dict) -> None:
        """Continue from :meth:`state` (after :meth:`start`, which scored or read the pre-edit scores)."""
        latest = state["latest"]
        self.curve = state["curve"]
        self.pre_cached = state["pre_cached"]   # as the run's first part got them
        self.latest = None if latest is None else (
            latest[0], {task: TaskScores.from_dict(scores) for task, scores in latest[1].items()})

    def replay_logs(self) -> None:
        """Log the restored curve again (its first point, the pre-edit scores, was logged by :meth:`start`)."""
        for point in self.curve[1:]:
            self.log({f"downstream/{k}": v for k, v in flatten_scores(point["scores"]).items()}, point["n_edits"])
