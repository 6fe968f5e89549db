"""Context templates from a hand-made model whose next-token scores are a table: the text rules (newlines and
braces become spaces, the ends stripped), the sampling settings handed on, and the length bound at 1
(docs/methods.md §0.4)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lit_edit.editing.contexts import check_template_settings, sample_context_templates, sample_continuations

VOCAB = ["The", "\n", "{", "}", " x", " y", " z", "!", "?", "<eos>"]
NEXT = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 7, 7: 8, 8: 4}   # the best next token after each token
EOS = 9


class TableTokenizer:
    eos_token_id = EOS

    def __call__(self, word, return_tensors="pt"):
        return {"input_ids": torch.tensor([[VOCAB.index(word)]])}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(VOCAB[i] for i in ids if not (skip_special_tokens and i == EOS))


class TableModel(torch.nn.Module):
    """Scores 1 for the table's next token, 0 for the others, −inf for EOS: top-1 follows the table, top-5
    samples among five tokens."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids):
        logits = torch.zeros(1, input_ids.shape[1], len(VOCAB))
        logits[0, -1, NEXT[int(input_ids[0, -1])]] = 1.0
        logits[0, -1, EOS] = float("-inf")
        return SimpleNamespace(logits=logits)


def _template(ids) -> str:
    """The rule written out: join the pieces, newlines and braces to spaces, strip, then ``. {}``."""
    text = "".join(VOCAB[i] for i in ids)
    return "".join(" " if c in "\n{}" else c for c in text).strip() + ". {}"


def test_newlines_and_braces_of_the_sampled_text_become_spaces_with_top_k_handed_on():
    templates = sample_context_templates(TableModel(), TableTokenizer(), ("The",), 1, (5,), "new", top_k=1)
    assert templates == ["{}", "The    x y. {}"]        # The \n { } x y


def test_the_defaults_are_those_of_the_sampling_seed_zero_top_five():
    model, tokenizer = TableModel(), TableTokenizer()
    samples = sample_continuations(model, tokenizer, ("The",), 4, (6,), "new", seed=0, top_k=5)
    assert len({tuple(s) for s in samples}) > 1           # the table's scores leave the sampling random
    assert sample_context_templates(model, tokenizer, ("The",), 4, (6,), "new") == ["{}"] + [
        _template(s) for s in samples]
    assert len(sample_context_templates(model, tokenizer, ("The",), lengths=(2,), length_rule="new")) == 2  # 1 each


def test_a_template_length_of_one_is_accepted_and_zero_refused():
    assert check_template_settings(1, 1, "total") == (1,)
    assert check_template_settings(1, [1, 3], "new") == (1, 3)
    with pytest.raises(ValueError, match=r"template_tokens must be one or more lengths >= 1, got \[1, 0\]"):
        check_template_settings(1, [1, 0], "new")
