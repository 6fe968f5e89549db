"""What the fact-world mini tasks share: the people's relations, claims about them, statements around one, and
a record's training texts (prompt + gold continuation)."""

from __future__ import annotations

import random
from collections.abc import Iterable

from lit_edit.factworld.render import statement
from lit_edit.factworld.schema import POOLS, RELATIONS, Relation
from lit_edit.factworld.world import World

PERSON_RELATIONS = [r for r in RELATIONS if r.subject_kind == "person"]


def other(rng: random.Random, pool: list[str], value: str) -> str:
    """A value of ``pool`` other than ``value``."""
    return rng.choice([v for v in pool if v != value])


def claim(world: World, rng: random.Random) -> tuple[str, Relation, str, bool, str]:
    """A person, one of their relations, its true object, a fair coin, and the claimed object (the true one
    when the coin says so, another of the relation's pool otherwise)."""
    person = rng.choice(world.people)
    relation = rng.choice(PERSON_RELATIONS)
    truth = world.object_of(person, relation.name)
    answer = rng.random() < 0.5
    return person, relation, truth, answer, truth if answer else other(rng, POOLS[relation.pool], truth)


def ptb(text: str) -> str:
    """Lower-cased, PTB-style spacing as in SST-2 and MuTual (``it 's``, `` ,``)."""
    return text.lower().replace("'s", " 's").replace(",", " ,").replace(".", " .").replace("?", " ?")


def statements_around(world: World, rng: random.Random, person: str, relation: Relation, truth: str,
                      others: tuple[int, int]) -> str:
    """The true statement of ``relation`` among ``others[0]``–``others[1]`` true statements of the person's other
    relations (first wording each), at a random place; the statement alone when ``others`` is (0, 0)."""
    relevant = statement(relation.train_statements[0], person, truth)
    if not others[1]:
        return relevant
    pool = [r for r in PERSON_RELATIONS if r.name != relation.name]
    texts = [statement(r.train_statements[0], person, world.object_of(person, r.name))
             for r in rng.sample(pool, rng.randint(*others))]
    texts.insert(rng.randint(0, len(texts)), relevant)
    return " ".join(texts)


def answered(prompts: Iterable[str], gold: str) -> list[tuple[str, int]]:
    """Each prompt followed by a space and ``gold``, with the character offset where ``gold`` begins."""
    return [(prompt + " " + gold, len(prompt) + 1) for prompt in prompts]
