"""SST-2 over the fact world: a one-line review of something a person did, with a clearly positive or negative
adjective."""

from __future__ import annotations

import random

from lit_edit.factworld.tasks.common import answered
from lit_edit.factworld.world import World
from lit_edit.tasks import sentiment as task

POSITIVE = ["wonderful", "charming", "delightful", "brilliant", "moving", "lovely", "superb", "joyful"]
NEGATIVE = ["dull", "awful", "tedious", "clumsy", "bleak", "boring", "painful", "dreadful"]


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    frames = ["the {instrument} concert by {person} was {adj} .", "{person} 's {food} tasted {adj} .",
              "a {adj} evening with {person} and a {pet} .", "{person} gave a {adj} talk about {language} poetry ."]
    records = []
    for _ in range(n):
        person = rng.choice(world.people)
        label = rng.random() < 0.5
        text = rng.choice(frames).format(
            person=person, adj=rng.choice(POSITIVE if label else NEGATIVE),
            instrument=world.object_of(person, "instrument"), food=world.object_of(person, "favorite_food"),
            pet=world.object_of(person, "pet"), language=world.object_of(person, "native_language"))
        records.append({"sentence": text.lower() + " ", "label": int(label)})
    return records


def gold(record: dict) -> str:
    return "positive" if int(record["label"]) else "negative"


def training_examples(record: dict) -> list[tuple[str, int]]:
    return answered([task.prompt(record)], gold(record))
