"""A torchmetrics Metric that averages per-request edit scores with sum states (DDP-safe with uneven shards)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class MeanScores(Metric):
    """Mean of each named score over the requests that have it (a None score is skipped, not counted)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, keys: Sequence[str], **kwargs):
        super().__init__(**kwargs)
        self.keys = list(keys)
        self.add_state("sums", default=torch.zeros(len(self.keys), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("counts", default=torch.zeros(len(self.keys), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: Sequence[dict[str, float | None]]) -> None:
        for row in scores:
            for j, key in enumerate(self.keys):
                value = row.get(key)
                if value is not None:
                    self.sums[j] += value
                    self.counts[j] += 1

    def compute(self) -> dict[str, float | None]:
        return {key: (float(self.sums[j] / self.counts[j]) if self.counts[j] > 0 else None)
                for j, key in enumerate(self.keys)}
