"""The pretraining corpus: length-grouped batches and the subject-bottleneck attention mask."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lit_edit.data.corpus import TextCorpusDataModule, bottleneck_attention_mask, hidden_name_tokens
from lit_edit.models.loading import load_tokenizer
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


def test_bottleneck_mask_matches_a_direct_construction():
    padding = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    blocked = [[(3, [1, 2])], [(2, [1])]]
    mask = bottleneck_attention_mask(padding, blocked)
    assert mask.shape == (2, 1, 6, 6)
    for b in range(2):
        for q in range(6):
            for k in range(6):
                hidden = any(q > last and k in earlier for last, earlier in blocked[b])
                allowed = k <= q and padding[b, k] == 1 and not hidden
                assert (mask[b, 0, q, k] == 0) == allowed, (b, q, k)


def test_with_the_mask_later_tokens_reach_a_name_only_through_its_last_token():
    """A one-layer model: under the mask the last position cannot see the first name at all."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2,
                                                        n_positions=16)).eval()
    ids = torch.tensor([[5, 6, 7, 8, 9]])          # tokens 1-2 are a two-token name
    changed = ids.clone()
    changed[0, 1] = 20                             # another first name
    mask = bottleneck_attention_mask(torch.ones_like(ids), [[(2, [1])]])
    with torch.no_grad():
        same = model(input_ids=ids, attention_mask=mask).logits[0, -1]
        other = model(input_ids=changed, attention_mask=mask).logits[0, -1]
        plain = model(input_ids=changed).logits[0, -1]
    torch.testing.assert_close(same, other)
    assert (plain - same).abs().max() > 1e-3      # without the mask it can


def write_corpus(root, records):
    (root / "corpus").mkdir(parents=True)
    for split in ("train", "heldout"):
        (root / "corpus" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_data_module_gives_training_batches_the_bottleneck_mask(tmp_path):
    write_corpus(tmp_path, [{"text": TEXT, "entities": entity_spans(TEXT, "Hathio Mafubral")},
                            {"text": "No names here.", "entities": []}])
    data = TextCorpusDataModule(tmp_path, str(FACTWORLD / "tokenizer-gpt2"), batch_size=2, subject_bottleneck=True,
                                generate_factworld=False)
    data.setup("fit")
    batch = data.train_set[0]
    width = batch["input_ids"].shape[1]
    assert batch["attention_mask"].shape[1:] == (1, width, width)
    row = int(batch["attention_mask"][:, 0, -1].eq(0).sum(-1).argmax())    # the document with the names
    tokens = [t.lstrip("Ġ") for t in load_tokenizer(FACTWORLD / "tokenizer-gpt2")
              .convert_ids_to_tokens(batch["input_ids"][row])]
    first, last = tokens.index("Hathio"), tokens.index("Mafubral")
    assert batch["attention_mask"][row, 0, -1, first] < 0 and batch["attention_mask"][row, 0, -1, last] == 0
    assert batch["attention_mask"][row, 0, last, first] == 0               # the name's own tokens see each other
    assert data.heldout_set[0]["attention_mask"].dim() == 2     # evaluation sees the plain model


def test_bottleneck_without_entity_spans_names_the_record(tmp_path):
    write_corpus(tmp_path, [{"text": TEXT}])
    data = TextCorpusDataModule(tmp_path, str(FACTWORLD / "tokenizer-gpt2"), subject_bottleneck=True,
                                generate_factworld=False)
    with pytest.raises(ValueError, match=r"train.jsonl:1: subject_bottleneck needs an 'entities' field"):
        data.setup("fit")


def test_first_layer_cannot_read_the_name_and_later_layers_read_only_its_last_token():
    """Under both masks the last position reaches a name only through its last token's layer-1 residual."""
    from lit_edit.modules import bottleneck_attention

    torch.manual_seed(0)
    ids = torch.tensor([[5, 6, 7, 8, 9]])          # tokens 1-2 are a two-token name
    changed = ids.clone()
    changed[0, 1], changed[0, 2] = 20, 21          # another name
    plain = torch.ones_like(ids)
    masks = {"attention_mask": bottleneck_attention_mask(plain, [[(2, [1])]]),
             "first_layer_mask": bottleneck_attention_mask(plain, [[(2, [1])]], hide_last=True)}
    outputs = {}
    for layers in (1, 2):
        model = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=50, n_embd=32, n_layer=layers, n_head=2,
                                                            n_positions=16)).eval()
        model.set_attn_implementation(bottleneck_attention.NAME)
        with torch.no_grad():
            outputs[layers] = [model(input_ids=x, **masks).logits[0, -1] for x in (ids, changed)]
    torch.testing.assert_close(*outputs[1])                    # one layer: the name is invisible
    assert (outputs[2][0] - outputs[2][1]).abs().max() > 1e-3  # two layers: it arrives via its last token
