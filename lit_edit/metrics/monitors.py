"""Collapse monitors, cheap enough for every edit step (docs/evaluation.md "Collapse monitors").

- per edited matrix: ‖W‖₁ / numel (the D4S figure), ‖W − W₀‖_F (drift from the unedited weights);
- per step: ‖ΔW‖_F of the update;
- perplexity of the model on a fixed small text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from lit_edit.scoring import pad_right, token_nll


@torch.no_grad()
def weight_monitors(current: Mapping[str, torch.Tensor], originals: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``l1_per_numel/<name>`` and ``drift_fro/<name>`` for every weight in ``originals`` (``current``: the
    effective weights now, by the same names)."""
    out = {}
    for name, w0 in originals.items():
        w = current[name].detach()
        out[f"l1_per_numel/{name}"] = float(w.double().abs().sum() / w.numel())
        out[f"drift_fro/{name}"] = float((w.double() - w0.double()).norm())
    return out


def update_norms(deltas: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``update_fro/<name>``: ‖ΔW‖_F of one step's update."""
    return {f"update_fro/{name}": float(delta.double().norm()) for name, delta in deltas.items()}


class FixedTextPerplexity:
    """Perplexity on a fixed list of documents, tokenised once."""

    def __init__(self, tokenizer, texts: Sequence[str], max_length: int = 128, batch_size: int = 32):
        if not texts:
            raise ValueError("the perplexity monitor needs at least one document")
        self.batches = []
        encoded = [ids[:max_length] for ids in tokenizer(list(texts))["input_ids"]]
        for start in range(0, len(encoded), batch_size):
            self.batches.append(pad_right(encoded[start:start + batch_size], tokenizer.pad_token_id))

    def __call__(self, model) -> float:
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for input_ids, mask in self.batches:
            nll, n = token_nll(model, input_ids.to(device), mask.to(device))
            total, count = total + nll, count + n
        return math.exp(total / max(count, 1))
