"""The subject-routing penalty (``lit_edit.data.corpus``): teach a small model to know a name at its last token
and to reach it only from there, the subject-enrichment pattern locate-and-edit methods rely on.

With attention probabilities P_l ∈ R^{B×H×T×T} in layer l:

- the **leak** of query q is m_l[b, h, q] = Σ_k P_l[b, h, q, k] · F_l[b, q, k], with F_0 the keys forbidden in the
  first layer and F_1 in the others; :func:`routing_leak` is its mean over layers, heads and the queries that
  have forbidden keys;
- the **composition gap** at a name's last token q is 1 − max_h Σ_k P_0[b, h, q, k] · G[b, q, k], with G its
  earlier tokens: some first-layer head should read the rest of the name there. :func:`composition_gap` is its
  mean over names.

The LM module adds ``routing_weight · (leak + gap)`` to the language-modelling loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def routing_leak(attentions: Sequence[torch.Tensor], forbidden: torch.Tensor) -> torch.Tensor:
    """The mean attention mass on forbidden keys; 0 when no query has any.

    Args:
        attentions: per layer, the probabilities ``[B, H, T, T]`` (``output_attentions=True``).
        forbidden: ``[B, 2, T, T]`` booleans: the first layer's forbidden keys, then the other layers'.
    """
    leaks = []
    for layer, probabilities in enumerate(attentions):
        keys = forbidden[:, 0 if layer == 0 else 1]
        queries = keys.any(-1)                                                     # [B, T]
        if queries.any():
            mass = (probabilities * keys[:, None].to(probabilities.dtype)).sum(-1)  # [B, H, T]
            leaks.append(mass.permute(0, 2, 1)[queries].mean())
    return torch.stack(leaks).mean() if leaks else attentions[0].new_zeros(())


def composition_gap(first_layer: torch.Tensor, compose: torch.Tensor) -> torch.Tensor:
    """Mean over names of 1 − (the largest first-layer head mass a name's last token puts on its earlier tokens).

    Args:
        first_layer: the first layer's probabilities ``[B, H, T, T]``.
        compose: ``[B, T, T]`` booleans: for a name's last token, its earlier tokens.
    """
    queries = compose.any(-1)
    if not queries.any():
        return first_layer.new_zeros(())
    mass = (first_layer * compose[:, None].to(first_layer.dtype)).sum(-1)          # [B, H, T]
    return (1 - mass.max(dim=1).values[queries]).mean()
