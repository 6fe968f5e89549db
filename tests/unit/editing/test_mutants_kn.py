"""KN's settings and selection rules at their boundaries (docs/methods.md §5): every setting at its edge accepted
or refused with its message, the selection rules (3) and (4) at equality, the cap's mask, and the token checks of
a request (an id equal to the vocabulary size, a special token in a target, an empty target)."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.kn import (
    KnHyperparams,
    _logits_at_last,
    cap_neurons,
    coarse_neurons,
    encode_request,
    refine_neurons,
)
from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.requests import EditRequest, EditRequestError
from lit_edit.models import load_model_and_tokenizer
from lit_edit.models.loading import load_tokenizer
from tests.conftest import FACTWORLD


def test_the_layers_are_checked_and_kept_in_the_given_order():
    assert KnHyperparams(layers=[2, 0]).layers == (2, 0)
    assert KnHyperparams().layers is None
    with pytest.raises(EditorOptionError, match="more than once"):
        KnHyperparams(layers=[1, 1])


@pytest.mark.parametrize(("settings", "message"), [
    ({"steps": 0}, "KN needs steps >= 1 and batch_size >= 1, got 0 and 256"),
    ({"batch_size": 0}, "KN needs steps >= 1 and batch_size >= 1, got 20 and 0"),
    ({"threshold": -0.1}, "KN threshold τ must be in [0, 1], got -0.1"),
    ({"threshold": 1.5}, "KN threshold τ must be in [0, 1], got 1.5"),
    ({"sharing_ratio": 0.0}, "KN sharing_ratio p must be in (0, 1], got 0.0"),
    ({"sharing_ratio": 1.5}, "KN sharing_ratio p must be in (0, 1], got 1.5"),
    ({"max_neurons": 0}, "KN max_neurons must be >= 1 or None, got 0"),
    ({"embedding": "tied"}, "KN embedding must be one of ('output', 'input'), got 'tied'"),
    ({"scale": 2.0, "one_token_edit": "reference"}, "KN scale=2.0 sets c_t = c_o, which one_token_edit 'reference' "
     "(c_t = 1, c_o = 2) contradicts: set scale to null or one_token_edit to 'doubled'"),
])
def test_a_setting_that_cannot_work_is_refused_with_its_message(settings, message):
    with pytest.raises(ValueError) as refused:
        KnHyperparams(**settings)
    assert str(refused.value) == message


def test_every_setting_at_its_edge_is_accepted():
    KnHyperparams(steps=1, batch_size=1, threshold=0.0, sharing_ratio=1.0, max_neurons=1)
    KnHyperparams(threshold=1.0)


def test_the_coarse_rule_is_strictly_above_tau_times_the_maximum():
    scores = torch.tensor([[1.0, 0.5, 0.25], [0.75, 0.5, 0.0]])
    assert coarse_neurons(scores, 0.5).tolist() == [[True, False, False], [True, False, False]]


def test_the_refined_rule_keeps_a_neuron_shared_by_exactly_p_times_n_prompts():
    masks = [torch.tensor([True, True, False, False]), torch.tensor([True, False, True, False])]
    assert refine_neurons(masks, 0.5).tolist() == [True, True, True, False]
    assert refine_neurons(masks, 1.0).tolist() == [True, False, False, False]


def test_the_capped_mask_is_boolean_and_keeps_the_largest_scores():
    mask = torch.tensor([[True, True], [True, False]])
    scores = torch.tensor([[0.5, 3.0], [2.0, 9.0]])
    capped = cap_neurons(mask, scores, 2)
    assert capped.dtype == torch.bool and capped.tolist() == [[False, True], [True, False]]
    assert cap_neurons(mask, scores, 3) is mask


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(FACTWORLD / "tokenizer-gpt2"))


def _request(**fields) -> EditRequest:
    base = dict(prompt="Where was {} born?", subject="Alda Venkor", target_new="Port Ivory",
                target_true="Vashti Falls", record_id="zsre:7")
    return EditRequest(**(base | fields))


def test_an_id_equal_to_the_vocabulary_size_is_outside_the_embedding(tokenizer):
    ids = tokenizer(" Port Ivory", add_special_tokens=False)["input_ids"]
    size = max(ids)                                     # the largest id of the target is one past this vocabulary
    with pytest.raises(EditRequestError) as refused:
        encode_request(tokenizer, _request(), size, refine=False)
    assert str(refused.value).endswith(f"encodes to token ids {[size]} outside the model's embedding (ids "
                                       f"0..{size - 1}): the tokenizer does not belong to this model")
    encode_request(tokenizer, _request(), size + 1, refine=False)


def test_a_special_token_in_a_target_is_refused_naming_it():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-llama"))       # <s> is special and not the unknown token
    special = tokenizer.bos_token_id
    assert special != tokenizer.unk_token_id
    name = tokenizer.convert_ids_to_tokens(special)
    with pytest.raises(EditRequestError) as refused:
        encode_request(tokenizer, _request(target_new=f"Port {name}"), len(tokenizer), refine=False)
    assert str(refused.value) == (
        f"record zsre:7 field 'target_new': encodes to the tokenizer's unknown/special token(s) [{name!r}] (ids "
        f"[{special}]): the model has no embedding that means this text")


def test_a_missing_or_empty_old_answer_is_refused_naming_the_record_and_field(tokenizer):
    with pytest.raises(EditRequestError) as refused:
        encode_request(tokenizer, _request(target_true=None), len(tokenizer), refine=False)
    assert str(refused.value) == ("record zsre:7 field 'target_true': KN attributes the old answer and needs it; "
                                  "the request has none")
    with pytest.raises(EditRequestError) as refused:
        encode_request(tokenizer, _request(target_true="  "), len(tokenizer), refine=False)
    assert str(refused.value) == "record zsre:7 field 'target_true': target is empty"


def test_a_prompt_outside_the_embedding_is_refused_as_the_prompt(tokenizer):
    request = _request(target_new="The", target_true="A")
    target_ids = tokenizer(" The A", add_special_tokens=False)["input_ids"]
    size = max(target_ids) + 1
    assert max(tokenizer(request.text)["input_ids"]) >= size
    with pytest.raises(EditRequestError, match=r"^record zsre:7 field 'prompt': encodes to token ids"):
        encode_request(tokenizer, request, size, refine=False)


class _WithoutLogitsToKeep(torch.nn.Module):
    """A causal LM whose ``forward`` does not take ``logits_to_keep`` (older model classes)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, use_cache=False):
        return self.model(input_ids=input_ids, use_cache=use_cache)


def test_the_last_positions_logits_without_logits_to_keep_are_sliced_from_the_full_logits(tiny_gpt2_dir):
    model, _ = load_model_and_tokenizer(str(tiny_gpt2_dir))
    ids = torch.tensor([[5, 9, 14, 3, 7], [2, 8, 11, 4, 6]])
    with torch.no_grad():
        full = model(input_ids=ids).logits
        torch.testing.assert_close(_logits_at_last(_WithoutLogitsToKeep(model), ids, 2), full[:, -2:])
        torch.testing.assert_close(_logits_at_last(model, ids, 2), full[:, -2:])
