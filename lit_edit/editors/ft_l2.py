"""FT-L2 as an editor (the math and its hyperparameters: ``lit_edit.editing.ft_l2``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.ft_l2 import FtL2Hyperparams, apply_ft_l2
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import EditOutcome, value_targets
from lit_edit.editors.ft import FT
from lit_edit.models.architectures import Architecture


class FTL2(FT):
    """FT-L2: FT's fine-tuning of the FFN output projection (docs/methods.md §1), then each trained tensor's change
    scaled down to Frobenius norm ``max_delta_norm`` when it is larger. FT's setup, parameters and diagnostics,
    with the projected changes.

    Options: the fields of :class:`~lit_edit.editing.ft_l2.FtL2Hyperparams`.
    """

    name = "ft_l2"
    hyperparams_class = FtL2Hyperparams

    def __init__(self, **hyperparams):
        self.hp = FtL2Hyperparams(**hyperparams)

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        return self.outcome(requests, apply_ft_l2(model, tokenizer, arch, value_targets(requests), self.hp))
