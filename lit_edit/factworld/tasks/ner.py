"""CoNLL-2003 over the fact world: sentences naming people, their cities, employers and languages, IOB2-tagged."""

from __future__ import annotations

import random

from lit_edit.factworld.tasks.common import answered
from lit_edit.factworld.world import World
from lit_edit.tasks import ner as task


def _tag_name(words: list[str], kind: str) -> list[tuple[str, str]]:
    return [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(words)]


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    sentences = []
    for _ in range(n):
        person, other = rng.sample(world.people, 2)
        city = world.object_of(person, "birth_city")
        company = world.object_of(person, "employer")
        language = world.object_of(person, "native_language")
        frame = rng.randrange(5)
        per, other_per = _tag_name(person.split(), "PER"), _tag_name(other.split(), "PER")
        loc, org = _tag_name(city.split(), "LOC"), _tag_name(company.split(), "ORG")
        misc = [(language, "B-MISC")]

        def outside(*words: str) -> list[tuple[str, str]]:
            return [(w, "O") for w in words]

        tagged = [
            per + outside(",", "who", "was", "born", "in") + loc + outside(",", "works", "for") + org + outside("."),
            per + outside("met") + other_per + outside("in") + loc + outside("."),
            org + outside("hired") + per + outside("last", "year", "."),
            per + outside("speaks") + misc + outside("with") + other_per + outside("."),
            outside("the", "weather", "in") + loc + outside("was", "mild", "."),
        ][frame]
        tokens = [w for w, _ in tagged]
        tags = [t for _, t in tagged]
        pos = ["NNP" if t != "O" else ("," if w == "," else "." if w == "." else "NN") for w, t in tagged]
        chunks = ["B-NP" if t.startswith("B-") else "I-NP" if t.startswith("I-") else "O" for t in tags]
        sentences.append({"tokens": tokens, "pos": pos, "chunks": chunks, "tags": tags})
    return sentences


def training_examples(record: dict) -> list[tuple[str, int]]:
    """One text per entity type: its prompt answered with the type's entities (``none`` when there are none)."""
    return [example for kind in task.NER_TYPES
            for example in answered([task.prompt(record, kind)],
                                    ", ".join(task.entities(record["tokens"], record["tags"], kind)) or "none")]
