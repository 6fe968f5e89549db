"""Fact-world edit sets that vary in diversity at a fixed length, and in length at a fixed diversity.

A *level* fixes how many person relations a set spans and how many requests share a subject. Request ``j``
(counting from 0) of a level's sequence edits relation ``relations[j % n_relations]`` of subject
``subjects[j // requests_per_subject]``, where both lists are shuffled by the seed; a set of length ``n`` is the
first ``n`` requests, so a longer set of a level extends every shorter one (records included). A level's sequence
ends where it would edit more than half the world's person facts (the bound :func:`edits.zsre_records` keeps);
locality questions ask about the person facts the whole sequence leaves untouched, so they never ask about a fact
any set of the level edits. The records are those of ``zsre_factworld.json`` (:func:`edits.zsre_record`).
docs/factworld.md, "Edit sets of varying diversity and length", lists the levels and the command.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lit_edit.errors import UserError
from lit_edit.factworld.edits import zsre_records_for
from lit_edit.factworld.schema import RELATIONS
from lit_edit.factworld.world import World
from lit_edit.io import atomic_write_text

PERSON_RELATIONS = tuple(r.name for r in RELATIONS if r.subject_kind == "person")
DEFAULT_LENGTHS = (10, 20, 50, 100, 200)
INDEX_COLUMNS = ("file", "level", "length", "seed", "relations", "subjects", "mean_requests_per_subject",
                 "max_requests_per_subject", "requests_sharing_a_subject")


class EditSetError(UserError, ValueError):
    """An option of ``build_edit_sets`` the world cannot satisfy (the message names the option and the fix)."""


@dataclass(frozen=True)
class Level:
    """One diversity level.

    Attributes:
        name: the level's name (the start of its files' names).
        n_relations: person relations the level cycles through (all of them: ``None``).
        requests_per_subject: consecutive requests about one subject, each about another relation.
        summary: what the level's sets look like, in words.
    """

    name: str
    n_relations: int | None
    requests_per_subject: int
    summary: str

    def relation_count(self) -> int:
        return self.n_relations or len(PERSON_RELATIONS)

    def max_length(self, n_people: int) -> int:
        """The longest set of this level in a world of ``n_people``: one subject per ``requests_per_subject``
        requests, and at most half of the ``n_people * relations`` person facts."""
        return min(n_people * self.requests_per_subject, n_people * len(PERSON_RELATIONS) // 2)


LEVELS: dict[str, Level] = {level.name: level for level in (
    Level("one_relation", 1, 1, "one relation, every request about another subject"),
    Level("all_relations", None, 1, "every relation in turn, every request about another subject"),
    Level("subject_pairs", None, 2, "every relation in turn, two requests per subject"),
    Level("shared_subjects", None, len(PERSON_RELATIONS),
          "every relation of each subject: few subjects, one request per relation each"),
)}


def check_levels(levels: list[str]) -> list[Level]:
    unknown = [name for name in levels if name not in LEVELS]
    if unknown or not levels:
        raise EditSetError(f"--levels {unknown or levels}: {'unknown level' if unknown else 'no level given'}; "
                           f"choose among {list(LEVELS)}")
    return [LEVELS[name] for name in levels]


def check_lengths(lengths: list[int], levels: list[Level], n_people: int) -> list[int]:
    if not lengths or any(n < 1 for n in lengths):
        raise EditSetError(f"--lengths {lengths}: give one or more lengths of at least 1")
    for level in levels:
        longest = level.max_length(n_people)
        if max(lengths) > longest:
            raise EditSetError(f"--lengths: {max(lengths)} requests do not fit level {level.name} in this world "
                               f"({n_people} people; at most {longest}); ask for at most {longest} or leave the "
                               "level out of --levels")
    return sorted(set(lengths))


def level_sequence(world: World, level: Level, rng: random.Random
                   ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The ``(subject, relation)`` requests of the level's longest set, in order (subjects and relations shuffled
    by ``rng``), and the person facts it leaves untouched (the locality facts)."""
    subjects, relations = list(world.people), list(PERSON_RELATIONS)
    rng.shuffle(subjects)
    rng.shuffle(relations)
    relations = relations[:level.relation_count()]
    length = level.max_length(len(world.people))
    edited = [(subjects[j // level.requests_per_subject], relations[j % len(relations)]) for j in range(length)]
    chosen = set(edited)
    untouched = [(s, r) for s in world.people for r in PERSON_RELATIONS if (s, r) not in chosen]
    return edited, untouched


def level_records(world: World, level: Level, length: int, seed: int) -> list[dict]:
    """The first ``length`` ZsRE records of the level (a prefix of its longest set); one generator, seeded by
    ``seed`` and the level's name, picks the subjects, the relations, the new objects and the locality facts."""
    rng = random.Random(f"{seed}/{level.name}")
    edited, untouched = level_sequence(world, level, rng)
    return zsre_records_for(world, rng, edited[:length], untouched)


def diversity(records: list[dict]) -> dict:
    """What an edit set spans, counted from its records: relations, subjects, requests per subject."""
    per_subject = Counter(r["subject"] for r in records)
    return {"relations": len({r["relation"] for r in records}), "subjects": len(per_subject),
            "mean_requests_per_subject": round(len(records) / len(per_subject), 3),
            "max_requests_per_subject": max(per_subject.values()),
            "requests_sharing_a_subject": len(records) - len(per_subject)}


def set_file_name(level: Level, length: int) -> str:
    return f"{level.name}-{length:04d}.json"


def level_and_length(file_stem: str) -> tuple[str, int] | None:
    """The (level, length) a set's file stem names (:func:`set_file_name` read back: ``one_relation-0050`` →
    ``("one_relation", 50)``); ``None`` for any other file."""
    level, _, digits = str(file_stem).rpartition("-")
    if level not in LEVELS or len(digits) != 4 or not digits.isdigit():
        return None
    return level, int(digits)


def build_edit_sets(world: World, out: Path | str, levels: list[str], lengths: list[int], seed: int = 0) -> list[dict]:
    """Write one ZsRE file per (level, length) into ``out`` and ``index.json`` / ``index.csv`` describing each;
    return the index rows. Options are checked before anything is written."""
    chosen = check_levels(levels)
    lengths = check_lengths(lengths, chosen, len(world.people))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for level in chosen:
        longest = level_records(world, level, max(lengths), seed)
        for length in lengths:
            records = longest[:length]
            name = set_file_name(level, length)
            atomic_write_text(out / name, json.dumps(records, indent=1))
            rows.append({"file": name, "level": level.name, "length": length, "seed": seed, **diversity(records)})
    index = {"levels": {level.name: {"relations": level.relation_count(),
                                     "requests_per_subject": level.requests_per_subject,
                                     "summary": level.summary} for level in chosen},
             "sets": rows}
    atomic_write_text(out / "index.json", json.dumps(index, indent=1))
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "index.csv", table.getvalue())
    return rows
