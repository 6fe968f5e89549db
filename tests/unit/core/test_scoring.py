import torch

from lit_edit.generation import greedy_continuations
from lit_edit.models import load_model_and_tokenizer, load_tokenizer
from lit_edit.scoring import answer_token_predictions, encode_pairs, token_nll
from tests.conftest import FACTWORLD


def test_answer_ids_are_concatenated_with_one_leading_space():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-gpt2"))
    (pair,) = encode_pairs(tokenizer, ["Where was Alda born?"], ["Torvale"])
    assert pair.ids[: pair.answer_start] == tokenizer("Where was Alda born?")["input_ids"]
    assert pair.ids[pair.answer_start:] == tokenizer(" Torvale", add_special_tokens=False)["input_ids"]
    (same,) = encode_pairs(tokenizer, ["Where was Alda born?"], [" Torvale"])  # an existing space is not doubled
    assert same.ids == pair.ids


def test_bos_tokenizer_keeps_bos_before_the_prompt_only():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-llama"))
    (pair,) = encode_pairs(tokenizer, ["Where was Alda born?"], ["Torvale"])
    assert pair.ids[0] == tokenizer.bos_token_id
    assert tokenizer.bos_token_id not in pair.ids[1:]


def test_teacher_forced_predictions_match_a_direct_forward(tiny_gpt2_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    prompts, answers = ["The pet of Alda Venkor is a", "Where was Bram born?"], ["parrot", "Port Ivory"]
    batched = answer_token_predictions(model, tokenizer, prompts, answers, batch_size=2)
    for (pred, gold), prompt, answer in zip(batched, prompts, answers):
        ids = tokenizer(prompt)["input_ids"] + tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
        logits = model(input_ids=torch.tensor([ids])).logits[0]
        start = len(tokenizer(prompt)["input_ids"])
        assert gold == ids[start:]
        assert pred == logits[start - 1:-1].argmax(-1).tolist()


def test_token_nll_matches_the_model_loss(tiny_gpt2_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    ids = torch.tensor([tokenizer("Alda Venkor plays the violin.")["input_ids"]])
    nll, n = token_nll(model, ids, torch.ones_like(ids))
    assert n == ids.shape[1] - 1
    assert abs(nll / n - float(model(input_ids=ids, labels=ids).loss)) < 1e-5


def test_greedy_continuations_ignore_left_padding(tiny_gpt2_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    prompts = ["Hi", "The native language of Alda Venkor is a long prompt"]
    together = greedy_continuations(model, tokenizer, prompts, max_new_tokens=4, batch_size=2)
    alone = [greedy_continuations(model, tokenizer, [p], max_new_tokens=4)[0] for p in prompts]
    assert together == alone
