"""How a method's hyperparameters refuse a setting that cannot work: one message naming the option as a config
names it (``model.editor.<option>``), raised when the hyperparameters are built (``__post_init__``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.errors import UserError


class EditorOptionError(UserError, ValueError):
    """An editor option that cannot work, named as a config names it (``model.editor.<option>``)."""


def checked_layers(layers: Sequence[int], option: str = "layers") -> tuple[int, ...]:
    """``layers`` as a tuple, refused when empty, repeated, or not layer indices (whole numbers >= 0)."""
    layers = tuple(layers)
    if not layers:
        raise EditorOptionError(f"model.editor.{option} is empty; name at least one layer to edit")
    bad = [layer for layer in layers if isinstance(layer, bool) or not isinstance(layer, int) or layer < 0]
    if bad:
        raise EditorOptionError(f"model.editor.{option}: {bad} are not layer indices (whole numbers >= 0)")
    repeated = sorted({layer for layer in layers if layers.count(layer) > 1})
    if repeated:
        raise EditorOptionError(f"model.editor.{option} names layer(s) {repeated} more than once: {list(layers)}; "
                                "name each layer once")
    return layers
