"""The batched greedy decoder against Hugging Face ``generate``, one prompt at a time, on every supported family;
the batches it plans by length and token budget."""

from __future__ import annotations

import random

import pytest
import torch

from lit_edit.factworld.tasks import GENERATORS
from lit_edit.generation import generate_greedy, plan_batches
from lit_edit.models import load_model_and_tokenizer
from lit_edit.tasks.registry import get_task
from lit_edit.tasks.suite import load_task_records
from tests.conftest import FACTWORLD, ROOT

PROMPTS = ["Anna lives in", "The favorite color of Bob Smith is", "Q: where", "a b c d e f g h i j k l m n o p",
           "The native language of Gimais Rebrazu is Korean and the pet of"]
MIXED = PROMPTS + ["Q: who", "Anna works in", "x", "Bob Smith and Anna Lee and Carl Diaz met in the town of",
                   "The favorite color of Anna Lee is", "Q: when", "a b c d e f g h"]


@torch.no_grad()
def one_at_a_time(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """``model.generate`` on ``prompt`` alone (no padding), greedy, cut after the first EOS."""
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    new = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, num_beams=1, pad_token_id=tokenizer.eos_token_id,
                         eos_token_id=tokenizer.eos_token_id)[0, ids.shape[1]:].tolist()
    return new[: new.index(tokenizer.eos_token_id) + 1] if tokenizer.eos_token_id in new else new


def test_batched_decoder_equals_generate_one_prompt_at_a_time(tiny_model_dir):
    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    batched = generate_greedy(model, tokenizer, PROMPTS, max_new_tokens=8, batch_size=3)
    for prompt, generation in zip(PROMPTS, batched):
        assert generation.new_ids == one_at_a_time(model, tokenizer, prompt, 8), (family, prompt)
        assert generation.prompt_ids == tokenizer(prompt)["input_ids"]


@pytest.mark.parametrize("max_new_tokens", [1, 6])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_every_batch_plan_gives_the_one_at_a_time_tokens(tiny_model_dir, max_new_tokens):
    """Mixed lengths under budgets from one prompt per batch to all in one, with the tokenizer padding on either
    side: the batch a prompt lands in (its padding, its neighbours) never changes its tokens."""
    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    expected = [one_at_a_time(model, tokenizer, p, max_new_tokens) for p in MIXED]
    for side in ("left", "right"):
        tokenizer.padding_side = side
        for budget in (1, 40, 120, 10**6):
            got = [g.new_ids for g in generate_greedy(model, tokenizer, MIXED, max_new_tokens, None,
                                                      token_budget=budget)]
            assert got == expected, (family, side, budget)


@pytest.mark.parametrize("task", list(GENERATORS))   # every registered task with a fact-world version
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_fact_world_tasks_generate_as_one_prompt_at_a_time(task):
    """The shipped model on its mini tasks: every query's tokens under the default plan and under one that mixes
    all lengths in a batch equal ``generate`` on the prompt alone."""
    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints/factworld-gpt2"))
    records = [r for _, r in load_task_records(FACTWORLD / "tasks", task, 24, seed=1)]
    queries = list({(q.prompt, q.max_new_tokens): q for r in records for q in get_task(task).queries(r)}.values())
    expected = [one_at_a_time(model, tokenizer, q.prompt, q.max_new_tokens) for q in queries]
    for length in {q.max_new_tokens for q in queries}:
        chosen = [i for i, q in enumerate(queries) if q.max_new_tokens == length]
        prompts = [queries[i].prompt for i in chosen]
        for budget in (None, 10**6):
            got = generate_greedy(model, tokenizer, prompts, length, None, token_budget=budget)
            assert [g.new_ids for g in got] == [expected[i] for i in chosen], (task, budget)


def allowed(members: list[int], lengths: list[int], new: int, budget: int, rows: int | None, padding: float) -> bool:
    """Whether ``members`` may form one batch: tokens, rows and padding within their limits, counted directly."""
    width = max(lengths[i] for i in members)
    waste = sum(width - lengths[i] for i in members)
    return (len(members) * (width + new) <= budget and (rows is None or len(members) <= rows)
            and waste <= padding * len(members) * width)


def test_batch_plan_respects_budget_padding_and_rows():
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 60) for _ in range(rng.randint(1, 40))]
        limits = (rng.choice([1, 5, 20]), rng.choice([10, 100, 400, 10**6]), rng.choice([None, 1, 7]),
                  rng.choice([0.0, 0.125, 1.0]))
        batches = plan_batches(lengths, *limits)
        flat = [i for batch in batches for i in batch]
        assert flat == sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        for batch, following in zip(batches, batches[1:] + [None]):
            assert len(batch) == 1 or allowed(batch, lengths, *limits)
            assert following is None or not allowed(batch + following[:1], lengths, *limits)   # ends when it must

def test_decoding_passes_the_cache_without_deprecated_names(tiny_model_dir):
    """The KV cache goes in as a ``DynamicCache`` under the name the model's forward declares: no deprecation
    warning from transformers on any family."""
    import warnings

    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        generate_greedy(model, tokenizer, PROMPTS[:2], max_new_tokens=3)
