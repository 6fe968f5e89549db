"""Score a model on downstream records: every distinct (prompt, length, stop) generated once, in length-sorted
batches, optionally the answer options' log-likelihoods, then each record scored in every mode."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.generation import Generation, generate_greedy
from lit_edit.scoring import score_answers
from lit_edit.tasks.base import DownstreamTask


def generate_for_records(model, tokenizer, task: DownstreamTask, records: Sequence[dict], batch_size: int = 32,
                         token_budget: int | None = None) -> list[dict[str, Generation]]:
    """The generations of each record by query variant; queries shared by several records or variants run once,
    in batches of at most ``batch_size`` prompts and ``token_budget`` tokens (:func:`generate_greedy`)."""
    queries = [task.queries(record) for record in records]
    groups: dict[tuple[int, str | None], list[str]] = {}
    for record_queries in queries:
        for query in record_queries:
            groups.setdefault((query.max_new_tokens, query.stop), []).append(query.prompt)
    done: dict[tuple[str, int, str | None], Generation] = {}
    for (length, stop), prompts in groups.items():
        unique = list(dict.fromkeys(prompts))
        generated = generate_greedy(model, tokenizer, unique, length, batch_size, stop, token_budget)
        for prompt, generation in zip(unique, generated):
            done[(prompt, length, stop)] = generation
    return [{q.variant: done[(q.prompt, q.max_new_tokens, q.stop)] for q in record_queries}
            for record_queries in queries]


def option_nlls(model, tokenizer, task: DownstreamTask, records: Sequence[dict], batch_size: int = 32
                ) -> list[list[float] | None]:
    """Summed NLL of each answer option after its prompt (:meth:`DownstreamTask.options`), None for tasks
    without a fixed answer set."""
    options = [task.options(record) for record in records]
    prompts = [prompt for option in options if option for prompt in [option[0]] * len(option[1])]
    answers = [text for option in options if option for text in option[1]]
    scores = iter(score_answers(model, tokenizer, prompts, answers, batch_size) if prompts else [])
    result = []
    for option in options:
        if option is None:
            result.append(None)
            continue
        result.append([s.mean_nll * len(s.answer) for s in (next(scores) for _ in option[1])])
    return result


def score_records(model, tokenizer, task: DownstreamTask, records: Sequence[dict], after_edit: bool,
                  batch_size: int = 32, choice_loglik: bool = False, token_budget: int | None = None
                  ) -> list[dict]:
    """Per-record counter increments (:meth:`DownstreamTask.score`), every mode from the same generations;
    ``choice_loglik`` adds the ``loglik`` mode to tasks with a fixed answer set."""
    generations = generate_for_records(model, tokenizer, task, records, batch_size, token_budget)
    nlls = option_nlls(model, tokenizer, task, records, batch_size) if choice_loglik else [None] * len(records)
    return [task.score(record, generated, after_edit, option_nll=nll)
            for record, generated, nll in zip(records, generations, nlls)]
