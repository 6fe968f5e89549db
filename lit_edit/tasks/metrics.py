"""One torchmetrics Metric per downstream task: sum states (and, for NQ's paper scan, per-example tuples) that
add up across processes with uneven shards; :meth:`DownstreamMetric.compute` hands the totals to the task's
``summarize`` (``docs/lightning.md`` §4: no ROUGEScore-style list states of strings in distributed evaluation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_edit.tasks.registry import DownstreamTask, get_task


class DownstreamMetric(Metric):
    """Counters of one task (``registry.TASKS[task].counters``) summed over examples."""

    full_state_update = False

    def __init__(self, task: str | DownstreamTask, **kwargs):
        super().__init__(**kwargs)
        self.task = get_task(task) if isinstance(task, str) else task
        self._names = {name: f"sum_{i}" for i, name in enumerate(self.task.counters)}
        for state in self._names.values():
            self.add_state(state, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self._ordered = {name: f"ordered_{i}" for i, name in enumerate(self.task.ordered)}
        for state in self._ordered.values():
            self.add_state(state, default=[], dist_reduce_fx="cat")

    def update(self, scores: Sequence[dict], indices: Sequence[int]) -> None:
        """Add the per-example scores of :meth:`DownstreamTask.score`; ``indices`` are the examples' positions in
        their file (the order the NQ paper scan is replayed in)."""
        scores = list(scores)
        if len(scores) != len(indices):
            raise ValueError(f"{len(scores)} scores but {len(indices)} example indices")
        for name, state in self._names.items():
            total = sum(float(score[name]) for score in scores if name in score)
            setattr(self, state, getattr(self, state) + total)
        for name, state in self._ordered.items():
            rows = [[index, *score[name]] for score, index in zip(scores, indices)]
            if rows:
                getattr(self, state).append(torch.tensor(rows, dtype=torch.float64))

    def compute(self) -> dict[str, dict]:
        sums = {name: float(getattr(self, state)) for name, state in self._names.items()}
        ordered = {}
        for name, state in self._ordered.items():
            value = getattr(self, state)
            if isinstance(value, list) and not value:
                ordered[name] = []
                continue
            rows = dim_zero_cat(value)
            rows = rows[rows[:, 0].argsort()]
            ordered[name] = [tuple(int(x) for x in row[1:]) for row in rows.tolist()]
        return self.task.summarize(sums, ordered)
