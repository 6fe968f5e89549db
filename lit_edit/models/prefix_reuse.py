"""Re-running each row from one position on, with the keys and values of its earlier positions kept from one pass.

Under causal attention a change made at position ``t`` of a row (value optimisation's δ at the subject's last token,
docs/methods.md §0.6) cannot reach that row's positions before ``t``: in every layer their keys and values are those
of the unchanged pass. A step then needs only positions ``t, t+1, …`` of each row as queries, attending to the
recorded keys and values of positions ``< t`` and to its own.

    reuse = PrefixReuse.record(model, input_ids, attention_mask, start)       # the full pass, once, no gradients
    hidden = model.base_model(**reuse.suffix_inputs(model))                  # rows × S: positions start_r + j

Column ``j`` of the suffix is position ``start_r + j`` of row ``r``; ``valid`` marks the columns that are real
tokens (the rest is padding, attended by nothing). The rows keep their own starts: the recorded keys and values are
cut at the longest start ``P`` and each row's columns ``≥ start_r`` of that part are masked out, since they are
recomputed in the suffix.

The result equals the full pass up to floating-point rounding, not bit for bit (the attention and the projections
run on other shapes: about 1e-6 relative in float32). It needs a model that takes a ready-made 4-D attention mask
and position ids with a cache: :func:`prefix_reuse_supported` says which.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from lit_edit.models.kv_cache import cache_keyword, new_cache

EXACT_ATTENTION = ("eager", "sdpa")
"""Attention implementations that take an arbitrary 4-D additive mask (flash attention does not)."""


def prefix_reuse_supported(model) -> bool:
    """Whether :class:`PrefixReuse` gives ``model``'s pass: attention that takes a 4-D mask, every layer's cache a
    plain growing one (no sliding window), and not in training mode (dropout draws new masks at every step)."""
    config = getattr(model, "config", None)
    if config is None or model.training or getattr(config, "_attn_implementation", None) not in EXACT_ATTENTION:
        return False
    return not any(getattr(new_cache(model), "is_sliding", None) or ())


@dataclass
class PrefixReuse:
    """The suffix inputs of a right-padded batch and the recorded keys and values of the positions before each row's
    start (see the module docstring)."""

    input_ids: torch.Tensor        # [rows, S] the tokens from each row's start (padding past its end)
    position_ids: torch.Tensor     # [rows, S] their positions in the full row
    attention_mask: torch.Tensor   # [rows, 1, S, P + S] additive: 0 where attended, the dtype's minimum elsewhere
    valid: torch.Tensor            # [rows, S] True where the column is a token of the row
    key_values: list[tuple[torch.Tensor, torch.Tensor]]   # per layer: keys and values of positions < P

    @classmethod
    def record(cls, model, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: torch.Tensor,
               pad_id: int = 0) -> PrefixReuse:
        """Run ``model`` once on the full right-padded rows and keep what the suffix passes need; ``start[r]`` is
        the first position of row ``r`` to re-run (at most its last token)."""
        cache = new_cache(model)
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, **{cache_keyword(model): cache})
        lengths = attention_mask.sum(1)
        if bool((start < 0).any() or (start >= lengths).any()):
            raise ValueError(f"every start must be a token of its row: starts {start.tolist()}, "
                             f"lengths {lengths.tolist()}")
        prefix = int(start.max())
        key_values = [(layer.keys[:, :, :prefix], layer.values[:, :, :prefix]) for layer in cache.layers]
        span = int((lengths - start).max())
        columns = torch.arange(span, device=input_ids.device)
        positions = start[:, None] + columns[None]
        valid = positions < lengths[:, None]
        positions = torch.where(valid, positions, (lengths - 1)[:, None])    # padding columns: any real position
        suffix_ids = torch.where(valid, input_ids.gather(1, positions), pad_id)
        # a query column j sees the row's recorded positions < start and the suffix columns ≤ j that are tokens
        sees_prefix = torch.arange(prefix, device=input_ids.device)[None, None, :] < start[:, None, None]
        sees_suffix = (columns[None, None, :] <= columns[None, :, None]) & valid[:, None, :]
        sees = torch.cat([sees_prefix.expand(-1, span, -1), sees_suffix], dim=2)
        sees |= ~valid[:, :, None] & (torch.arange(prefix + span, device=input_ids.device) == prefix)[None, None]
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(sees.shape, dtype=dtype, device=input_ids.device)
        mask.masked_fill_(~sees, torch.finfo(dtype).min)
        return cls(suffix_ids, positions, mask[:, None], valid, key_values)

    def cache(self, model) -> DynamicCache:
        """A cache holding the recorded keys and values only (each suffix pass appends its own to a fresh one)."""
        cache = new_cache(model)
        for layer, (keys, values) in enumerate(self.key_values):
            cache.update(keys, values, layer)
        return cache

    def suffix_inputs(self, model) -> dict:
        """The keyword arguments of ``model`` (or its base model) for one pass over the suffix columns."""
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "position_ids": self.position_ids, "use_cache": True, cache_keyword(model): self.cache(model)}
