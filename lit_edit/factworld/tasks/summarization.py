"""SAMSum over the fact world: a three-line chat in which one person announces news, and its summary."""

from __future__ import annotations

import random

from lit_edit.factworld.schema import COMPANIES, INSTRUMENTS, LANGUAGES, PETS, POOLS
from lit_edit.factworld.tasks.common import answered
from lit_edit.factworld.world import World
from lit_edit.tasks import summarization as task


def generate(world: World, rng: random.Random, n: int) -> list[dict]:
    stories = [
        ("instrument", INSTRUMENTS, "I started playing the {x} last week.", "Cool, is it hard?", "A bit, but I love it.",
         "{a} has started playing the {x}."),
        ("residence_city", POOLS["cities"], "I am moving to {x} next month.", "Wow, why there?", "I found a flat there.",
         "{a} is moving to {x} next month."),
        ("employer", COMPANIES, "I got a new job at {x}!", "Congratulations!", "Thanks, I start on Monday.",
         "{a} got a new job at {x} and starts on Monday."),
        ("pet", PETS, "We adopted a {x} yesterday.", "How sweet! Send photos.", "I will tonight.",
         "{a} adopted a {x} yesterday and will send photos tonight."),
        ("native_language", LANGUAGES, "I am taking {x} lessons again.", "Good luck with that.", "Thanks, I need it.",
         "{a} is taking {x} lessons again."),
    ]
    records = []
    for i in range(n):
        a, b = rng.sample(world.people, 2)
        _, pool, line1, reply, line2, summary = rng.choice(stories)
        x = rng.choice(pool)
        first_b = b.split()[0]
        text = "\r\n".join([f"{a}: Hi {first_b}! {line1.format(x=x)}", f"{b}: {reply}", f"{a}: {line2}"])
        records.append({"id": str(100000 + i), "summary": summary.format(a=a, x=x), "dialogue": text})
    return records


def gold(record: dict) -> str:
    return record["summary"]


def training_examples(record: dict) -> list[tuple[str, int]]:
    return answered([task.prompt(record)], gold(record))
