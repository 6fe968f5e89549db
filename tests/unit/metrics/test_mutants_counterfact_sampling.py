"""CounterFact's sampled generations at their edges, on bigram tables whose every step is all but certain: blank
lines, a sampled EOS, prompts as long as the generation, and scoring without the reference files."""

from __future__ import annotations

import torch

from lit_edit.editing.requests import EditRequest
from lit_edit.metrics import score_requests
from lit_edit.metrics.counterfact_generation import GENERATION_LENGTH, sample_generations
from lit_edit.models.loading import load_tokenizer
from tests.conftest import FACTWORLD
from tests.unit.metrics.test_counterfact_metrics import CycleModel, _cycle_model

IS, NEWLINE, A, CITY, EOS = 274, 200, 266, 557, 0     # " is", "\n", " a", " city", <|endoftext|>
PROMPT = "Paris is"                                    # [49, 294, 333, 274]


def table_model(tokenizer, steps: dict[int, int]) -> CycleModel:
    model = CycleModel(len(tokenizer))
    with torch.no_grad():
        for now, after in steps.items():
            model.table[now, after] = 60.0
    return model


def test_blank_lines_become_single_spaces():
    tokenizer = load_tokenizer(FACTWORLD / "tokenizer-gpt2")
    assert tokenizer(PROMPT)["input_ids"][-1] == IS and tokenizer.decode([NEWLINE]) == "\n"
    [text] = sample_generations(table_model(tokenizer, {IS: NEWLINE, NEWLINE: NEWLINE}), tokenizer, [PROMPT])
    assert text == PROMPT + " " * ((GENERATION_LENGTH - 4) // 2)


def test_a_sampled_eos_is_left_out_of_the_text():
    tokenizer = load_tokenizer(FACTWORLD / "tokenizer-gpt2")
    assert tokenizer.eos_token_id == EOS
    [text] = sample_generations(table_model(tokenizer, {IS: EOS, EOS: A, A: CITY, CITY: IS}), tokenizer, [PROMPT])
    assert text == PROMPT + " a city is" * ((GENERATION_LENGTH - 4) // 4)


def test_a_prompt_as_long_as_the_generation_gets_no_new_token():
    tokenizer = load_tokenizer(FACTWORLD / "tokenizer-gpt2")
    for length in (3, 4):      # the prompt is 4 tokens
        assert sample_generations(_cycle_model(tokenizer), tokenizer, [PROMPT], length=length) == [PROMPT]
    assert sample_generations(_cycle_model(tokenizer), tokenizer, [PROMPT], length=5) == [PROMPT + " a"]


def test_without_reference_files_fluency_is_scored_and_consistency_is_not(monkeypatch):
    tokenizer = load_tokenizer(FACTWORLD / "tokenizer-gpt2")
    monkeypatch.setattr("lit_edit.metrics.counterfact_generation._references", lambda folder: None)
    request = EditRequest("{} is in", "Paris", "France", "Italy", generation_prompts=(PROMPT,), relation="P17",
                          target_new_id="Q142", record_id="cf:0")
    [scores] = score_requests(_cycle_model(tokenizer), tokenizer, [request], ["probability", "counterfact"], None)
    assert scores["counterfact/fluency"] > 0 and scores["counterfact/consistency"] is None
