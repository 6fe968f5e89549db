"""Batched greedy generation: the new tokens of each prompt, cut at EOS, read as plain text and as the reference
harness read them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList

from lit_edit.tasks.legacy import clean_up_tokenization


@dataclass
class Generation:
    """One greedy generation: the prompt's token ids, the new ids (up to and including the first EOS), and both
    readings of the text — ``continuation`` (new tokens only, cut before EOS, no clean-up; the corrected parsers
    read this) and ``reference_text`` (prompt + new tokens decoded as the reference harness did: clean-up on, EOS
    spelled out; the ``paper`` parsers read this)."""

    prompt_ids: list[int]
    new_ids: list[int]
    continuation: str
    reference_text: str


class _StopString(StoppingCriteria):
    """A row is done once the text of its new tokens contains ``stop`` (checked on the last few tokens only)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop: str, prompt_width: int):
        self.tokenizer, self.stop, self.prompt_width = tokenizer, stop, prompt_width
        self.window = len(stop) + 8   # tokens: enough to contain the stop string however it is split

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = input_ids[:, max(self.prompt_width, input_ids.shape[1] - self.window):].tolist()
        return torch.tensor([self.stop in self.tokenizer.decode(tail, skip_special_tokens=True) for tail in tails],
                            dtype=torch.bool, device=input_ids.device)


def _cut_at_stop(tokenizer: PreTrainedTokenizerBase, new: list[int], stop: str) -> list[int]:
    """The shortest prefix of ``new`` whose text contains ``stop`` (all of ``new`` when none does)."""
    for end in range(1, len(new) + 1):
        if stop in tokenizer.decode(new[:end], skip_special_tokens=True):
            return new[:end]
    return new


@torch.no_grad()
def generate_greedy(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int,
                    batch_size: int = 32, stop: str | None = None) -> list[Generation]:
    """Greedy-decode ``max_new_tokens`` after each prompt in length-sorted batches (left padding, attention mask,
    KV cache; a row stops at EOS, or once its new text contains ``stop``, and the batch ends when every row has).
    With ``stop`` the continuation is cut before it; without, the text is what full-length decoding gives.
    Results come back in the order of ``prompts``."""
    device = next(model.parameters()).device
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: (len(encoded[i]), i))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[Generation | None] = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[r, width - len(encoded[i]):] = 1
        criteria = StoppingCriteriaList([_StopString(tokenizer, stop, width)]) if stop else None
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                   max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                   pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id,
                                   stopping_criteria=criteria)
        for r, i in enumerate(rows):
            new = generated[r, width:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id) + 1]
            if stop:
                new = _cut_at_stop(tokenizer, new, stop)
            text_ids = new[:-1] if new and new[-1] == tokenizer.eos_token_id else new
            continuation = tokenizer.decode(text_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            results[i] = Generation(
                encoded[i], new, continuation.split(stop)[0] if stop else continuation,
                clean_up_tokenization(tokenizer.decode(encoded[i] + new, skip_special_tokens=False,
                                                       clean_up_tokenization_spaces=False)))
    return results


def greedy_continuations(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int,
                         batch_size: int = 32, stop_at_newline: bool = False) -> list[str]:
    """The new text of each prompt (:attr:`Generation.continuation`: no clean-up, cut at EOS), optionally cut at
    the first newline."""
    texts = [g.continuation for g in generate_greedy(model, tokenizer, prompts, max_new_tokens, batch_size)]
    return [text.split("\n")[0] for text in texts] if stop_at_newline else texts
