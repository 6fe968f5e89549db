"""The pretraining corpus: length-grouped batches and the subject-routing targets and penalty."""

from __future__ import annotations

import json

import pytest
import torch

from lit_edit.data.corpus import TextCorpusDataModule, hidden_name_tokens, routing_targets
from lit_edit.models.loading import load_tokenizer
from lit_edit.modules.subject_routing import composition_gap, routing_leak
from tests.conftest import FACTWORLD

TEXT = "Where was Hathio Mafubral born? Hathio Mafubral was born in Grauden."


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FACTWORLD / "tokenizer-gpt2")


def entity_spans(text: str, name: str) -> list[list[int]]:
    spans, start = [], text.find(name)
    while start >= 0:
        spans.append([start, start + len(name)])
        start = text.find(name, start + 1)
    return spans


def test_hidden_name_tokens_are_all_but_the_last_token_of_each_name(tokenizer):
    encoded = tokenizer(TEXT, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    blocked = hidden_name_tokens(encoded["offset_mapping"], entity_spans(TEXT, "Hathio Mafubral"))
    assert len(blocked) == 2
    for last, earlier in blocked:
        assert tokens[last].lstrip("Ġ") == "Mafubral"
        assert [tokens[i].lstrip("Ġ") for i in earlier] == ["Hathio"]


def test_routing_targets_match_a_direct_construction():
    padding = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    blocked = [[(3, [1, 2])], [(2, [1])]]
    forbidden, compose = routing_targets(padding, blocked)
    assert forbidden.shape == (2, 2, 6, 6) and compose.shape == (2, 6, 6)
    for b in range(2):
        for q in range(6):
            for k in range(6):
                real = padding[b, k] == 1
                after = [(last, earlier) for last, earlier in blocked[b] if q > last]
                assert bool(forbidden[b, 0, q, k]) == (real and any(k in e or k == last for last, e in after))
                assert bool(forbidden[b, 1, q, k]) == (real and any(k in e for _, e in after))
                assert bool(compose[b, q, k]) == (real and any(q == last and k in e for last, e in blocked[b]))


def test_routing_penalties_match_a_direct_computation():
    torch.manual_seed(0)
    attentions = [torch.softmax(torch.randn(2, 3, 5, 5), -1) for _ in range(2)]
    forbidden, compose = routing_targets(torch.ones(2, 5, dtype=torch.long), [[(1, [0])], []])
    # document 0 names tokens 0-1: queries 2..4 must not read keys 0-1 in layer 0, key 0 in layer 1
    expected_leak = (attentions[0][0, :, 2:, :2].sum(-1).mean() + attentions[1][0, :, 2:, 0].mean()) / 2
    torch.testing.assert_close(routing_leak(attentions, forbidden), expected_leak)
    # token 1 should read token 0 in the first layer: the best head's mass there
    torch.testing.assert_close(composition_gap(attentions[0], compose), 1 - attentions[0][0, :, 1, 0].max())
    assert float(routing_leak(attentions, torch.zeros_like(forbidden))) == 0.0
    assert float(composition_gap(attentions[0], torch.zeros_like(compose))) == 0.0


def write_corpus(root, records):
    (root / "corpus").mkdir(parents=True)
    for split in ("train", "heldout"):
        (root / "corpus" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_data_module_gives_training_batches_the_routing_targets(tmp_path):
    write_corpus(tmp_path, [{"text": TEXT, "entities": entity_spans(TEXT, "Hathio Mafubral")},
                            {"text": "No names here.", "entities": []}])
    data = TextCorpusDataModule(tmp_path, str(FACTWORLD / "tokenizer-gpt2"), batch_size=2, subject_routing=True,
                                generate_factworld=False)
    data.setup("fit")
    batch = data.train_set[0]
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"].shape[1:] == (width,)
    assert batch["routing_forbidden"].shape[1:] == (2, width, width) and batch["routing_compose"].shape[1:] == (width, width)
    row = int(batch["routing_forbidden"][:, 0, -1].sum(-1).argmax())    # the document with the names
    tokens = [t.lstrip("Ġ") for t in load_tokenizer(FACTWORLD / "tokenizer-gpt2")
              .convert_ids_to_tokens(batch["input_ids"][row])]
    first, last = tokens.index("Hathio"), tokens.index("Mafubral")
    forbidden = batch["routing_forbidden"][row]
    assert forbidden[0, -1, first] and forbidden[0, -1, last]              # first layer: none of the name
    assert forbidden[1, -1, first] and not forbidden[1, -1, last]          # later layers: its last token only
    assert batch["routing_compose"][row, last, first] and not forbidden[:, last, first].any()
    assert "routing_forbidden" not in data.heldout_set[0]                  # evaluation sees the plain model


def test_routing_without_entity_spans_names_the_record(tmp_path):
    write_corpus(tmp_path, [{"text": TEXT}])
    data = TextCorpusDataModule(tmp_path, str(FACTWORLD / "tokenizer-gpt2"), subject_routing=True,
                                generate_factworld=False)
    with pytest.raises(ValueError, match=r"train.jsonl:1: subject_routing needs an 'entities' field"):
        data.setup("fit")


def test_training_with_the_penalties_lowers_them(tmp_path):
    """A few optimiser steps on a tiny model: leak and composition gap fall while the LM loss is still trained."""
    from lit_edit.modules.language_model import CausalLMModule

    write_corpus(tmp_path, [{"text": TEXT, "entities": entity_spans(TEXT, "Hathio Mafubral")}] * 4)
    data = TextCorpusDataModule(tmp_path, str(FACTWORLD / "tokenizer-gpt2"), batch_size=4, subject_routing=True,
                                generate_factworld=False)
    data.setup("fit")
    torch.manual_seed(0)
    module = CausalLMModule(tokenizer=str(FACTWORLD / "tokenizer-gpt2"), routing_weight=5.0,
                            model_config={"n_layer": 2, "n_embd": 32, "n_head": 2, "n_inner": 64, "n_positions": 64})
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    batch = data.train_set[0]
    first_loss, first = module(batch)
    for _ in range(40):
        loss, penalties = module(batch)
        optimizer.zero_grad()
        (loss + 5.0 * sum(penalties.values())).backward()
        optimizer.step()
    loss, penalties = module(batch)
    assert float(loss) < float(first_loss)
    for name in ("routing_leak", "routing_composition_gap"):
        assert float(penalties[name]) < 0.3 * float(first[name]), (name, first, penalties)
