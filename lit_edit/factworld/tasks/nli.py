"""RTE over the fact world: does a person's two-fact premise entail a restatement of one fact."""

from __future__ import annotations

import random
from functools import partial

from lit_edit.factworld.render import statement
from lit_edit.factworld.schema import POOLS
from lit_edit.factworld.tasks.common import PERSON_RELATIONS, answered, claim, other, statements_around
from lit_edit.factworld.world import World
from lit_edit.tasks import nli as task


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for i in range(n):
        person = rng.choice(world.people)
        relations = rng.sample(PERSON_RELATIONS, 2)
        premise = " ".join(statement(r.train_statements[0], person, world.object_of(person, r.name)) for r in relations)
        relation = rng.choice(relations)
        truth = world.object_of(person, relation.name)
        entailed = rng.random() < 0.5
        obj = truth if entailed else other(rng, POOLS[relation.pool], truth)
        records.append({"index": i, "sentence1": premise,
                        "sentence2": statement(relation.train_statements[1], person, obj),
                        "label": "entailment" if entailed else "not_entailment"})
    return records


def generate_direct(world: World, rng: random.Random, n: int, others: tuple[int, int] = (0, 0)) -> list[dict]:
    """Records whose premise is one statement (among ``others`` statements of the person's other facts) and whose
    hypothesis restates it (a third in the same wording) with the true or another object: the entailment without
    the search (``others`` (0, 0)) or with a short one, a training warm-up."""
    records = []
    for i in range(n):
        person, relation, truth, entailed, obj = claim(world, rng)
        wording = relation.train_statements[0 if rng.random() < 1 / 3 else 1]
        records.append({"index": i, "sentence1": statements_around(world, rng, person, relation, truth, others),
                        "sentence2": statement(wording, person, obj),
                        "label": "entailment" if entailed else "not_entailment"})
    return records


VARIANTS = {"nli_direct": generate_direct, "nli_search": partial(generate_direct, others=(1, 2))}
"""Easier training-only versions in this task's format and prompt (the skills corpus): the comparison without the
search, and with a short one."""


def gold(record: dict) -> str:
    return "True" if record["label"] == "entailment" else "False"


def training_examples(record: dict) -> list[tuple[str, int]]:
    return answered([task.prompt(record)], gold(record))
