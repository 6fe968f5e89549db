"""The downstream test sets as one LightningDataModule with one test dataloader per task."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from lit_edit.paths import resolve_path
from lit_edit.tasks.formats import BadLines
from lit_edit.tasks.registry import TASK_NAMES, get_task
from lit_edit.tasks.suite import load_task_records


def _as_list(batch):
    return batch


class DownstreamDataModule(L.LightningDataModule):
    """The test sets of ``tasks`` read from ``root`` (the real files, or the fact-world mini tasks in the same
    formats), each item ``(index in its file, record)``.

    Args:
        root: the folder with the task files (``data/tasks`` under the data root, or ``data/factworld/tasks``;
            found as ``lit_edit.paths`` says).
        tasks: which of the 8 tasks, in this order (dataloader ``i`` is ``tasks[i]``); None: all 8.
        subset: keep this many examples per task, drawn with ``seed`` and kept in file order; None keeps all.
        seed: the subset's seed.
        batch_size: records per step (the generator batches their prompts again, by length).
        on_bad_line: ``error`` (default: a malformed line stops the run, naming file and line) or ``skip`` (left
            out, counted and listed in ``describe()``).
        strict_length: refuse an example longer than the model's context (default: the scoring module leaves it
            out and counts it, ``too_long`` in ``describe()``; ``lit_edit.tasks.suite.drop_too_long``).
    """

    def __init__(self, root: str = "data/factworld/tasks", tasks: list[str] | None = None,
                 subset: int | None = None, seed: int = 0, batch_size: int = 64, on_bad_line: str = "error",
                 strict_length: bool = False):
        super().__init__()
        self.strict_length = strict_length
        self.too_long: dict[str, int] = {}
        self.bad_lines = BadLines(on_bad_line)
        tasks = list(TASK_NAMES) if tasks is None else tasks
        for task in tasks:
            get_task(task)
        if subset is not None and subset < 1:
            raise ValueError(f"subset must be a positive number of examples or null, got {subset}")
        self.root = resolve_path(root)
        self.tasks, self.subset, self.seed, self.batch_size = list(tasks), subset, seed, batch_size
        self.datasets: dict[str, list[tuple[int, dict]]] = {}

    def setup(self, stage: str) -> None:
        if self.datasets:
            return
        for task in self.tasks:
            self.datasets[task] = load_task_records(self.root, task, self.subset, self.seed, self.bad_lines)

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per task over this process's shard, ``records[rank::world_size]``: uneven shards and no
        padding (a DistributedSampler would repeat examples to even them out, and the repeats would be counted)."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return [DataLoader(self.datasets[task][rank::world], batch_size=self.batch_size, shuffle=False,
                           collate_fn=_as_list) for task in self.tasks]

    def describe(self) -> dict:
        return {"root": str(self.root), "subset": self.subset, "seed": self.seed,
                "examples": {task: len(records) for task, records in self.datasets.items()},
                "skipped_lines": list(self.bad_lines.skipped), "too_long": dict(self.too_long)}
