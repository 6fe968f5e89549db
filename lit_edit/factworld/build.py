"""Write a whole fact world to disk: the world, its pretraining corpus, edit sets, mini tasks, tokenizers.

Layout of the output folder (``data/factworld`` by default)::

    world.json                       entities and facts, with the generator settings
    corpus/train.jsonl               {"text": ..., "entities": [[start, end], ...]} one training document per
                                     line, with the character spans of the fact subjects it names
    corpus/heldout.jsonl             held-out world text (new combinations of facts) for perplexity
    zsre/zsre_factworld.json         ZsRE-style edits (EasyEdit format, with portability)
    counterfact/counterfact_factworld.json   CounterFact-style edits
    tasks/test-*                     the 8 mini downstream test sets, in the real files' formats
    tasks-train/test-*               their training splits (same formats; learnt in pretraining)
    tokenizer-gpt2/, tokenizer-llama/        byte-level BPE tokenizers (the second adds <s>)
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer

from lit_edit.factworld import tasks as world_tasks
from lit_edit.factworld.edits import counterfact_records, zsre_records
from lit_edit.factworld.render import biographies, fact_lines
from lit_edit.factworld.tokenizer import train_tokenizer, wrap_tokenizer
from lit_edit.factworld.world import build_world
from lit_edit.io import atomic_write_text
from lit_edit.tasks.registry import write_task


@dataclass
class WorldSettings:
    """Everything that determines a generated fact world.

    Attributes:
        seed: master seed; every part derives its own generator from it.
        n_people: number of people (each has one object per person relation).
        n_edits: records in each edit set.
        n_task_train: training examples per downstream task family.
        n_task_test: test examples per downstream task family.
        bios_per_person: biography paragraphs per person in the corpus.
        vocab_size: BPE vocabulary size.
        model_max_length: the tokenizer's maximum sequence length.
    """

    seed: int = 0
    n_people: int = 200
    n_edits: int = 1000
    n_task_train: int = 600
    n_task_test: int = 200
    bios_per_person: int = 3
    vocab_size: int = 4096
    model_max_length: int = 256


def subject_pattern(world) -> re.Pattern:
    """A regular expression matching every fact subject of ``world`` as a whole word (longest first)."""
    names = sorted({subject for subject, _ in world.facts}, key=lambda name: (-len(name), name))
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, names)) + r")(?!\w)")


def entity_spans(text: str, pattern: re.Pattern) -> list[list[int]]:
    """Character spans ``[start, end)`` of the fact subjects named in ``text``."""
    return [[match.start(), match.end()] for match in pattern.finditer(text)]


def build(out: Path | str, settings: WorldSettings | None = None) -> Path:
    """Generate the fact world described by ``settings`` into ``out``; deterministic in the settings."""
    settings = settings or WorldSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    world = build_world(settings.seed, settings.n_people)
    atomic_write_text(out / "world.json", json.dumps({"settings": asdict(settings), **world.to_dict()}, indent=1))

    corpus = fact_lines(world) + biographies(world, random.Random(settings.seed + 1), settings.bios_per_person)
    for offset, (task, generate) in enumerate(sorted(world_tasks.GENERATORS.items())):
        rng = random.Random(settings.seed * 1000 + 100 + offset)
        train = generate(world, rng, settings.n_task_train)
        test = generate(world, rng, settings.n_task_test)
        for split, records in (("tasks-train", train), ("tasks", test)):
            (out / split).mkdir(exist_ok=True)
            write_task(out / split, task, records)
        corpus += [text for record in train for text in world_tasks.training_texts(task, record)]
    random.Random(settings.seed + 2).shuffle(corpus)
    heldout = biographies(world, random.Random(settings.seed + 3), 1)

    (out / "corpus").mkdir(exist_ok=True)
    subjects = subject_pattern(world)
    for name, texts in (("train", corpus), ("heldout", heldout)):
        atomic_write_text(out / "corpus" / f"{name}.jsonl",
                          "".join(json.dumps({"text": t, "entities": entity_spans(t, subjects)}) + "\n" for t in texts))

    (out / "zsre").mkdir(exist_ok=True)
    atomic_write_text(out / "zsre" / "zsre_factworld.json",
                      json.dumps(zsre_records(world, settings.n_edits, settings.seed + 4), indent=1))
    (out / "counterfact").mkdir(exist_ok=True)
    atomic_write_text(out / "counterfact" / "counterfact_factworld.json",
                      json.dumps(counterfact_records(world, settings.n_edits, settings.seed + 5), indent=1))

    tokenizer = train_tokenizer(corpus, settings.vocab_size, model_max_length=settings.model_max_length)
    tokenizer.save_pretrained(out / "tokenizer-gpt2")
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    wrap_tokenizer(backend, add_bos=True, model_max_length=settings.model_max_length).save_pretrained(
        out / "tokenizer-llama")
    return out
