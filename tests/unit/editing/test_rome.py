"""ROME on the shipped fact-world model: the insertion is exact, the fact flips, unrelated facts stay."""

import random

import pytest
import torch

from lit_edit.data.corpus import read_texts
from lit_edit.editing import read_zsre
from lit_edit.editing.contexts import sample_context_templates
from lit_edit.editing.keys import module_io_at_subject
from lit_edit.editing.rome import RomeHyperparams, apply_rome
from lit_edit.editing.values import ValueHyperparams, ValueTarget
from lit_edit.factworld.acceptance import load_world
from lit_edit.factworld.edits import fact_questions
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.scoring import answer_token_predictions
from lit_edit.stats import collect_second_moments, token_batches
from tests.conftest import FACTWORLD, ROOT

SHIPPED = {"gpt2": ROOT / "checkpoints" / "factworld-gpt2", "llama": ROOT / "checkpoints" / "factworld-llama"}
LAYER = 0   # configs/edit/methods/factworld/rome.yaml (both layouts look their facts up at layers 0–1)


@pytest.fixture(scope="module", params=sorted(SHIPPED))
def shipped(request):
    """A shipped fact-world model (both layouts) and C of its edited layer."""
    model, tokenizer = load_model_and_tokenizer(str(SHIPPED[request.param]))
    texts = read_texts(FACTWORLD / "corpus" / "train.jsonl")[:1000]
    moments = collect_second_moments(model, architecture_of(model), [LAYER], token_batches(tokenizer, texts, 256),
                                     progress=False)
    return SHIPPED[request.param], moments[LAYER].mean()


def _unrelated_questions(requests, n=200):
    world = load_world(FACTWORLD)
    edited_subjects = {r.subject for r in requests}
    unrelated = [(q, a) for q, a in fact_questions(world, heldout=False) if not any(s in q for s in edited_subjects)]
    return random.Random(0).sample(unrelated, n)


def _first_tokens(model, tokenizer, questions):
    return [pred[0] for pred, _ in answer_token_predictions(model, tokenizer, [q for q, _ in questions],
                                                            [a for _, a in questions])]


def _edit(mom2_adjustment, shipped, n_requests=4):
    folder, second_moment = shipped
    model, tokenizer = load_model_and_tokenizer(str(folder))
    arch = architecture_of(model)
    requests = read_zsre(FACTWORLD / "zsre" / "zsre_factworld.json").requests[:n_requests]
    targets = [ValueTarget(r.prompt, r.subject, r.target_new) for r in requests]
    templates = sample_context_templates(model, tokenizer, per_seed=1, lengths=(8,), length_rule="new", seed=0)
    unrelated = _unrelated_questions(requests)
    before = _first_tokens(model, tokenizer, unrelated)
    edits = apply_rome(model, tokenizer, arch, targets, _hyperparams(mom2_adjustment), templates,
                       second_moment if mom2_adjustment else None)
    after = _first_tokens(model, tokenizer, unrelated)
    unchanged = sum(b == a for b, a in zip(before, after)) / len(unrelated)
    return model, tokenizer, arch, requests, targets, edits, unchanged


def _hyperparams(mom2_adjustment=True):
    return RomeHyperparams(layer=LAYER, values=ValueHyperparams(steps=40, lr=0.5, clamp_norm_factor=4.0),
                           mom2_adjustment=mom2_adjustment)


@pytest.mark.parametrize("mom2_adjustment", [True, False])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_rome_inserts_the_value_exactly(shipped, mom2_adjustment):
    model, tokenizer, arch, _, targets, edits, _ = _edit(mom2_adjustment, shipped)
    # the last request's key maps exactly to its value (earlier ones were computed on an older W)
    _, o_star = module_io_at_subject(model, tokenizer, arch.ffn_out_at(LAYER), [targets[-1].prompt],
                                     [targets[-1].subject])
    torch.testing.assert_close(o_star[0], edits[-1].value.to(o_star.dtype), rtol=1e-4, atol=1e-4)
    assert all(torch.linalg.matrix_rank(e.delta) == 1 for e in edits)


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_second_moment_keeps_unrelated_facts(shipped):
    """With C⁻¹k* as the update direction (mom2_adjustment) 4 edits leave unrelated facts alone; with k* alone
    (identity C) the same edits disturb more of them."""
    *_, unchanged_with_c = _edit(True, shipped)
    *_, unchanged_without_c = _edit(False, shipped)
    assert unchanged_with_c >= 0.9
    assert unchanged_without_c < unchanged_with_c


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_rome_flips_each_fact_and_keeps_the_others(shipped):
    """20 requests, each edited alone and rolled back (single mode): the new fact is recalled, unrelated facts
    keep their first answer token."""
    folder, second_moment_layer = shipped
    model, tokenizer = load_model_and_tokenizer(str(folder))
    arch = architecture_of(model)
    requests = read_zsre(FACTWORLD / "zsre" / "zsre_factworld.json").requests[:20]
    templates = sample_context_templates(model, tokenizer, per_seed=1, lengths=(8,), length_rule="new", seed=0)
    unrelated = _unrelated_questions(requests)
    before = _first_tokens(model, tokenizer, unrelated)
    weight = arch.edit_weight(model, LAYER)
    original = weight.detach().clone()
    flipped, unchanged = [], []
    for request in requests:
        apply_rome(model, tokenizer, arch, [ValueTarget(request.prompt, request.subject, request.target_new)],
                   _hyperparams(), templates, second_moment_layer)
        [(pred, gold)] = answer_token_predictions(model, tokenizer, [request.text], [request.target_new])
        flipped.append(pred == gold)
        after = _first_tokens(model, tokenizer, unrelated)
        unchanged.append(sum(b == a for b, a in zip(before, after)) / len(unrelated))
        with torch.no_grad():
            weight.copy_(original)
    assert sum(flipped) / len(requests) >= 0.95
    assert sum(unchanged) / len(unchanged) >= 0.9
