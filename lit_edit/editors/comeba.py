"""COMEBA-HK as an editor, with and without hook layers (docs/methods.md §8; the math and its hyperparameters:
``lit_edit.editing.comeba``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.comeba import ComebaHyperparams, apply_comeba
from lit_edit.editing.hook_layers import HookBank, gate_scores_by_group
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import (
    EditContext,
    EditorReport,
    EditOutcome,
    value_loss_problems,
    value_targets,
)
from lit_edit.editors.layer_state import layered, require_setup, unlayered
from lit_edit.editors.locate_context import LayerLoopEditor, value_diagnostics
from lit_edit.models.architectures import Architecture


class COMEBA(LayerLoopEditor):
    """COMEBA-HK: consecutive batch editing with accumulated keys, in hook layers gated per token (docs/methods.md §8).

    Options: the fields of :class:`~lit_edit.editing.comeba.ComebaHyperparams`; ``hooks: false`` is the paper's
    ablation (the editor's name is then ``comeba-wohk``).
    """

    name = "comeba"
    accumulates = True
    hyperparams_class = ComebaHyperparams

    def __init__(self, **hyperparams):
        super().__init__(ComebaHyperparams(**hyperparams))
        self.name = "comeba-hk" if self.hp.hooks else "comeba-wohk"
        self._accumulated: dict[int, AccumulatedKeys] | None = None
        self.bank: HookBank | None = None

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        self._context.setup(model, tokenizer, arch, context, self.hp.layers, self.hp.solver)
        self._accumulated = {layer: AccumulatedKeys.from_moment(self._context.second_moment_on(model, arch, layer),
                                                                self.hp.preservation_weight, self.hp.solver,
                                                                self.hp.incremental, self.hp.refactor_every,
                                                                where=f"layer {layer}")
                             for layer in self.hp.layers}
        if self.hp.hooks:
            self.bank = HookBank(model, arch, self.hp.layers, self.hp.alpha, self.hp.gate_statistics).install()
            self.bank.set_mode("validated")

    def effective_weights(self, model, arch: Architecture) -> dict[str, torch.Tensor]:
        if self.bank is None:
            return super().effective_weights(model, arch)
        return {f"{hook.module_name}.weight": (arch.edit_weight(model, layer).detach().float()
                                               + arch.from_math(hook.delta)).clone()
                for layer, hook in self.bank.layers.items()}

    def replace_weights(self, model, arch: Architecture, weights: dict[str, torch.Tensor]) -> None:
        if self.bank is None:
            return super().replace_weights(model, arch, weights)
        for layer, hook in self.bank.layers.items():
            name = f"{hook.module_name}.weight"
            hook.set_delta(arch.to_math(weights[name].float() - arch.edit_weight(model, layer).detach().float()))

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        require_setup(self._accumulated, self.name)
        before = self.effective_weights(model, arch)
        _, step = apply_comeba(model, tokenizer, arch, value_targets(requests), self.hp, self._context.template_groups,
                               self._accumulated, self.bank)
        after = self.effective_weights(model, arch)
        diagnostics = value_diagnostics(step.values)
        diagnostics.update({f"alpha/layer{layer}": alpha for layer, alpha in step.thresholds.items()})
        diagnostics.update({f"gate_missed/layer{layer}": float(n) for layer, n in step.missed.items()})
        if self.bank is not None:
            diagnostics["hook_bytes"] = float(self.bank.nbytes)
        return EditOutcome({name: after[name] - before[name] for name in after}, diagnostics,
                           value_loss_problems(requests, step.values, self.hp.values.stop_loss))

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        """Where the gate fires: per layer, the max z of the edit prompts, their rephrasings and unrelated prompts
        (the locality prompts that name no edited subject), the share of each at or above α, and the median
        ‖ΔW k‖ at each prompt's max-z token (how much the hook changes there when it fires). The per-prompt max z
        go to their own file, ``gate_max_z.json``."""
        solver = self._context.solver_report(self.hp.solver)
        if self.bank is None or not requests:
            return solver
        subjects = {r.subject for r in requests}
        groups = {"edited": [r.prompt.format(r.subject) for r in requests],
                  "rephrased": [p for r in requests for p in r.rephrase_prompts],
                  "unrelated": [probe.prompt for r in requests for probe in r.locality
                                if not any(s in probe.prompt for s in subjects)]}
        scores, differences = gate_scores_by_group(self.bank, tokenizer, groups)
        layers = {}
        for layer, by_group in scores.items():
            alpha = self.bank.layers[layer].alpha
            layers[layer] = {"alpha": alpha, **{group: {
                "prompts": len(values),
                "fire_rate": sum(v >= alpha for v in values) / len(values) if values else None,
                "max_z_median": _median(values),
                "difference_at_max_z_median": _median(differences[layer][group])} for group, values
                in by_group.items()}}
        return EditorReport({"gate": layers, "hook_bytes": self.bank.nbytes, **(solver.summary if solver else {})},
                            {"gate_max_z": {layer: by_group for layer, by_group in scores.items()}})

    def plot_report(self, report: EditorReport, plots_dir: Path) -> None:
        """``gate_zscores.png``: per hooked layer, the histograms of the prompts' max z and the threshold α."""
        from lit_edit.plots import plot_gate_scores  # matplotlib only where a plot is drawn

        if "gate" in report.summary and "gate_max_z" in report.files:
            plot_gate_scores(report.files["gate_max_z"], {k: v["alpha"] for k, v in report.summary["gate"].items()},
                             plots_dir / "gate_zscores.png")

    def hook_bank(self) -> HookBank | None:
        return self.bank

    def state_dict(self) -> dict:
        require_setup(self._accumulated, self.name)
        state = layered({layer: acc.state_dict() for layer, acc in self._accumulated.items()}, "accumulated.layer")
        if self.bank is not None:
            state |= {f"hooks.{key}": value for key, value in self.bank.state_dict().items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        require_setup(self._accumulated, self.name)
        accumulated = {k.removeprefix("accumulated."): v for k, v in state.items() if k.startswith("accumulated.")}
        for layer, entries in unlayered(accumulated, self.hp.layers, "COMEBA").items():
            self._accumulated[layer].load_state_dict(entries)
        hooks = {k.removeprefix("hooks."): v for k, v in state.items() if k.startswith("hooks.")}
        if (self.bank is None) != (not hooks):
            raise ValueError("the saved COMEBA state was made " + ("with" if hooks else "without")
                             + " hook layers, this run is configured " + ("without" if hooks else "with") + " them")
        if self.bank is not None:
            self.bank.load_state_dict(hooks)


def _median(values: list[float]) -> float | None:
    return float(torch.tensor(values).median()) if values else None
