"""Per-example scores of one task on one model, and what an editing run reports from two of them: the pre- and
post-edit numbers, their difference, and a paired bootstrap interval of the difference (``docs/evaluation.md`` §6:
the downstream sets are small)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lit_edit.tasks.registry import get_task


@dataclass
class TaskScores:
    """The counter increments (:meth:`DownstreamTask.score`) of every example of ``task``, one row per example in
    file order (``indices`` are positions in the file; the columns are ``task.counters``), and the per-example
    tuples replayed in order (NQ's paper scan)."""

    task: str
    indices: list[int]
    counters: torch.Tensor
    ordered: dict[str, list[tuple]] = field(default_factory=dict)

    def sums(self, weights: torch.Tensor | None = None) -> dict[str, float]:
        """Counter totals; ``weights`` (one per example) gives a resample's totals."""
        totals = self.counters.sum(0) if weights is None else weights.to(self.counters) @ self.counters
        return dict(zip(get_task(self.task).counters, totals.tolist()))

    def summary(self) -> dict[str, dict]:
        """The reported numbers, ``{mode: {metric: value}}`` (:meth:`DownstreamTask.summarize`)."""
        return get_task(self.task).summarize(self.sums(), self.ordered)

    def to_dict(self) -> dict:
        return {"task": self.task, "counters": list(get_task(self.task).counters), "indices": self.indices,
                "rows": self.counters.tolist(), "ordered": {k: [list(t) for t in v] for k, v in self.ordered.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> TaskScores:
        expected = list(get_task(data["task"]).counters)
        if data["counters"] != expected:
            raise ValueError(f"cached scores of {data['task']!r} have counters {data['counters']}, the task now "
                             f"has {expected}")
        rows = torch.tensor(data["rows"], dtype=torch.float64).reshape(len(data["indices"]), len(expected))
        return cls(data["task"], list(data["indices"]), rows,
                   {k: [tuple(t) for t in v] for k, v in data["ordered"].items()})


def nested_delta(pre: dict[str, dict], post: dict[str, dict]) -> dict[str, dict]:
    """``post − pre`` for every metric both have (None where either is missing)."""
    return {mode: {name: (post[mode][name] - value if value is not None and post.get(mode, {}).get(name) is not None
                          else None) for name, value in metrics.items()} for mode, metrics in pre.items()}


def bootstrap_delta(pre: TaskScores, post: TaskScores, resamples: int = 1000, level: float = 0.95,
                    seed: int = 0) -> dict[str, dict]:
    """Percentile interval of ``post − pre`` for every metric, resampling examples with replacement, the same
    examples for both models (paired). Metrics that depend on the order of examples (NQ's paper scan) are left
    out. Returns ``{mode: {metric: [low, high]}}``."""
    if pre.task != post.task or pre.indices != post.indices:
        raise ValueError(f"pre- and post-edit scores of {pre.task!r}/{post.task!r} are not over the same examples")
    n = len(pre.indices)
    if n == 0 or resamples < 1:
        return {}
    task = get_task(pre.task)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, n, (resamples, n), generator=generator)
    weights = torch.zeros((resamples, n), dtype=torch.float64).scatter_add_(
        1, picks, torch.ones((resamples, n), dtype=torch.float64))
    draws: dict[tuple[str, str], list[float]] = {}
    for w in weights:
        delta = nested_delta(task.summarize(pre.sums(w)), task.summarize(post.sums(w)))
        for mode, metrics in delta.items():
            for name, value in metrics.items():
                if value is not None:
                    draws.setdefault((mode, name), []).append(value)
    tail = (1 - level) / 2
    intervals: dict[str, dict] = {}
    for (mode, name), values in draws.items():
        if len(values) == resamples:     # a metric undefined in some resamples gets no interval
            quantiles = torch.tensor(values, dtype=torch.float64).quantile(torch.tensor([tail, 1 - tail],
                                                                                        dtype=torch.float64))
            intervals.setdefault(mode, {})[name] = quantiles.tolist()
    return intervals
