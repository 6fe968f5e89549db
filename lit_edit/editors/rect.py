"""RECT as a wrapper around any editor (docs/methods.md §6; the math in ``lit_edit/editing/rect.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lit_edit.editing.hook_layers import HookBank
from lit_edit.editing.rect import rect_update
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import EditContext, Editor, EditorReport, EditOutcome
from lit_edit.models.architectures import Architecture


class RECT(Editor):
    """Run ``editor``'s step, then keep only the top-k of each edited matrix's change by |ΔW/W| (W as it was
    before the step) and drop the rest. Works on every editor through its effective weights (the parameters,
    or COMEBA-HK's hook layers); for D4S, which re-solves from W0 at every step, it sparsifies each step's
    change of the model.

    Args:
        editor: the method whose updates are regularised.
        keep_fraction: k (the paper recommends 0.4, the default; its reference code used 0.2).
        selection: ``relative`` (RECT) or ``random`` (the paper's baseline: a seeded random subset of the same size).
        seed: for ``random``.
    """

    name = "rect"

    def __init__(self, editor: Editor, keep_fraction: float = 0.4, selection: str = "relative", seed: int = 0):
        self.editor, self.keep_fraction, self.selection, self.seed = editor, keep_fraction, selection, seed
        self.name = f"{editor.name}+rect" + ("-random" if selection == "random" else "")
        self.accumulates = editor.accumulates
        self._generator = torch.Generator().manual_seed(seed)
        rect_update(torch.ones(1), torch.ones(1), keep_fraction, selection)   # validate the options now

    def check_fits(self, model, arch: Architecture) -> None:
        self.editor.check_fits(model, arch)

    def prompt_prefix_tokens(self, model, tokenizer) -> int:
        return self.editor.prompt_prefix_tokens(model, tokenizer)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        self.editor.setup(model, tokenizer, arch, context)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return self.editor.parameter_names(model, arch)

    def effective_weights(self, model, arch: Architecture) -> dict[str, torch.Tensor]:
        return self.editor.effective_weights(model, arch)

    def replace_weights(self, model, arch: Architecture, weights: dict[str, torch.Tensor]) -> None:
        self.editor.replace_weights(model, arch, weights)

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        before = self.editor.effective_weights(model, arch)
        outcome = self.editor.edit(model, tokenizer, arch, requests)
        after = self.editor.effective_weights(model, arch)
        kept, deltas = {}, {}
        for name, old in before.items():
            deltas[name] = rect_update(after[name] - old, old, self.keep_fraction, self.selection, self._generator)
            kept[name] = old + deltas[name]
        self.editor.replace_weights(model, arch, kept)
        changed = sum(int((d != 0).sum()) for d in deltas.values())
        total = sum(d.numel() for d in deltas.values())
        return EditOutcome(deltas, {**outcome.diagnostics, "rect_changed_fraction": changed / total},
                           outcome.loss_problems)

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        return self.editor.report(model, tokenizer, arch, requests)

    def plot_report(self, report: EditorReport, plots_dir: Path) -> None:
        self.editor.plot_report(report, plots_dir)

    def hook_bank(self) -> HookBank | None:
        return self.editor.hook_bank()

    def hyperparameters(self) -> dict:
        return {"editor": {"name": self.editor.name, **self.editor.hyperparameters()},
                "keep_fraction": self.keep_fraction, "selection": self.selection, "seed": self.seed}

    def state_dict(self) -> dict:
        return {**{f"editor.{k}": v for k, v in self.editor.state_dict().items()},
                "rect.generator": self._generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.editor.load_state_dict({k.removeprefix("editor."): v for k, v in state.items() if k.startswith("editor.")})
        if "rect.generator" in state:
            self._generator.set_state(state["rect.generator"])
