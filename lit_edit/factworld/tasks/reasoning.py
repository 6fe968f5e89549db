"""GSM8K over the fact world: one-step additions and multiplications of a person's items."""

from __future__ import annotations

import random

from lit_edit.factworld.tasks.common import answered
from lit_edit.factworld.world import World
from lit_edit.tasks import reasoning as task

ITEMS = ["apples", "books", "coins", "stamps", "pencils", "shells", "cards", "marbles"]


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    records = []
    for _ in range(n):
        person = rng.choice(world.people)
        item = rng.choice(ITEMS)
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        if rng.random() < 0.5:
            q = f"{person} has {a} {item}. {person} buys {b} more {item}. How many {item} does {person} have now?"
            c, expr = a + b, f"{a}+{b}"
            sol = f"{person} has {a} + {b} = <<{expr}={c}>>{c} {item} now."
        else:
            q = f"{person} has {a} bags with {b} {item} in each bag. How many {item} does {person} have?"
            c, expr = a * b, f"{a}*{b}"
            sol = f"{person} has {a} * {b} = <<{expr}={c}>>{c} {item}."
        records.append({"question": q, "answer": f"{sol}\n#### {c}"})
    return records


def gold(record: dict) -> str:
    return record["answer"].split("#### ")[1]


def training_examples(record: dict) -> list[tuple[str, int]]:
    """The hinted prompt (the reference's) and the un-hinted one (the corrected form), both answered."""
    return answered([task.prompt(record), task.prompt(record, hinted=False)], gold(record))
