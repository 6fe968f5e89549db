"""The downstream test sets as one LightningDataModule with one test dataloader per task."""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from lit_edit.tasks.formats import read_task
from lit_edit.tasks.registry import TASK_NAMES, get_task


def _as_list(batch):
    return batch


class DownstreamDataModule(L.LightningDataModule):
    """The test sets of ``tasks`` read from ``root`` (the real files, or the fact-world mini tasks in the same
    formats), each item ``(index in its file, record)``.

    Args:
        root: the folder with the task files (``../shared/data/tasks`` or ``data/factworld/tasks``).
        tasks: which of the 8 tasks, in this order (dataloader ``i`` is ``tasks[i]``); None: all 8.
        subset: keep this many examples per task, drawn with ``seed`` and kept in file order; None keeps all.
        seed: the subset's seed.
        batch_size: records per step (the generator batches their prompts again, by length).
    """

    def __init__(self, root: str = "data/factworld/tasks", tasks: list[str] | None = None,
                 subset: int | None = None, seed: int = 0, batch_size: int = 64):
        super().__init__()
        tasks = list(TASK_NAMES) if tasks is None else tasks
        for task in tasks:
            get_task(task)
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be a positive number of examples or null, got {subset}")
        self.root, self.tasks, self.subset, self.seed, self.batch_size = Path(root), list(tasks), subset, seed, batch_size
        self.datasets: dict[str, list[tuple[int, dict]]] = {}

    def setup(self, stage: str) -> None:
        if self.datasets:
            return
        for task in self.tasks:
            records = list(enumerate(read_task(self.root, task, reference_view=True)))
            if self.subset is not None and self.subset < len(records):
                keep = sorted(random.Random(self.seed).sample(range(len(records)), self.subset))
                records = [records[i] for i in keep]
            self.datasets[task] = records

    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.datasets[task], batch_size=self.batch_size, shuffle=False, collate_fn=_as_list)
                for task in self.tasks]

    def describe(self) -> dict:
        return {"root": str(self.root), "subset": self.subset, "seed": self.seed,
                "examples": {task: len(records) for task, records in self.datasets.items()}}
