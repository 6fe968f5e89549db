"""The editors that remember earlier edits: D4S, COMEBA-HK (with and without hook layers) and AlphaEdit
(docs/methods.md §7–9). Each is MEMIT's layer loop with its own update rule and state; the math is in
``lit_edit.editing.{d4s, comeba, alphaedit}``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.alphaedit import AlphaEditHyperparams, apply_alphaedit, null_space_basis
from lit_edit.editing.comeba import ComebaHyperparams, apply_comeba
from lit_edit.editing.d4s import D4sHyperparams, D4sLayerState, apply_d4s
from lit_edit.editing.hook_layers import HookBank, gate_scores_by_group
from lit_edit.editing.requests import EditRequest
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors.base import (
    EditContext,
    EditorReport,
    EditOutcome,
    changes,
    snapshot,
    value_loss_problems,
    value_targets,
)
from lit_edit.editors.locate import MEMIT, value_diagnostics
from lit_edit.models.architectures import Architecture


def _layered(state: dict[int, dict], prefix: str = "layer") -> dict[str, torch.Tensor]:
    return {f"{prefix}{layer}.{key}": value for layer, entries in state.items() for key, value in entries.items()}


def _unlayered(state: dict[str, torch.Tensor], layers: Sequence[int], what: str) -> dict[int, dict]:
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


class _Accumulating(MEMIT):
    """MEMIT's setup (templates, statistics C) for the descendants; the state is built in :meth:`setup`."""

    accumulates = True

    def _check_ready(self, state) -> None:
        if state is None:
            raise RuntimeError(f"{self.name}.setup must run before the first edit (it builds the method's state)")

    def _second_moment_on(self, model, arch: Architecture, layer: int) -> PreparedMoment:
        return self._second_moments[layer].to(arch.edit_weight(model, layer).device)


class D4S(_Accumulating):
    """D4S: every step solves the batch least squares over all edits so far from running sums (docs/methods.md §7).

    Args:
        layers / preservation_weight / values / templates: as MEMIT.
        residual: ``recompute`` (per layer; default) or ``reference`` (the paper's once-computed residual,
            divided by L − p; see ``lit_edit/editing/d4s.py``).
        incremental: Woodbury-updated inverse (default) or a full solve every step (the reference).
        refactor_every: rebuild the inverse from the sums after this many steps.
        solver: how λC + ΣKKᵀ is solved when C is singular (``lit_edit/editing/solver.py``).
    """

    name = "d4s"

    def __init__(self, layers: Sequence[int] = (3, 4, 5, 6, 7, 8), preservation_weight: float = 15000.0,
                 values: ValueHyperparams | None = None, residual: str = "recompute", incremental: bool = True,
                 refactor_every: int = 100, templates_per_seed: int = 1, template_tokens: int | Sequence[int] = 10,
                 template_seed: int = 0, template_length_rule: str = "total", solver: SecondMomentSolver | None = None):
        super().__init__(layers, preservation_weight, values, templates_per_seed, template_tokens, template_seed,
                         template_length_rule, solver)
        self.hp = D4sHyperparams(tuple(layers), preservation_weight, self.hp.values, residual, incremental,
                                 refactor_every, solver=self.hp.solver)
        self._states: dict[int, D4sLayerState] | None = None
        self._w0: dict[int, torch.Tensor] = {}

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        super().setup(model, tokenizer, arch, context)
        self._w0 = {layer: arch.edit_weight(model, layer).detach().clone() for layer in self.hp.layers}
        self._states = {layer: D4sLayerState(self._second_moment_on(model, arch, layer),
                                             arch.to_math(self._w0[layer]).shape[0], self.hp, where=f"layer {layer}")
                        for layer in self.hp.layers}

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        self._check_ready(self._states)
        before = snapshot(model, self.parameter_names(model, arch))
        updates, values = apply_d4s(model, tokenizer, arch, value_targets(requests), self.hp, self.template_groups,
                                    self._w0, self._states)
        diagnostics = value_diagnostics(values)
        for update in updates:   # the paper's delta_nom: ‖Δ_l‖₁/numel of the change from W0
            diagnostics[f"delta_l1_per_numel/layer{update.layer}"] = float(update.delta.abs().mean())
        return EditOutcome(changes(model, before), diagnostics,
                           value_loss_problems(requests, values, self.hp.values.stop_loss))

    def state_dict(self) -> dict:
        self._check_ready(self._states)
        return _layered({layer: state.state_dict() for layer, state in self._states.items()})

    def load_state_dict(self, state: dict) -> None:
        self._check_ready(self._states)
        for layer, entries in _unlayered(state, self.hp.layers, "D4S").items():
            self._states[layer].load_state_dict(entries)


