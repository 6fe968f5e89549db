"""Small versions of the downstream tasks over the fact world, in the real files' formats.

They are built from the world's facts, so the model learns them during pretraining (train split) and editing
damage shows up on the test split. Each mini task is one module of this package named after its downstream task
(``lit_edit.tasks.<name>``), with ``generate(world, rng, n)`` (the records), ``training_examples(record)`` (the
texts a perfect model would produce: each prompt + its gold continuation, which the corpus builder trains on) and,
optionally, ``gold(record)`` (the gold continuation) and ``VARIANTS`` (easier training-only generators in the
task's format). A registered task without such a module simply has no mini version (``docs/adding-a-task.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from importlib.util import find_spec
from types import ModuleType

from lit_edit.tasks.registry import TASK_NAMES

MINI_TASKS: dict[str, ModuleType] = {
    name: import_module(f"{__name__}.{name}") for name in TASK_NAMES if find_spec(f"{__name__}.{name}") is not None}
"""Task name -> its mini task's module."""

GENERATORS: dict[str, Callable] = {name: module.generate for name, module in MINI_TASKS.items()}
"""Task name -> ``generate(world, rng, n)``."""

GOLD: dict[str, Callable[[dict], str]] = {name: module.gold for name, module in MINI_TASKS.items()
                                          if hasattr(module, "gold")}
"""Task name -> the gold continuation of a record (tasks with one answer per record)."""

DIRECT_VARIANTS: dict[str, tuple[str, Callable]] = {
    variant: (name, generate) for name, module in MINI_TASKS.items()
    for variant, generate in getattr(module, "VARIANTS", {}).items()}
"""Training-only variant name -> (the task whose format and prompt it uses, its generator)."""


def training_examples(task: str, record: dict) -> list[tuple[str, int]]:
    """Prompt + gold continuation, the texts the model is pretrained on, each with the character offset where
    its gold answer begins (several texts for NER, one per type; two for reasoning, with and without the hint)."""
    return MINI_TASKS[task].training_examples(record)


def training_texts(task: str, record: dict) -> list[str]:
    """The texts of :func:`training_examples` (what ``corpus/train.jsonl`` holds for each training record)."""
    return [text for text, _ in training_examples(task, record)]
