"""A seeded, deterministic world of people, cities and companies, and the facts that hold in it."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from lit_edit.factworld.schema import (
    CITIES,
    COMPANIES,
    NAME_CODAS,
    NAME_ONSETS,
    NAME_VOWELS,
    POOLS,
    RELATIONS,
)


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple."""

    subject: str
    relation: str
    object: str


@dataclass
class World:
    """All entities and facts of a generated world.

    Attributes:
        seed: the generator seed.
        people: person names (two words, several tokens each).
        facts: ``{(subject, relation): object}`` for every person relation, city and company.
    """

    seed: int
    people: list[str]
    facts: dict[tuple[str, str], str] = field(default_factory=dict)

    def object_of(self, subject: str, relation: str) -> str:
        return self.facts[(subject, relation)]

    def subjects_of_kind(self, kind: str) -> list[str]:
        return {"person": self.people, "city": CITIES, "company": COMPANIES}[kind]

    def all_facts(self) -> list[Fact]:
        return [Fact(s, r, o) for (s, r), o in self.facts.items()]

    def one_hop_answer(self, subject: str, first: str, second: str, first_object: str | None = None) -> str:
        """The answer of a one-hop question, optionally after replacing the first hop's object (an edit)."""
        middle = first_object if first_object is not None else self.object_of(subject, first)
        return self.object_of(middle, second)

    def to_dict(self) -> dict:
        return {"seed": self.seed, "people": self.people,
                "facts": [{"subject": s, "relation": r, "object": o} for (s, r), o in self.facts.items()]}


def _name_word(rng: random.Random, syllables: int) -> str:
    word = "".join(rng.choice(NAME_ONSETS) + rng.choice(NAME_VOWELS) for _ in range(syllables))
    return (word + rng.choice(NAME_CODAS)).capitalize()


def make_person_names(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct two-word names; first and last names recur across people, full names never do."""
    firsts = sorted({_name_word(rng, rng.choice([2, 2, 3])) for _ in range(max(8, n // 3))})
    lasts = sorted({_name_word(rng, rng.choice([2, 3])) for _ in range(max(8, n // 3))})
    taken = set(POOLS["cities"]) | set(POOLS["companies"]) | set(POOLS["countries"])
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{rng.choice(firsts)} {rng.choice(lasts)}"
        if name not in seen and name not in taken:
            seen.add(name)
            names.append(name)
    return names


def build_world(seed: int = 0, n_people: int = 200) -> World:
    """Generate a world: every person gets one object per person relation, every city a country, every
    company a head-office city. Deterministic in ``seed``."""
    if n_people < 4:
        raise ValueError(f"n_people must be at least 4, got {n_people}")
    rng = random.Random(seed)
    world = World(seed=seed, people=make_person_names(rng, n_people))
    for relation in RELATIONS:
        pool = POOLS[relation.pool]
        for subject in world.subjects_of_kind(relation.subject_kind):
            world.facts[(subject, relation.name)] = rng.choice(pool)
    return world
