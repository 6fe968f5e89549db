"""The editor interface: an editor holds a method's hyperparameters and the state it carries across edits.

The math lives in ``lit_edit.editing``; an editor only prepares what its method needs (statistics, context
templates) and calls it. ``edit`` changes the model in place and reports what it changed, so that the loop can
roll back, monitor norms and apply transforms without knowing the method.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from lit_edit.distributed import SINGLE, Ranks
from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.requests import EditRequest
from lit_edit.editing.values import ValueResult, ValueTarget, loss_trend
from lit_edit.models.architectures import Architecture
from lit_edit.stats import StatisticsConfig

if TYPE_CHECKING:
    from lit_edit.editing.hook_layers import HookBank


@dataclass
class EditContext:
    """What an editor may need besides the model: its name (statistics cache key), where statistics come from,
    and the processes of the run (which share the statistics pass; every rank makes every edit)."""

    model_name: str
    statistics: StatisticsConfig = field(default_factory=StatisticsConfig)
    progress: bool = True
    ranks: Ranks = SINGLE


@dataclass
class LossProblem:
    """Requests whose optimisation diverged or stalled (:func:`lit_edit.editing.values.loss_trend`): their record
    ids, the optimisation (``value optimisation``, ``FT``), the verdict, the loss at its first and last step, and the
    steps taken (None when the method does not count them)."""

    records: str
    stage: str
    verdict: str
    first: float
    last: float
    steps: int | None = None


@dataclass
class EditOutcome:
    """What one edit step did: the change of every edited parameter (parameter layout), scalar diagnostics and the
    requests whose optimisation diverged or stalled."""

    deltas: dict[str, torch.Tensor]
    diagnostics: dict[str, float] = field(default_factory=dict)
    loss_problems: list[LossProblem] = field(default_factory=list)


@dataclass
class EditorReport:
    """What an editor asks the run to record after its last edit (:meth:`Editor.report`).

    Attributes:
        summary: its findings, written into ``metrics.json`` as ``editor_report``.
        files: larger findings, each written into the run folder as ``<name>.json`` (e.g. per-prompt numbers).
    """

    summary: dict
    files: dict[str, object] = field(default_factory=dict)


class Editor:
    """Base class. Subclasses set ``name`` and implement :meth:`parameter_names` and :meth:`edit`.

    ``accumulates``: the method carries edits across steps in its own state (D4S, COMEBA-HK, AlphaEdit: running
    sums, earlier keys, hook layers), so restoring the weights after a step (rollback) does not undo it alone; the
    editing module also loads back :meth:`state_snapshot` of the state :meth:`setup` built.
    """

    name = "editor"
    accumulates = False

    def check_fits(self, model, arch: Architecture) -> None:
        """Refuse options that do not fit ``model`` (a layer past its last), as soon as the model is loaded; the
        default has none."""

    def prompt_prefix_tokens(self, model, tokenizer) -> int:
        """Positions the method puts before an edit prompt (context templates), so that the requests' lengths can
        be checked before the first edit; the default puts none."""
        return 0

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        """Prepare once before the first edit (statistics, templates); the default needs nothing."""

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        """Names of every parameter :meth:`edit` may change (what rollback snapshots)."""
        raise NotImplementedError

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        raise NotImplementedError

    def effective_weights(self, model, arch: Architecture) -> dict[str, torch.Tensor]:
        """The weights the edited model computes with, by parameter name, in the stored layout (copies): the
        parameters themselves, or for hook layers the original plus the hook's change."""
        return snapshot(model, self.parameter_names(model, arch))

    def replace_weights(self, model, arch: Architecture, weights: dict[str, torch.Tensor]) -> None:
        """Set effective weights (what :meth:`effective_weights` returns), e.g. after a transform such as RECT."""
        with torch.no_grad():
            for name, value in weights.items():
                model.get_parameter(name).copy_(value)

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        """Method-specific findings after the last edit (:class:`EditorReport`); None: nothing to record."""
        return None

    def plot_report(self, report: EditorReport, plots_dir: Path) -> None:
        """Draw the run's plots of :meth:`report`'s findings into ``plots_dir``; the default draws none."""

    def hook_bank(self) -> HookBank | None:
        """The hook layers this editor keeps its edits in (exported with them; no Hugging Face folder can hold
        their gate); None: the edits are in the model's parameters."""
        return None

    def hyperparameters(self) -> dict:
        """Everything that defines the method's behaviour, for the run record."""
        return {key: asdict(value) if is_dataclass(value) else value for key, value in vars(self).items()
                if not key.startswith("_")}

    def state_dict(self) -> dict:
        """State carried across edits (none for stateless methods)."""
        return {}

    def state_snapshot(self) -> dict:
        """A copy of :meth:`state_dict` that later edits cannot change (tensors cloned), to give back to
        :meth:`load_state_dict`: a rollback run takes it after :meth:`setup` and loads it after every step, so that
        each step edits with the state setup built (no accumulated keys, empty hook layers)."""
        return {key: value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
                for key, value in self.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise ValueError(f"{self.name} carries no state but got keys {sorted(state)}")


def check_layers_fit(model, arch: Architecture, layers: Sequence[int], option: str = "layers") -> None:
    """Refuse layers past the model's last (named as the option, with the model's range)."""
    n = arch.n_layers(model)
    outside = [layer for layer in layers if not 0 <= layer < n]
    if outside:
        raise EditorOptionError(f"model.editor.{option}: layer(s) {outside} are outside the {arch.name} model, "
                                f"which has layers 0..{n - 1}")


def value_loss_problems(requests: Sequence[EditRequest], values: ValueResult, stop_loss: float) -> list[LossProblem]:
    """The requests whose value optimisation diverged or stalled (one :class:`LossProblem` each)."""
    problems = []
    for request, first, last, steps in zip(requests, values.first_loss.tolist(), values.last_loss.tolist(),
                                           values.steps_taken.tolist()):
        verdict = loss_trend(first, last, stop_loss)
        if verdict is not None and (steps > 0 or verdict == "diverged"):   # no step taken: nothing to judge
            problems.append(LossProblem(request.record_id, "value optimisation", verdict, first, last, steps))
    return problems


def value_targets(requests: Sequence[EditRequest]) -> list[ValueTarget]:
    return [ValueTarget(r.prompt, r.subject, r.target_new) for r in requests]


def ffn_weight_names(arch: Architecture, layers: Sequence[int]) -> list[str]:
    return [f"{arch.ffn_out_at(layer)}.weight" for layer in layers]


def snapshot(model, names: Sequence[str]) -> dict[str, torch.Tensor]:
    return {name: model.get_parameter(name).detach().clone() for name in names}


def changes(model, before: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: model.get_parameter(name).detach() - old for name, old in before.items()}
