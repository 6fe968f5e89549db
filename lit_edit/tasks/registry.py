"""The downstream tasks by name: one module of this package per task, each holding its
:class:`~lit_edit.tasks.base.DownstreamTask` as ``TASK`` (``docs/adding-a-task.md``), and reading a task's test
set from a task root.

:data:`TASK_MODULES` lists the modules in the order a run scores them (the default of every ``tasks`` option);
nothing here knows anything about a particular task.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from lit_edit.paths import resolve_path
from lit_edit.tasks.base import DownstreamTask
from lit_edit.tasks.formats import BadLines

TASK_MODULES = ("reasoning", "nli", "open_domain_qa", "closed_domain_qa", "dialogue", "summarization", "ner",
                "sentiment")
"""The task modules (``lit_edit.tasks.<name>``), in the order runs score them."""


def _collect(names: Sequence[str]) -> dict[str, DownstreamTask]:
    tasks = {}
    for name in names:
        task = import_module(f"lit_edit.tasks.{name}").TASK
        if task.name != name:
            raise ValueError(f"lit_edit.tasks.{name}.TASK is named {task.name!r}; a task is named after its module")
        tasks[name] = task
    return tasks


TASKS: dict[str, DownstreamTask] = _collect(TASK_MODULES)
"""One registry: task name -> the task."""

TASK_NAMES = tuple(TASKS)
TASK_FILES = {name: task.file for name, task in TASKS.items()}
"""Task name -> its test set's file (or folder) name in a task root."""


def get_task(name: str) -> DownstreamTask:
    if name not in TASKS:
        raise KeyError(f"unknown downstream task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]


def read_task(root: Path | str, task: str, reference_view: bool = False, bad: BadLines | None = None) -> list[dict]:
    """Read the test set of ``task`` (a key of :data:`TASK_FILES`) from ``root``.

    ``reference_view`` keeps what the reference harness saw beside the corrected reading: CoNLL ``-DOCSTART-``
    blocks as sentences (``"docstart": True``), and for RTE the quote-stripped texts as ``paper_sentence1/2``.
    ``bad`` says what a malformed line does (default: raise, naming file and line)."""
    if task not in TASK_FILES:
        raise KeyError(f"unknown task {task!r}; known: {sorted(TASK_FILES)}")
    root = resolve_path(root)
    path = root / TASK_FILES[task]
    if not path.exists():
        expected = "\n  ".join(f"{name}: {Path(root) / file}" for name, file in TASK_FILES.items())
        raise FileNotFoundError(f"task {task!r}: {path} does not exist (check the data root). A task root holds:"
                                f"\n  {expected}")
    return TASKS[task].read(path, reference_view, bad or BadLines())


def write_task(folder: Path | str, task: str, records: Sequence[dict]) -> None:
    """Write ``records`` as the test set of ``task`` in ``folder``, in the published format."""
    get_task(task).write(Path(folder) / TASK_FILES[task], records)
