"""The ``counterfact`` metric family: sampled generations from each request's CounterFact generation prompts,
scored for fluency and consistency (docs/evaluation.md §13).

As CounterFact's evaluation does, each prompt is continued by top-k sampling (k = 5) until prompt + continuation is
:data:`GENERATION_LENGTH` tokens, without stopping at EOS, and the scored text is the prompt and its continuation.
Sampling draws from one generator seeded with :data:`SAMPLING_SEED`, so the same model and requests give the same
texts, before and after an edit.
"""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Sequence
from functools import lru_cache

import torch

from lit_edit.editing.requests import EditRequest
from lit_edit.metrics.counterfact import CounterFactReferences, consistency, fluency, read_counterfact_references
from lit_edit.models.kv_cache import cache_keyword, new_cache
from lit_edit.paths import resolve_path

GENERATION_LENGTH = 100
"""Tokens of prompt + continuation of each generation."""
TOP_K = 5
"""Sampling draws from the k most probable next tokens, renormalised."""
SAMPLING_SEED = 0
REFERENCE_FOLDER = "data/counterfact"
"""Where ``attribute_snippets.json``, ``idf.npy`` and ``tfidf_vocab.json`` are read (the data root's
``counterfact/``, where ``lit-edit-tools fetch_data counterfact`` writes them)."""
METRIC_KEYS = ("counterfact/fluency", "counterfact/consistency")


@torch.no_grad()
def sample_top_k(model, input_ids: torch.Tensor, new_tokens: int, top_k: int, generator: torch.Generator
                 ) -> torch.Tensor:
    """``new_tokens`` tokens after each row of an unpadded batch ``input_ids`` ``(rows, length)``, each drawn from
    the softmax restricted to its ``top_k`` most probable tokens (KV cache); returns ``(rows, new_tokens)``."""
    drawn: list[torch.Tensor] = []
    mask = torch.ones_like(input_ids)
    cache = {cache_keyword(model): new_cache(model)}
    out = model(input_ids=input_ids, attention_mask=mask, use_cache=True, **cache)
    for step in range(new_tokens):
        top = out.logits[:, -1].float().softmax(-1).topk(top_k, dim=-1)
        choice = torch.multinomial(top.values / top.values.sum(-1, keepdim=True), 1, generator=generator)
        drawn.append(top.indices.gather(1, choice))
        if step < new_tokens - 1:
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = model(input_ids=drawn[-1], attention_mask=mask, use_cache=True, **cache)
    return torch.cat(drawn, 1) if drawn else input_ids.new_zeros((input_ids.shape[0], 0))


def sample_generations(model, tokenizer, prompts: Sequence[str], length: int = GENERATION_LENGTH, top_k: int = TOP_K,
                       seed: int = SAMPLING_SEED, batch_size: int = 32) -> list[str]:
    """Prompt + sampled continuation (:func:`sample_top_k`) of each prompt, ``length`` tokens in all, decoded
    without special tokens, NFKD-normalised, blank lines made spaces; in the order of ``prompts``. Prompts of one
    token length are batched together, so no row is padded."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_length.setdefault(len(ids), []).append(i)
    texts: list[str] = [""] * len(prompts)
    for width in sorted(by_length):
        rows = by_length[width]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            ids = torch.tensor([encoded[i] for i in chunk], device=device)
            new = sample_top_k(model, ids, max(length - width, 0), top_k, generator)
            for i, row in zip(chunk, torch.cat([ids, new], 1).tolist()):
                text = tokenizer.decode(row, skip_special_tokens=True)
                texts[i] = unicodedata.normalize("NFKD", text).replace("\n\n", " ")
    return texts


@lru_cache(maxsize=4)
def _references(folder: str) -> CounterFactReferences | None:
    references = read_counterfact_references(folder)
    if references is None:
        warnings.warn(f"{folder} lacks attribute_snippets.json, idf.npy or tfidf_vocab.json, so "
                      "counterfact/consistency is not scored (fluency is); `lit-edit-tools fetch_data counterfact` "
                      "downloads them", stacklevel=2)
    return references


def score_counterfact_generation(model, tokenizer, requests: Sequence[EditRequest],
                                 results: list[dict[str, float | None]], batch_size: int = 32,
                                 references: CounterFactReferences | None = None) -> None:
    """Fill ``counterfact/fluency`` and ``counterfact/consistency`` of ``results`` (one dict per request).

    Fluency needs generation prompts; consistency also needs reference texts for (relation, new-object id) in
    ``references`` (default: read from :data:`REFERENCE_FOLDER`). A request without them keeps None."""
    prompts = [(i, p) for i, r in enumerate(requests) for p in r.generation_prompts]
    if not prompts:
        return
    if references is None:
        references = _references(str(resolve_path(REFERENCE_FOLDER)))
    texts = sample_generations(model, tokenizer, [p for _, p in prompts], batch_size=batch_size)
    by_request: dict[int, list[str]] = {}
    for (i, _), text in zip(prompts, texts):
        by_request.setdefault(i, []).append(text)
    for i, r in enumerate(requests):
        generated = by_request.get(i, [])
        results[i]["counterfact/fluency"] = fluency(generated)
        snippets = () if references is None else references.snippets.get((r.relation, r.target_new_id), ())
        if snippets:
            results[i]["counterfact/consistency"] = consistency(generated, snippets, references.stats)
