"""Telling a sharded parameter (a ``DTensor``, split over the ranks by FSDP) from a whole one, and reading its whole
value. The layers below the models (``lit_edit.hooks``, the statistics) ask these questions without knowing how a
model was sharded; ``lit_edit.sharding`` does the sharding."""

from __future__ import annotations

import torch
from torch import nn


def _dtensor_type() -> type | None:
    """``DTensor``, or None in a torch build without distributed support (nothing can be sharded there)."""
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def is_dtensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is split over ranks."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is split over ranks (a ``DTensor``)."""
    return any(is_dtensor(p) for p in model.parameters())


def full_value(tensor: torch.Tensor) -> torch.Tensor:
    """The whole value of a parameter, gathered from the ranks when it is sharded (a collective then)."""
    return tensor.full_tensor() if is_dtensor(tensor) else tensor
