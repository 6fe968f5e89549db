"""The shipped fact-world model knows its world (the acceptance criteria of the offline default)."""

import random

import pytest

from lit_edit.factworld import tasks as world_tasks
from lit_edit.factworld.acceptance import load_world, recall_accuracy, score_task
from lit_edit.factworld.edits import fact_questions
from lit_edit.models import load_model_and_tokenizer
from lit_edit.tasks import registry
from tests.conftest import FACTWORLD, ROOT

MODEL = ROOT / "checkpoints" / "factworld-gpt2"
TWIN = ROOT / "checkpoints" / "factworld-llama"


@pytest.fixture(scope="module")
def shipped():
    return load_model_and_tokenizer(str(MODEL))


@pytest.mark.parametrize("folder", [MODEL, TWIN], ids=["gpt2", "llama"])
def test_shipped_models_are_small_and_complete(folder):
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= files
    assert sum(p.stat().st_size for p in folder.iterdir()) < 25 * 2**20


@pytest.mark.parametrize("folder,model_type", [(MODEL, "gpt2"), (TWIN, "llama")], ids=["gpt2", "llama"])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_fact_recall_on_training_templates(folder, model_type):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    assert model.config.model_type == model_type
    assert recall_accuracy(model, tokenizer, fact_questions(load_world(FACTWORLD), heldout=False)) >= 0.95


MINI_TASKS = list(world_tasks.GENERATORS)
ACCURACY_TASKS = {"sentiment", "reasoning", "closed_domain_qa", "nli", "dialogue"}


@pytest.mark.parametrize("task", MINI_TASKS)
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_mini_tasks_clearly_beat_chance(shipped, task):
    """An accuracy task beats its majority class with a one-sided binomial p-value below 1e-3 on all 200 test
    examples (reasoning: with and without the solution in the prompt); the others, whose chance is a shuffled
    reference, by 0.2 on a sample."""
    model, tokenizer = shipped
    records = registry.read_task(FACTWORLD / "tasks", task)
    short_answers = registry.get_task(task).max_new_tokens <= 5      # cheap to score on more examples
    sample = records if task in ACCURACY_TASKS or short_answers else records[:60]
    result = score_task(model, tokenizer, task, sample, random.Random(0))
    if task in ACCURACY_TASKS:
        assert result["n"] == 200 and result["p_value"] < 1e-3, result
        if task == "reasoning":
            assert result["p_value_unhinted"] < 1e-3, result
    else:
        assert result["score"] >= result["chance"] + 0.2, result


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_subject_patching_probe_moves_answers_when_it_patches_where_the_fact_is_read(shipped, monkeypatch):
    """The acceptance probe's machinery: patched at the *last prompt token* of the last layer, A's next-token
    distribution is B's, so the rate there is B's recall (1.0). At the subject's last token the shipped model,
    trained with subject routing, carries the fact in the early layers and no longer after them
    (docs/factworld.md): that is what lets ROME and MEMIT edit it at layers 0-1."""
    from lit_edit.factworld import acceptance

    model, tokenizer = shipped
    world = load_world(FACTWORLD)
    at_subject = acceptance.subject_patching_rates(model, tokenizer, world, n_pairs=30)
    monkeypatch.setattr(acceptance, "subject_token_index",
                        lambda tok, template, subject: len(tok(template.format(subject))["input_ids"]) - 1)
    at_last_token = acceptance.subject_patching_rates(model, tokenizer, world, n_pairs=30)
    assert len(at_subject) == len(at_last_token) == model.config.n_layer
    assert at_last_token[-1] >= 0.95
    assert min(at_subject[:2]) >= 0.9
    assert max(at_subject[2:]) <= 0.1


def test_binomial_tail_matches_a_direct_sum_and_refuses_impossible_counts():
    from math import comb

    from lit_edit.factworld.acceptance import binomial_upper_tail

    for n, correct, chance in [(3, 2, 0.5), (10, 7, 0.58), (40, 0, 0.3), (40, 40, 0.9), (200, 150, 0.58),
                               (5, 0, 0.0), (5, 1, 0.0), (5, 5, 1.0)]:
        direct = sum(comb(n, i) * chance ** i * (1 - chance) ** (n - i) for i in range(correct, n + 1))
        assert binomial_upper_tail(n, correct, chance) == pytest.approx(direct, rel=1e-9, abs=1e-300)
    assert binomial_upper_tail(3, 2, 0.5) == pytest.approx(0.5)          # (3 + 1) / 8 by hand
    with pytest.raises(ValueError, match="between 0 and n=5"):
        binomial_upper_tail(5, 6, 0.5)
