"""The task registry's contract (docs/adding-a-task.md): one module per task holding its ``TASK``, every such module
registered, each task's writer and reader agreeing, and the fact-world mini tasks collected by the same names."""

from __future__ import annotations

import os
import pkgutil
import random
import subprocess
import sys
import types
from dataclasses import replace

import pytest

import lit_edit.tasks
from lit_edit.factworld import tasks as world_tasks
from lit_edit.factworld.world import build_world
from lit_edit.tasks import registry
from lit_edit.tasks.base import DownstreamTask
from tests.conftest import ROOT


def task_modules_in_the_package() -> set[str]:
    """The modules of ``lit_edit.tasks`` that hold a ``TASK`` (found by walking the package, not by the registry)."""
    found = set()
    for info in pkgutil.iter_modules(lit_edit.tasks.__path__):
        module = __import__(f"lit_edit.tasks.{info.name}", fromlist=["TASK"])
        if isinstance(getattr(module, "TASK", None), DownstreamTask):
            found.add(info.name)
    return found


def test_every_task_module_is_registered_under_its_name():
    assert task_modules_in_the_package() == set(registry.TASK_NAMES)
    assert all(registry.get_task(name).name == name for name in registry.TASK_NAMES)
    assert len(set(registry.TASK_FILES.values())) == len(registry.TASK_FILES)     # one file per task


def test_a_task_named_unlike_its_module_is_refused(monkeypatch):
    module = types.ModuleType("lit_edit.tasks.misnamed")
    module.TASK = replace(registry.get_task("sentiment"), name="other")
    monkeypatch.setitem(sys.modules, "lit_edit.tasks.misnamed", module)
    with pytest.raises(ValueError, match=r"lit_edit.tasks.misnamed.TASK is named 'other'"):
        registry._collect(["misnamed"])


@pytest.mark.parametrize("name", registry.TASK_NAMES)
def test_each_task_declares_what_its_scores_report(name):
    task = registry.get_task(name)
    assert task.max_new_tokens >= 1 and "n" in task.counters
    summary = task.summarize(dict.fromkeys(task.counters, 0.0), {key: [] for key in task.ordered})
    assert "corrected" in task.primary
    for mode, metric in task.primary.items():
        if mode in summary:
            assert metric in summary[mode]


def test_mini_tasks_are_registered_tasks():
    assert set(world_tasks.MINI_TASKS) <= set(registry.TASK_NAMES)
    assert all(base in registry.TASK_NAMES for base, _ in world_tasks.DIRECT_VARIANTS.values())


@pytest.mark.parametrize("name", list(world_tasks.GENERATORS))
def test_a_task_reads_back_what_it_writes(tmp_path, name):
    """Generated records written in the published format and read again give the same queries (prompts, lengths),
    the same gold answers and, for NER, the same tokens and tags."""
    task = registry.get_task(name)
    records = world_tasks.GENERATORS[name](build_world(0, 30), random.Random(0), 12)
    registry.write_task(tmp_path, name, records)
    read = registry.read_task(tmp_path, name, reference_view=True)
    read = [r for r in read if not r.get("docstart")]
    assert len(read) == len(records)
    assert [task.queries(r) for r in read] == [task.queries(r) for r in records]
    if task.gold_label is not None:
        assert [task.gold_label(r) for r in read] == [task.gold_label(r) for r in records]
    if name == "ner":
        assert [(r["tokens"], r["tags"]) for r in read] == [(r["tokens"], r["tags"]) for r in records]


@pytest.mark.parametrize(("module", "below"), [("lit_edit.generation", "lit_edit.tasks"),
                                               ("lit_edit.tasks.registry", "lit_edit.factworld")])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_imports_look_down(module, below):
    """Generation is below the tasks, the tasks below the fact world: importing the lower module alone, in a fresh
    interpreter, loads nothing of the higher package."""
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith('{below}')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.strip()
    assert loaded == "[]", f"{module} imports {loaded}"
