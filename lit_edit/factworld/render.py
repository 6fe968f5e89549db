"""Turning facts into text: statements, questions, biographies and the pretraining corpus."""

from __future__ import annotations

import random

from lit_edit.factworld.schema import ONE_HOP, RELATION_BY_NAME, RELATIONS
from lit_edit.factworld.world import World


def statement(template: str, subject: str, obj: str) -> str:
    """``"{} was born in"`` + subject + object -> ``"Alda Venkor was born in Torvale."``"""
    return f"{template.format(subject)} {obj}."


def question(template: str, subject: str, answer: str) -> str:
    """A ZsRE-style question followed by its answer after one space."""
    return f"{template.format(subject)} {answer}"


def fact_lines(world: World) -> list[str]:
    """Every fact in every *training* statement and question template, plus the one-hop questions."""
    lines = []
    for (subject, relation_name), obj in world.facts.items():
        relation = RELATION_BY_NAME[relation_name]
        lines += [statement(t, subject, obj) for t in relation.train_statements]
        lines += [question(t, subject, obj) for t in relation.train_questions]
    for person in world.people:
        for first, second, template in ONE_HOP:
            lines.append(question(template, person, world.one_hop_answer(person, first, second)))
    return lines


def biography(world: World, person: str, rng: random.Random, n_facts: int) -> str:
    """A short paragraph of ``n_facts`` random facts about ``person`` in training wordings."""
    relations = rng.sample([r for r in RELATIONS if r.subject_kind == "person"], n_facts)
    return " ".join(statement(rng.choice(r.train_statements), person, world.object_of(person, r.name))
                    for r in relations)


def biographies(world: World, rng: random.Random, per_person: int, n_facts: tuple[int, int] = (3, 6)) -> list[str]:
    return [biography(world, person, rng, rng.randint(*n_facts))
            for person in world.people for _ in range(per_person)]
