"""One torchmetrics Metric per downstream task: sum states (and, for NQ's paper scan, per-example tuples) that
add up across processes with uneven shards; :meth:`DownstreamMetric.compute` hands the totals to the task's
``summarize`` (``docs/lightning.md`` §4: no ROUGEScore-style list states of strings in distributed evaluation)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

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
        for score, index in zip(scores, indices, strict=True):
            for name, state in self._names.items():
                if name in score:
                    setattr(self, state, getattr(self, state) + float(score[name]))
            for name, state in self._ordered.items():
                getattr(self, state).append(torch.tensor([index, *score[name]], dtype=torch.float64)[None])

    def compute(self) -> dict[str, dict]:
        sums = {name: float(getattr(self, state)) for name, state in self._names.items()}
        ordered = {}
        for name, state in self._ordered.items():
            value = getattr(self, state)
            rows = torch.cat(value) if isinstance(value, list) and value else value
            if isinstance(rows, list) or rows.numel() == 0:
                ordered[name] = []
                continue
            rows = rows[rows[:, 0].argsort()]
            ordered[name] = [tuple(int(x) for x in row[1:]) for row in rows]
        return self.task.summarize(sums, ordered)
