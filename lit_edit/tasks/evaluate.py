"""Score a model on downstream records: every distinct (prompt, length) generated once, in length-sorted batches,
then each record scored in both modes."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.generation import Generation, generate_greedy
from lit_edit.tasks.registry import DownstreamTask


def generate_for_records(model, tokenizer, task: DownstreamTask, records: Sequence[dict], batch_size: int = 32
                         ) -> list[dict[str, Generation]]:
    """The generations of each record by query variant; queries shared by several records or variants run once."""
    queries = [task.queries(record) for record in records]
    by_length: dict[int, list[str]] = {}
    for record_queries in queries:
        for query in record_queries:
            by_length.setdefault(query.max_new_tokens, []).append(query.prompt)
    done: dict[tuple[str, int], Generation] = {}
    for length, prompts in by_length.items():
        unique = list(dict.fromkeys(prompts))
        for prompt, generation in zip(unique, generate_greedy(model, tokenizer, unique, length, batch_size)):
            done[(prompt, length)] = generation
    return [{q.variant: done[(q.prompt, q.max_new_tokens)] for q in record_queries} for record_queries in queries]


def score_records(model, tokenizer, task: DownstreamTask, records: Sequence[dict], after_edit: bool,
                  batch_size: int = 32) -> list[dict]:
    """Per-record counter increments (:meth:`DownstreamTask.score`), both modes from the same generations."""
    generations = generate_for_records(model, tokenizer, task, records, batch_size)
    return [task.score(record, generated, after_edit) for record, generated in zip(records, generations)]
