"""Teacher-forced scoring of answers after prompts, batched; token ids are concatenated, never re-tokenised.

``encode_pairs`` builds ``prompt ids + answer ids`` (the answer encoded with its leading space and no
special tokens), so the logit at the last prompt token scores the first answer token, for tokenizers
with and without a BOS token alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase


@dataclass
class EncodedPair:
    ids: list[int]
    answer_start: int  # index of the first answer token in ``ids``


def encode_pairs(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], answers: Sequence[str],
                 space: str = " ") -> list[EncodedPair]:
    """Encode each prompt (with the tokenizer's special tokens) followed by ``space + answer``."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    pairs = []
    for i, (prompt, answer) in enumerate(zip(prompts, answers)):
        if not answer.strip():
            raise ValueError(f"answer {i} (after prompt {prompt!r}) is empty")
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        answer_ids = tokenizer(space + answer.lstrip() if space else answer, add_special_tokens=False)["input_ids"]
        pairs.append(EncodedPair(prompt_ids + answer_ids, len(prompt_ids)))
    return pairs


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for token-id lists (absolute positions stay valid)."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(input_ids)
    for i, ids in enumerate(sequences):
        input_ids[i, : len(ids)] = torch.tensor(list(ids), dtype=torch.long)
        mask[i, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def labelled_batch(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], answers: Sequence[str],
                   device: torch.device | str = "cpu",
                   max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and ``labels`` (the answer tokens, −100 elsewhere) of prompt + answer,
    right-padded. ``max_length`` drops tokens from the prompt's start, never from the answer."""
    pairs = encode_pairs(tokenizer, prompts, answers)
    if max_length is not None:
        pairs = [EncodedPair(p.ids[max(len(p.ids) - max_length, 0):], max(p.answer_start - len(p.ids) + max_length, 0))
                 if len(p.ids) > max_length else p for p in pairs]
        if any(p.answer_start == 0 for p in pairs):
            raise ValueError(f"max_length {max_length} leaves no prompt token before an answer")
    input_ids, mask = pad_right([p.ids for p in pairs], tokenizer.pad_token_id, device)
    labels = torch.full_like(input_ids, -100)
    for row, pair in enumerate(pairs):
        labels[row, pair.answer_start:len(pair.ids)] = input_ids[row, pair.answer_start:len(pair.ids)]
    return input_ids, mask, labels


@torch.no_grad()
def answer_token_predictions(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str],
                             answers: Sequence[str], batch_size: int = 64) -> list[tuple[list[int], list[int]]]:
    """For each (prompt, answer): (argmax token at each answer position, the answer's token ids)."""
    device = next(model.parameters()).device
    pairs = encode_pairs(tokenizer, prompts, answers)
    results = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        input_ids, mask = pad_right([p.ids for p in chunk], tokenizer.pad_token_id, device)
        argmax = model(input_ids=input_ids, attention_mask=mask).logits.argmax(-1).cpu()
        for row, pair in enumerate(chunk):
            positions = range(pair.answer_start - 1, len(pair.ids) - 1)
            results.append(([int(argmax[row, p]) for p in positions], pair.ids[pair.answer_start:]))
    return results


@torch.no_grad()
def token_nll(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[float, int]:
    """Summed next-token NLL over non-padded positions, and the number of scored tokens."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    labels = input_ids[:, 1:].masked_fill(attention_mask[:, 1:] == 0, -100)
    nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100,
                                            reduction="sum")
    return float(nll), int((labels != -100).sum())


@dataclass
class AnswerScore:
    """Teacher-forced score of one answer: the argmax token at each answer position, the answer's ids, and the
    mean per-token NLL of the answer."""

    predicted: list[int]
    answer: list[int]
    mean_nll: float

    @property
    def token_accuracy(self) -> float:
        return sum(p == a for p, a in zip(self.predicted, self.answer)) / len(self.answer)


@torch.no_grad()
def score_answers(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], answers: Sequence[str],
                  batch_size: int = 64) -> list[AnswerScore]:
    """:class:`AnswerScore` of each (prompt, answer), in batches (right padding, concatenated ids)."""
    device = next(model.parameters()).device
    pairs = encode_pairs(tokenizer, prompts, answers)
    scores = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        input_ids, mask = pad_right([p.ids for p in chunk], tokenizer.pad_token_id, device)
        log_probs = model(input_ids=input_ids, attention_mask=mask).logits.float().log_softmax(-1)
        argmax = log_probs.argmax(-1).cpu()
        for row, pair in enumerate(chunk):
            positions = torch.arange(pair.answer_start - 1, len(pair.ids) - 1, device=device)
            answer = torch.tensor(pair.ids[pair.answer_start:], device=device)
            nll = -log_probs[row, positions].gather(1, answer[:, None]).mean()
            scores.append(AnswerScore(argmax[row, positions.cpu()].tolist(), answer.tolist(), float(nll)))
    return scores
