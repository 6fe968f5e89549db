"""MuTual over the fact world: the reply (A-D) that agrees with what was just said about a person."""

from __future__ import annotations

import random

from lit_edit.factworld.render import statement
from lit_edit.factworld.schema import POOLS
from lit_edit.factworld.tasks.common import PERSON_RELATIONS, answered, ptb
from lit_edit.factworld.world import World
from lit_edit.tasks import dialogue as task


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for i in range(n):
        person = rng.choice(world.people)
        relation = rng.choice(PERSON_RELATIONS)
        truth = world.object_of(person, relation.name)
        question = relation.train_questions[0].format(person)
        article = ptb(f"m : {question} f : {statement(relation.train_statements[0], person, truth)}")
        wrong = rng.sample([v for v in POOLS[relation.pool] if v != truth], 3)
        options = [ptb(f"m : so {statement(relation.train_statements[0], person, v)}") for v in [truth, *wrong]]
        order = list(range(4))
        rng.shuffle(order)
        records.append({"answers": "ABCD"[order.index(0)], "options": [options[j] for j in order],
                        "article": article, "id": f"dev_{i + 1}"})
    return records


def gold(record: dict) -> str:
    return record["answers"]


def training_examples(record: dict) -> list[tuple[str, int]]:
    return answered([task.prompt(record)], gold(record))
