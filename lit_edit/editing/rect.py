"""RECT: keep only the largest relative weight changes of an update (docs/methods.md §6).

For the update ΔW of one matrix W (W as it was before the step):

    δ_ij = |ΔW_ij / W_ij|,     ΔW̄_ij = ΔW_ij if δ_ij is among the top-k of δ over the whole matrix, else 0,

and W̄ = W + ΔW̄ (the kept entries are not rescaled). Exactly ``floor(k · numel)`` entries are kept (ties
broken by position). W_ij = 0 with ΔW_ij ≠ 0 gives δ = inf, always kept; ΔW_ij = 0 gives δ = 0.

The paper recommends k = 40 % (the default here); its reference code kept the top 20 %. The paper's random
baseline keeps a random subset instead; here it keeps exactly as many entries as the top-k rule (a seeded
uniform subset of that size, so that both selections change the same number of entries), where the paper drew
each entry independently (Bernoulli, keep probability k).
"""

from __future__ import annotations

import torch

SELECTIONS = ("relative", "random")


def kept_count(numel: int, keep_fraction: float) -> int:
    """How many entries a matrix of ``numel`` entries keeps: floor(k · numel)."""
    if not 0.0 < keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    return int(keep_fraction * numel)


def relative_change(delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """δ = |ΔW / W| in float32, with inf where W = 0 and ΔW ≠ 0, and 0 where ΔW = 0."""
    d, w = delta.float().abs(), weight.float().abs()
    ratio = d / w
    ratio = torch.where(w == 0, torch.where(d == 0, torch.zeros_like(d), torch.full_like(d, float("inf"))), ratio)
    return ratio


def rect_mask(delta: torch.Tensor, weight: torch.Tensor, keep_fraction: float = 0.4, selection: str = "relative",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """The boolean mask of the entries of ΔW that RECT keeps (exactly ``kept_count`` of them)."""
    if delta.shape != weight.shape:
        raise ValueError(f"ΔW {tuple(delta.shape)} and W {tuple(weight.shape)} differ in shape")
    if selection not in SELECTIONS:
        raise ValueError(f"unknown RECT selection {selection!r}; choose from {SELECTIONS}")
    n_keep = kept_count(delta.numel(), keep_fraction)
    if selection == "relative":
        scores = relative_change(delta, weight).flatten()
        chosen = torch.topk(scores, n_keep, sorted=False).indices
    else:
        chosen = torch.randperm(delta.numel(), generator=generator, device="cpu")[:n_keep].to(delta.device)
    mask = torch.zeros(delta.numel(), dtype=torch.bool, device=delta.device)
    mask[chosen] = True
    return mask.view_as(delta)


def rect_update(delta: torch.Tensor, weight: torch.Tensor, keep_fraction: float = 0.4, selection: str = "relative",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """ΔW̄: ΔW with every entry outside the RECT mask set to zero (same dtype and layout as ``delta``)."""
    return delta * rect_mask(delta, weight, keep_fraction, selection, generator)
