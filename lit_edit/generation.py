"""Batched greedy generation that returns only the new text, cut at EOS."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


@torch.no_grad()
def greedy_continuations(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int,
                         batch_size: int = 32, stop_at_newline: bool = False) -> list[str]:
    """Greedy-decode ``max_new_tokens`` after each prompt (left padding, KV cache); return the new text.

    The decoded text keeps the tokenizer's spacing (no clean-up), stops at EOS, and optionally at the
    first newline.
    """
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    outputs = []
    try:
        for start in range(0, len(prompts), batch_size):
            batch = tokenizer(list(prompts[start:start + batch_size]), return_tensors="pt", padding=True).to(device)
            generated = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            for row in generated[:, batch["input_ids"].shape[1]:].tolist():
                if tokenizer.eos_token_id in row:
                    row = row[: row.index(tokenizer.eos_token_id)]
                text = tokenizer.decode(row, skip_special_tokens=True, clean_up_tokenization_spaces=False)
                outputs.append(text.split("\n")[0] if stop_at_newline else text)
    finally:
        tokenizer.padding_side = side
    return outputs
