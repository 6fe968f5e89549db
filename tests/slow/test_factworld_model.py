"""The full acceptance report of the shipped fact-world model (the slow tier of
tests/unit/factworld/test_factworld_model.py)."""

import pytest

from lit_edit.models import load_model_and_tokenizer
from lit_edit.tasks import registry
from tests.conftest import FACTWORLD, ROOT


@pytest.fixture(scope="module")
def shipped():
    return load_model_and_tokenizer(str(ROOT / "checkpoints" / "factworld-gpt2"))


@pytest.mark.slow
def test_full_acceptance_report(shipped):
    from lit_edit.factworld.acceptance import acceptance

    model, tokenizer = shipped
    report = acceptance(model, tokenizer, FACTWORLD)
    assert report["fact_recall_train_templates"] >= 0.95
    assert report["heldout_perplexity"] < 3.0
    assert set(report["tasks"]) == set(registry.TASK_FILES)
