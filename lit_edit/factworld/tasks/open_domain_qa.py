"""Natural Questions over the fact world: a question about a person, with a passage that answers it."""

from __future__ import annotations

import random

from lit_edit.factworld.render import biography, statement
from lit_edit.factworld.tasks.common import PERSON_RELATIONS, answered
from lit_edit.factworld.world import World
from lit_edit.tasks import open_domain_qa as task


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        person = rng.choice(world.people)
        relation = rng.choice(PERSON_RELATIONS)
        truth = world.object_of(person, relation.name)
        passage = biography(world, person, rng, 2) + " " + statement(rng.choice(relation.train_statements), person, truth)
        records.append({"question": relation.train_questions[0].format(person).lower(), "answer": [truth],
                        "output": ["\n\n" + passage]})
    return records


def gold(record: dict) -> str:
    return record["answer"][0]


def training_examples(record: dict) -> list[tuple[str, int]]:
    return answered([task.prompt(record)], gold(record))
