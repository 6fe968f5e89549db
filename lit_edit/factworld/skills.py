"""A skills corpus: many more training examples of chosen mini tasks, with their answers marked.

The pretraining corpus holds 600 examples of each mini task, enough for tasks the model answers by recalling or
copying, not for the comparison tasks (a yes/no claim against a passage, entailment, the reply consistent with a
dialogue): a 4-layer model fine-tuned on their answers alone stays at chance for some 2,500 steps of 32 and only
then starts to compare (docs/factworld.md). ``corpus/skills.jsonl`` gives a later training stage those examples in
bulk, from the same generators as the test sets (or their direct variants, ``tasks.DIRECT_VARIANTS``, where the
passage holds only the statement in question), in the corpus's record format plus
``answer``, the character span of the gold continuation, which :class:`~lit_edit.modules.CausalLMModule` can
weight (``answer_weight``). Its texts are not part of the tokenizer's training data, so writing it changes nothing
else in the world folder; no example repeats a test prompt.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from lit_edit.factworld import tasks as world_tasks
from lit_edit.factworld.acceptance import load_world
from lit_edit.factworld.build import entity_spans, subject_pattern
from lit_edit.factworld.world import World
from lit_edit.io import atomic_write_text
from lit_edit.tasks.registry import get_task, read_task

COMPARISON_TASKS = ("closed_domain_qa", "nli", "dialogue")
SKILLS_NAME = "skills"                     # corpus/skills.jsonl, named in a fit config's data.init_args.train_files
RESERVED_NAMES = frozenset({"train", "heldout"})


def skill_records(world: World, tasks: tuple[str, ...], n_per_task: int, seed: int,
                  excluded_prompts: dict[str, set[str]] | None = None) -> list[dict]:
    """``n_per_task`` training examples of each task, shuffled: ``{"text", "entities", "answer": [start, end]}``.

    Args:
        tasks: mini tasks (``tasks.GENERATORS``) or direct variants (``tasks.DIRECT_VARIANTS``: the comparison with
            only the relevant statement in the passage, written in their task's format and prompt).
        excluded_prompts: per task, prompts that must not occur (the test set's); a generated example with one of
            them is replaced by a fresh one.

    Raises:
        ValueError: an unknown task, or the generator cannot produce enough examples that avoid the excluded ones.
    """
    generators = {**world_tasks.GENERATORS, **{name: gen for name, (_, gen) in world_tasks.DIRECT_VARIANTS.items()}}
    unknown = sorted(set(tasks) - set(generators))
    if unknown:
        raise ValueError(f"unknown mini task(s) {unknown}; choose from {sorted(generators)}")
    pattern = subject_pattern(world)
    records = []
    for offset, task in enumerate(tasks):
        rng = random.Random(seed * 1000 + offset)
        base = base_task(task)
        excluded = (excluded_prompts or {}).get(base, set())
        kept, attempts = 0, 0
        while kept < n_per_task:
            attempts += 1
            if attempts > 20 * n_per_task:
                raise ValueError(f"{task}: only {kept} of {n_per_task} generated examples avoid the test prompts")
            record = generators[task](world, rng, 1)[0]
            if get_task(base).prompt(record) in excluded:
                continue
            for text, start in world_tasks.training_examples(base, record):
                records.append({"text": text, "entities": entity_spans(text, pattern), "answer": [start, len(text)]})
            kept += 1
    random.Random(seed).shuffle(records)
    return records


def base_task(task: str) -> str:
    """The mini task whose format and prompt ``task`` uses (itself, or a direct variant's task)."""
    return world_tasks.DIRECT_VARIANTS[task][0] if task in world_tasks.DIRECT_VARIANTS else task


def prompts_of_test_sets(root: Path, tasks: tuple[str, ...]) -> dict[str, set[str]]:
    """The prompts of each task's test set in ``root/tasks`` (read with the real-format readers); a direct
    variant is checked against its task's test set."""
    return {task: {get_task(task).prompt(r) for r in read_task(root / "tasks", task)}
            for task in dict.fromkeys(base_task(t) for t in tasks)}


def build_skills(root: Path | str, tasks: tuple[str, ...] = COMPARISON_TASKS, n_per_task: int = 20000,
                 seed: int = 7, name: str = SKILLS_NAME) -> Path:
    """Write ``root/corpus/{name}.jsonl`` for the fact world in ``root`` (its ``world.json``).

    Raises:
        ValueError: ``name`` is one of the world's own corpus files (``train``, ``heldout``) or not a plain name.
    """
    if name in RESERVED_NAMES or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"skills file name {name!r}: choose a plain name (letters, digits, '_' or '-') other than "
                         f"{sorted(RESERVED_NAMES)}, the world's own corpus files")
    root = Path(root)
    if not (root / "world.json").is_file():
        raise FileNotFoundError(f"{root}/world.json does not exist: build the fact world there first "
                                f"(python -m lit_edit.tools build_world --out {root})")
    world = load_world(root)
    records = skill_records(world, tuple(tasks), n_per_task, seed, prompts_of_test_sets(root, tuple(tasks)))
    path = root / "corpus" / f"{name}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records))
    return path
