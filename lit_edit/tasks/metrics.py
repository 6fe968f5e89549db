"""One torchmetrics Metric per downstream task: sum states (and, for NQ's paper scan, per-example tuples) that
add up across processes with uneven shards; :meth:`DownstreamMetric.compute` hands the totals to the task's
``summarize`` (``docs/lightning.md`` §4: no ROUGEScore-style list states of strings in distributed evaluation).

The per-example counter rows are kept too (a ``cat`` state of numbers, gathered the same way), so that an
editing run can pair pre- and post-edit examples for a bootstrap interval (:mod:`lit_edit.tasks.summary`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_edit.tasks.base import DownstreamTask
from lit_edit.tasks.registry import get_task
from lit_edit.tasks.summary import TaskScores


def _gathered_rows(value) -> torch.Tensor | None:
    if isinstance(value, list) and not value:
        return None
    rows = dim_zero_cat(value)
    return rows[rows[:, 0].argsort(stable=True)]


class DownstreamMetric(Metric):
    """Counters of one task (``registry.TASKS[task].counters``) summed over examples."""

    full_state_update = False

    def __init__(self, task: str | DownstreamTask, keep_examples: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.task = get_task(task) if isinstance(task, str) else task
        self.keep_examples = keep_examples
        self._names = {name: f"sum_{i}" for i, name in enumerate(self.task.counters)}
        for state in self._names.values():
            self.add_state(state, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self._ordered = {name: f"ordered_{i}" for i, name in enumerate(self.task.ordered)}
        for state in self._ordered.values():
            self.add_state(state, default=[], dist_reduce_fx="cat")
        if keep_examples:
            self.add_state("examples", default=[], dist_reduce_fx="cat")

    def update(self, scores: Sequence[dict], indices: Sequence[int]) -> None:
        """Add the per-example scores of :meth:`DownstreamTask.score`; ``indices`` are the examples' positions in
        their file (the order the NQ paper scan is replayed in, and the key that pairs pre- and post-edit rows)."""
        scores = list(scores)
        if len(scores) != len(indices):
            raise ValueError(f"{len(scores)} scores but {len(indices)} example indices")
        if not scores:
            return
        for name, state in self._names.items():
            total = sum(float(score.get(name, 0.0)) for score in scores)
            setattr(self, state, getattr(self, state) + total)
        for name, state in self._ordered.items():
            rows = [[index, *score[name]] for score, index in zip(scores, indices)]
            getattr(self, state).append(torch.tensor(rows, dtype=torch.float64))
        if self.keep_examples:
            rows = [[index, *(float(score.get(name, 0.0)) for name in self.task.counters)]
                    for score, index in zip(scores, indices)]
            self.examples.append(torch.tensor(rows, dtype=torch.float64))

    def _ordered_values(self) -> dict[str, list[tuple]]:
        ordered = {}
        for name, state in self._ordered.items():
            rows = _gathered_rows(getattr(self, state))
            ordered[name] = [] if rows is None else [tuple(int(x) for x in row[1:]) for row in rows.tolist()]
        return ordered

    def scored(self) -> int:
        """How many examples were counted, over all processes (the ``n`` counter)."""
        with self.sync_context(should_sync=self.sync_on_compute):
            return int(getattr(self, self._names["n"]))

    def compute(self) -> dict[str, dict]:
        sums = {name: float(getattr(self, state)) for name, state in self._names.items()}
        return self.task.summarize(sums, self._ordered_values())

    def task_scores(self) -> TaskScores:
        """Every example's counters, gathered from all processes, in file order."""
        if not self.keep_examples:
            raise RuntimeError("this DownstreamMetric was built with keep_examples=False")
        with self.sync_context(should_sync=self.sync_on_compute):
            rows = _gathered_rows(self.examples)
            ordered = self._ordered_values()
        width = len(self.task.counters)
        rows = torch.zeros((0, width + 1), dtype=torch.float64) if rows is None else rows
        return TaskScores(self.task.name, [int(i) for i in rows[:, 0].tolist()], rows[:, 1:].clone(), ordered)
