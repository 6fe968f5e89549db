"""Batched greedy generation: the new tokens of each prompt, cut at EOS, read as plain text and as the reference
harness read them."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from lit_edit.models.kv_cache import cache_keyword, new_cache

_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    """The decode clean-up of the reference's transformers (4.30; ``docs/tasks.md`` §1): `` ,`` → ``,``, `` 's`` →
    ``'s``, ... Newer transformers skip it for BPE tokenizers, so it is applied here explicitly, to the text the
    ``paper`` scorers read (:attr:`Generation.reference_text`)."""
    for before, after in _CLEAN_UP:
        text = text.replace(before, after)
    return text


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


def _cut_at_stop(tokenizer: PreTrainedTokenizerBase, new: list[int], stop: str) -> list[int]:
    """The shortest prefix of ``new`` whose text contains ``stop`` (all of ``new`` when none does)."""
    for end in range(1, len(new) + 1):
        if stop in tokenizer.decode(new[:end], skip_special_tokens=True):
            return new[:end]
    return new


@torch.no_grad()
def greedy_decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, eos_id: int,
                  pad_id: int, is_done: Callable[[int, list[int]], bool] | None = None) -> torch.Tensor:
    """Greedy decoding of a left-padded batch with the KV cache; returns the new tokens, ``(rows, ≤ max_new_tokens)``.

    The same tokens as ``model.generate(do_sample=False)`` — positions count only the attended tokens, a finished
    row gets ``pad_id`` from then on, the batch ends when every row has finished — without its per-step overhead,
    and with logits computed for the last position only. A row finishes at ``eos_id`` or when ``is_done(row,
    its new tokens so far)`` says so (stop strings). One new token is one forward pass without a cache."""
    rows = input_ids.shape[0]
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    parameters = inspect.signature(model.forward).parameters
    last_only = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
    if max_new_tokens <= 1:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                    **last_only)
        return out.logits[:, -1].argmax(-1)[:, None][:, :max_new_tokens]
    cache = {cache_keyword(model): new_cache(model)}
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                **cache, **last_only)
    finished = torch.zeros(rows, dtype=torch.bool, device=input_ids.device)
    new_tokens: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        token = out.logits[:, -1].argmax(-1).masked_fill(finished, pad_id)
        new_tokens.append(token)
        finished |= token == eos_id
        if is_done is not None:
            so_far = torch.stack(new_tokens, 1).tolist()
            for row in (~finished).nonzero().flatten().tolist():
                finished[row] = is_done(row, so_far[row])
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((rows, 1))], dim=1)
        position_ids = position_ids[:, -1:] + 1
        out = model(input_ids=token[:, None], attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=True, **cache)
    return torch.stack(new_tokens, 1) if new_tokens else input_ids.new_zeros((rows, 0))


CPU_TOKEN_BUDGET = 1024
"""Tokens (prompt + new, padding included) in one generation batch on a CPU: past a few hundred rows' worth of
work a bigger batch saves no calls worth having and leaves the caches."""

ACCELERATOR_TOKEN_BUDGET = 16384
"""Tokens in one generation batch on an accelerator, where wide batches are what fills the device."""


def default_token_budget(device: torch.device) -> int:
    """The token budget of a generation batch on ``device`` (:data:`CPU_TOKEN_BUDGET` or
    :data:`ACCELERATOR_TOKEN_BUDGET`)."""
    return CPU_TOKEN_BUDGET if torch.device(device).type == "cpu" else ACCELERATOR_TOKEN_BUDGET


MAX_PADDING = 0.125
"""The largest share of a batch's prompt tokens that may be padding: a longer prompt starts a new batch."""


def plan_batches(lengths: Sequence[int], max_new_tokens: int, token_budget: int = CPU_TOKEN_BUDGET,
                 max_rows: int | None = None, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices of ``lengths`` (prompt lengths) grouped into generation batches: shortest first (ties in input
    order), each batch as many prompts as ``rows × (longest prompt + max_new_tokens) ≤ token_budget`` allows
    (at least one, at most ``max_rows``), and no more padding than ``max_padding`` of its prompt tokens."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    batch: list[int] = []
    real = 0
    for i in order:
        rows, width = len(batch) + 1, lengths[i]           # sorted: the newcomer is the longest
        fits = (rows * (width + max_new_tokens) <= token_budget and (max_rows is None or rows <= max_rows)
                and rows * width - (real + width) <= max_padding * rows * width)
        if batch and not fits:
            batches.append(batch)
            batch, real = [], 0
        batch.append(i)
        real += lengths[i]
    return batches + [batch] if batch else batches


@torch.no_grad()
def generate_greedy(model, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], max_new_tokens: int,
                    batch_size: int | None = 32, stop: str | None = None, token_budget: int | None = None
                    ) -> list[Generation]:
    """Greedy-decode ``max_new_tokens`` after each prompt (left padding, attention mask, KV cache;
    :func:`greedy_decode`) in batches of similar length sized by tokens (:func:`plan_batches`; ``batch_size``
    caps the prompts per batch, ``token_budget`` their tokens, by default :func:`default_token_budget`): a row
    stops at EOS, or once its new text contains ``stop``. With ``stop`` the continuation is cut before it;
    without, the text is what full-length decoding gives. Results come back in the order of ``prompts``."""
    device = next(model.parameters()).device
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[Generation | None] = [None] * len(prompts)
    window = len(stop) + 8 if stop else 0   # tokens enough to contain the stop string however it is split

    def is_done(row: int, new: list[int]) -> bool:
        return stop in tokenizer.decode(new[-window:], skip_special_tokens=True)

    budget = token_budget or default_token_budget(device)
    for rows in plan_batches([len(ids) for ids in encoded], max_new_tokens, budget, batch_size):
        width = max(len(encoded[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
            mask[r, width - len(encoded[i]):] = 1
        generated = greedy_decode(model, input_ids.to(device), mask.to(device), max_new_tokens,
                                  tokenizer.eos_token_id, pad_id, is_done if stop else None).tolist()
        for r, i in enumerate(rows):
            new = generated[r]
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