class COMEBA(_Accumulating):
    """COMEBA-HK: consecutive batch editing with accumulated keys, in hook layers gated per token (docs/methods.md §8).

    Args:
        layers / preservation_weight / values / templates: as MEMIT (paper: λ = 15000).
        alpha: α0, the gate's initial threshold (code default 2.2; the paper: between 2 and 3).
        dynamic_threshold: lower α after every step to the smallest max z of the batch's edit prompts (eq. 18).
        hooks: keep the edited weights in hook layers beside the frozen model (COMEBA-HK, default); false: the
            paper's ablation "w/o HK", the same update added to the model's weights.
        incremental / refactor_every: the Woodbury-updated inverse of C_accu.
        gate_statistics: ``real_tokens`` (default): the gate's z-scores over the real tokens; ``all_positions``:
            over every position, padding included, as the reference code (needs ``values.requests_per_pass: 1``
            to reproduce it; see ``docs/fidelity.md``).
        solver: how C_accu is inverted when C is singular (``lit_edit/editing/solver.py``).
    """

    name = "comeba"

    def __init__(self, layers: Sequence[int] = (3, 4, 5, 6, 7, 8), preservation_weight: float = 15000.0,
                 alpha: float = 2.2, dynamic_threshold: bool = True, hooks: bool = True,
                 values: ValueHyperparams | None = None, incremental: bool = True, refactor_every: int = 100,
                 templates_per_seed: int = 1, template_tokens: int | Sequence[int] = 10, template_seed: int = 0,
                 template_length_rule: str = "total", gate_statistics: str = "real_tokens",
                 solver: SecondMomentSolver | None = None):
        super().__init__(layers, preservation_weight, values, templates_per_seed, template_tokens, template_seed,
                         template_length_rule, solver)
        self.hp = ComebaHyperparams(tuple(layers), preservation_weight, alpha, dynamic_threshold, self.hp.values,
                                    incremental, refactor_every, gate_statistics, solver=self.hp.solver)
        self.hooks = hooks
        self.name = "comeba-hk" if hooks else "comeba-wohk"
        self._accumulated: dict[int, AccumulatedKeys] | None = None
        self.bank: HookBank | None = None

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        super().setup(model, tokenizer, arch, context)
        self._accumulated = {layer: AccumulatedKeys.from_moment(self._second_moment_on(model, arch, layer),
                                                                self.hp.preservation_weight, self.hp.solver,
                                                                self.hp.incremental, self.hp.refactor_every,
                                                                where=f"layer {layer}")
                             for layer in self.hp.layers}
        if self.hooks:
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
        self._check_ready(self._accumulated)
        before = self.effective_weights(model, arch)
        _, step = apply_comeba(model, tokenizer, arch, value_targets(requests), self.hp, self.template_groups,
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
        solver = super().report(model, tokenizer, arch, requests)
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
        self._check_ready(self._accumulated)
        state = _layered({layer: acc.state_dict() for layer, acc in self._accumulated.items()}, "accumulated.layer")
        if self.bank is not None:
            state |= {f"hooks.{key}": value for key, value in self.bank.state_dict().items()}
        return state

    def load_state_dict(self, state: dict) -> None:
        self._check_ready(self._accumulated)
        accumulated = {k.removeprefix("accumulated."): v for k, v in state.items() if k.startswith("accumulated.")}
        for layer, entries in _unlayered(accumulated, self.hp.layers, "COMEBA").items():
            self._accumulated[layer].load_state_dict(entries)
        hooks = {k.removeprefix("hooks."): v for k, v in state.items() if k.startswith("hooks.")}
        if (self.bank is None) != (not hooks):
            raise ValueError("the saved COMEBA state was made " + ("with" if hooks else "without")
                             + " hook layers, this run is configured " + ("without" if hooks else "with") + " them")
        if self.bank is not None:
            self.bank.load_state_dict(hooks)


def _median(values: list[float]) -> float | None:
    return float(torch.tensor(values).median()) if values else None


class AlphaEdit(_Accumulating):
    """AlphaEdit: MEMIT with the update projected onto the null space of C, remembering earlier batches' keys
    (docs/methods.md §9).

    Args:
        layers / values / templates: as MEMIT.
        nullspace_threshold: τ, eigenvalues of C below it span the preserved null space (paper: 2e-2).
        l2: the ridge term α (GPT-2 XL / GPT-J: 10, LLaMA-3-8B: 1).
        solver: how the reduced system is solved when it is singular (``lit_edit/editing/solver.py``).
    """

    name = "alphaedit"
    solves_with_second_moment = False  # C only gives the null space; the system is Uᵀ G U + αI

    def __init__(self, layers: Sequence[int] = (13, 14, 15, 16, 17), nullspace_threshold: float = 2e-2,
                 l2: float = 10.0, values: ValueHyperparams | None = None, templates_per_seed: int = 1,
                 template_tokens: int | Sequence[int] = 10, template_seed: int = 0, template_length_rule: str = "total",
                 solver: SecondMomentSolver | None = None):
        super().__init__(layers, 0.0, values, templates_per_seed, template_tokens, template_seed, template_length_rule,
                         solver)
        self.hp = AlphaEditHyperparams(tuple(layers), nullspace_threshold, l2, self.hp.values, solver=self.hp.solver)
        self._bases: dict[int, torch.Tensor] | None = None
        self._previous: dict[int, torch.Tensor] = {}

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        super().setup(model, tokenizer, arch, context)
        self._bases = {layer: null_space_basis(self._second_moment_on(model, arch, layer).float64(self.hp.solver),
                                               self.hp.nullspace_threshold, where=f"layer {layer}")
                       for layer in self.hp.layers}
        self._previous = {layer: torch.zeros(basis.shape[0], basis.shape[0], dtype=torch.float64,
                                             device=basis.device) for layer, basis in self._bases.items()}

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        self._check_ready(self._bases)
        before = snapshot(model, self.parameter_names(model, arch))
        _, values = apply_alphaedit(model, tokenizer, arch, value_targets(requests), self.hp, self.template_groups,
                                    self._bases, self._previous)
        diagnostics = value_diagnostics(values)
        diagnostics.update({f"null_space_dim/layer{layer}": float(b.shape[1]) for layer, b in self._bases.items()})
        return EditOutcome(changes(model, before), diagnostics,
                           value_loss_problems(requests, values, self.hp.values.stop_loss))

    def state_dict(self) -> dict:
        self._check_ready(self._bases)
        return {f"layer{layer}.previous_keys": value for layer, value in self._previous.items()}

    def load_state_dict(self, state: dict) -> None:
        self._check_ready(self._bases)
        for layer, entries in _unlayered(state, self.hp.layers, "AlphaEdit").items():
            if entries["previous_keys"].shape != self._previous[layer].shape:
                raise ValueError(f"layer {layer}: the saved AlphaEdit keys have shape "
                                 f"{tuple(entries['previous_keys'].shape)}, this model's {tuple(self._previous[layer].shape)}")
            self._previous[layer] = entries["previous_keys"].to(self._previous[layer]).clone()
