"""The per-layer state of the editors that remember earlier edits (D4S, COMEBA-HK, AlphaEdit), as flat
``state_dict`` keys (``layer<l>.<entry>``) and back."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def require_setup(state, editor: str) -> None:
    """Refuse an edit or a state transfer before the editor's setup built its state."""
    if state is None:
        raise RuntimeError(f"{editor}.setup must run before the first edit (it builds the method's state)")


def layered(state: dict[int, dict], prefix: str = "layer") -> dict[str, torch.Tensor]:
    """``{layer: {entry: tensor}}`` as ``{"<prefix><layer>.<entry>": tensor}``."""
    return {f"{prefix}{layer}.{key}": value for layer, entries in state.items() for key, value in entries.items()}


def unlayered(state: dict[str, torch.Tensor], layers: Sequence[int], what: str) -> dict[int, dict]:
    """The inverse of :func:`layered` (prefix ``layer``), refusing a state of other layers than ``layers``."""
    out = {layer: {} for layer in layers}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        layer = int(head.removeprefix("layer")) if head.startswith("layer") else None
        if layer not in out:
            raise ValueError(f"the saved {what} state holds layer {head!r}, this run edits layers {list(layers)}")
        out[layer][rest] = value
    missing = [layer for layer, entries in out.items() if not entries]
    if missing:
        raise ValueError(f"the saved {what} state has no entries for layers {missing} (another config?)")
    return out
