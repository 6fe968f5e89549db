"""How many positions a model reads, and the inputs that need more: checked before the first edit.

A model with learned position embeddings (GPT-2, GPT-J's context) fails on a longer sequence with a bare
``IndexError`` from its embedding, naming nothing. So before any work an editing run measures every sequence it
will put through the model, exactly as the scorers build it (``lit_edit.scoring.encode_pairs`` for prompt +
answer; the prompt plus all but the last generated token for greedy generation, ``lit_edit.generation``):

- edit requests that do not fit are refused, naming the file, the record, the field, its length and the limit
  (an editor's context templates count against the limit: ``Editor.prompt_prefix_tokens``);
- downstream examples that do not fit are left out and counted per task (``DownstreamSuite.drop_too_long``), or
  refused with ``downstream.strict_length``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from transformers.utils import logging as transformers_logging

from lit_edit.errors import UserError
from lit_edit.scoring import encode_pairs

if TYPE_CHECKING:  # annotations only: the lengths are measured below the editing and task layers that use them
    from lit_edit.editing.requests import EditRequest
    from lit_edit.tasks.base import DownstreamTask

CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "n_ctx", "seq_length")
EDIT_PROMPT = "prompt + target_new"
"""The sequence the edit itself reads, after the editor's context template."""


class InputTooLongError(UserError, ValueError):
    """An input needs more positions than the model has."""


def context_length(model) -> int | None:
    """The positions the model was built for (its config's ``max_position_embeddings`` or the older names);
    None when its config names none."""
    for name in CONTEXT_FIELDS:
        value = getattr(model.config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@contextmanager
def measuring() -> Iterator[None]:
    """Silence transformers' warning that a sequence is longer than the model's maximum while lengths are measured
    (measuring them is the point; the warning would say they will cause indexing errors)."""
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)


def _prompt_tokens(tokenizer, prompt: str) -> int:
    return len(tokenizer(prompt)["input_ids"])


def _pair_tokens(tokenizer, prompt: str, answer: str) -> int:
    return len(encode_pairs(tokenizer, [prompt], [answer])[0].ids)


def request_lengths(tokenizer, request: EditRequest, families: Sequence[str], max_new_tokens: int
                    ) -> Iterator[tuple[str, int]]:
    """``(field, positions)`` of every sequence the edit metrics put through the model for ``request``
    (``lit_edit.metrics.edit``): each prompt with its answers, and with ``generation`` the prompt plus the new
    tokens. The edit itself reads the edit prompt with ``target_new`` (plus the editor's prefix)."""
    generation = "generation" in families
    probability = "probability" in families
    targets = [("target_new", request.target_new)]
    if probability and request.target_true is not None:
        targets.append(("target_true", request.target_true))
    prompts = [("prompt", request.text)]
    prompts += [(f"rephrase_prompts[{i}]", p) for i, p in enumerate(request.rephrase_prompts)]
    for field, prompt in prompts:
        for target_field, target in targets:
            yield f"{field} + {target_field}", _pair_tokens(tokenizer, prompt, target)   # the first: EDIT_PROMPT
        if generation:
            yield f"{field} + {max_new_tokens} generated tokens", _prompt_tokens(tokenizer, prompt) + max_new_tokens - 1
    for name, probes in (("locality", request.locality), ("portability", request.portability)):
        for i, probe in enumerate(probes):
            yield f"{name}[{i}] prompt + answer", _pair_tokens(tokenizer, probe.prompt, probe.answer)
            if name == "locality" and probability:
                yield f"{name}[{i}] prompt + target_new", _pair_tokens(tokenizer, probe.prompt, request.target_new)
            if generation:
                yield (f"{name}[{i}] prompt + {max_new_tokens} generated tokens",
                       _prompt_tokens(tokenizer, probe.prompt) + max_new_tokens - 1)


def check_request_lengths(tokenizer, requests: Sequence[EditRequest], where: Callable[[str], str], limit: int,
                          prefix: int = 0, families: Sequence[str] = ("token",), max_new_tokens: int = 32,
                          method: str = "the editor") -> None:
    """Refuse the first request with a sequence longer than ``limit`` positions (``prefix`` of them taken by the
    editor's context templates before the edit prompt). ``where`` names a record's place (``file[index]``)."""
    with measuring():
        too_long = next(((request, field, length) for request in requests
                         for field, length in request_lengths(tokenizer, request, families, max_new_tokens)
                         if length > (limit - prefix if field == EDIT_PROMPT else limit)), None)
    if too_long is not None:
        request, field, length = too_long
        room = limit - prefix if field == EDIT_PROMPT else limit
        kept = f" ({prefix} of its {limit} kept for {method}'s context templates)" if room < limit else ""
        raise InputTooLongError(f"{where(request.record_id)}: record {request.record_id} field {field!r} is {length} "
                                f"tokens long, past the model's limit of {room} positions{kept}; shorten the record or "
                                "leave it out of the selection (data.init_args.start/stop/n)")


def example_length(tokenizer, task: DownstreamTask, record: dict, choice_loglik: bool) -> int:
    """The most positions one downstream example needs: each query's prompt plus its new tokens, and with
    ``choice_loglik`` the prompt with each answer option."""
    needs = [_prompt_tokens(tokenizer, q.prompt) + q.max_new_tokens - 1 for q in task.queries(record)]
    options = task.options(record) if choice_loglik else None
    if options:
        needs += [_pair_tokens(tokenizer, options[0], option) for option in options[1]]
    return max(needs, default=0)
