"""BoolQ over the fact world: is a claim about a person true, given a short biography that states it."""

from __future__ import annotations

import random
from functools import partial

from lit_edit.factworld.render import biography, statement
from lit_edit.factworld.tasks.common import answered, claim, statements_around
from lit_edit.factworld.world import World
from lit_edit.tasks import closed_domain_qa as task


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        person, relation, truth, answer, obj = claim(world, rng)
        passage = biography(world, person, rng, 2) + " " + statement(relation.train_statements[0], person, truth)
        claimed = statement(relation.train_statements[0], person, obj)[:-1]
        records.append({"question": f"is it true that {claimed.lower()}", "title": person,
                        "answer": answer, "passage": passage})
    return records


def generate_direct(world: World, rng: random.Random, n: int, others: tuple[int, int] = (0, 0)) -> list[dict]:
    """Records whose passage is the statement the claim is about, in the claim's own wording, among ``others``
    statements of the person's other facts; a third of the questions keep the passage's casing. The comparison
    without the search (``others`` (0, 0)) or with a short one: a training warm-up (skills corpus), never a test
    set."""
    records = []
    for _ in range(n):
        person, relation, truth, answer, obj = claim(world, rng)
        claimed = statement(relation.train_statements[0], person, obj)[:-1]
        cased = rng.random() < 1 / 3
        records.append({"question": f"is it true that {claimed if cased else claimed.lower()}", "title": person,
                        "answer": answer, "passage": statements_around(world, rng, person, relation, truth, others)})
    return records


VARIANTS = {"closed_domain_qa_direct": generate_direct, "closed_domain_qa_search": partial(generate_direct, others=(1, 2))}
"""Easier training-only versions in this task's format and prompt (the skills corpus): the comparison without the
search, and with a short one."""


def gold(record: dict) -> str:
    return "yes" if record["answer"] else "no"


def training_examples(record: dict) -> list[tuple[str, int]]:
    return answered([task.prompt(record)], gold(record))
