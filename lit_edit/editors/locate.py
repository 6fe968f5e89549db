"""ROME, MEMIT and FT as editors (docs/methods.md §1–3)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.contexts import check_template_settings, sample_context_templates
from lit_edit.editing.ft import FtHyperparams, apply_ft
from lit_edit.editing.memit import MemitHyperparams, apply_memit
from lit_edit.editing.requests import EditRequest
from lit_edit.editing.rome import RomeHyperparams, apply_rome
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, solver_report
from lit_edit.editing.values import ValueHyperparams, ValueResult, loss_trend
from lit_edit.editors.base import (
    EditContext,
    Editor,
    EditorOptionError,
    EditorReport,
    EditOutcome,
    LossProblem,
    changes,
    check_layers_fit,
    checked_layers,
    ffn_weight_names,
    snapshot,
    value_loss_problems,
    value_targets,
)
from lit_edit.models.architectures import Architecture
from lit_edit.stats import second_moments_for


def value_diagnostics(values: ValueResult) -> dict[str, float]:
    """The mean value-optimisation loss at the first and last step (every MEMIT-family editor reports it)."""
    return {"value_loss_first": float(values.first_loss.mean()), "value_loss_last": float(values.last_loss.mean())}


class ContextTemplates:
    """Context templates sampled once from the unedited model with a fixed seed (``lit_edit.editing.contexts``):
    ``per_seed`` samples of each seed word for each of ``lengths``, counted under ``length_rule``."""

    def __init__(self, per_seed: int, lengths: int | Sequence[int], seed: int, length_rule: str = "total"):
        try:
            self.lengths = check_template_settings(per_seed, lengths, length_rule)
        except ValueError as error:
            raise EditorOptionError(f"model.editor.{error}") from error
        self.per_seed, self.seed, self.length_rule = per_seed, seed, length_rule
        self.templates: list[str] | None = None

    def sample(self, model, tokenizer) -> list[str]:
        if self.templates is None:
            self.templates = sample_context_templates(model, tokenizer, per_seed=self.per_seed, lengths=self.lengths,
                                                      length_rule=self.length_rule, seed=self.seed)
        return self.templates

    def longest_prefix(self, model, tokenizer) -> int:
        """Tokens of the longest template's text before the prompt, plus one for the joint."""
        return max(len(tokenizer(t.replace("{}", "").rstrip())["input_ids"]) + 1 for t in self.sample(model, tokenizer))


class ROME(Editor):
    """ROME: one rank-one update per request at ``layer``, applied one after the other.

    Args:
        layer: the edited layer.
        values: value-optimisation settings (ROME's clamp_norm_factor is 4).
        mom2_adjustment: u = C⁻¹k̄ (the ROME paper's default, true) or u = k̄ (EasyEdit, false).
        templates_per_seed / template_tokens / template_seed / template_length_rule: the context templates, per
            seed word and length (``template_tokens``: one length or several), the sampling seed and the length
            rule: ``total`` counts the seed word's tokens (the reference's rule), ``new`` only the sampled ones.
            The default is the reference's set: lengths 5 and 10, 2 per seed word, 21 templates with the bare one.
        solver: how C⁻¹k̄ is solved when C is singular (``lit_edit/editing/solver.py``). C is factorised once per
            run (:class:`PreparedMoment`), not once per request.
    """

    name = "rome"

    def __init__(self, layer: int = 17, values: ValueHyperparams | None = None, mom2_adjustment: bool = True,
                 templates_per_seed: int = 2, template_tokens: int | Sequence[int] = (5, 10), template_seed: int = 0,
                 template_length_rule: str = "total", solver: SecondMomentSolver | None = None):
        (layer,) = checked_layers([layer], "layer")
        self.hp = RomeHyperparams(layer, values or ValueHyperparams(clamp_norm_factor=4.0), mom2_adjustment,
                                  solver=solver or SecondMomentSolver())
        self._templates = ContextTemplates(templates_per_seed, template_tokens, template_seed, template_length_rule)
        self._second_moment: PreparedMoment | None = None   # C of hp.layer with its cached factorisation
        self._moment_layer: int | None = None

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, [self.hp.layer], "layer")

    def prompt_prefix_tokens(self, model, tokenizer) -> int:
        return self._templates.longest_prefix(model, tokenizer)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        arch.check_layer(model, self.hp.layer)
        self._templates.sample(model, tokenizer)
        if self.hp.mom2_adjustment:
            moment = second_moments_for(model, tokenizer, arch, context.model_name, [self.hp.layer],
                                        context.statistics, context.progress, context.ranks)[self.hp.layer]
            self._second_moment = PreparedMoment(moment, f"layer {self.hp.layer}")
            self._moment_layer = self.hp.layer
            self._second_moment.factorisation(self.hp.solver)   # now, not in the first edit (raises for exact)

    @property
    def context_templates(self) -> list[str] | None:
        return self._templates.templates

    @property
    def second_moment(self) -> PreparedMoment | None:
        """C of the edited layer with its cached factorisation (after :meth:`setup`, with ``mom2_adjustment``)."""
        return self._second_moment

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return ffn_weight_names(arch, [self.hp.layer])

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        if self._second_moment is not None and self._moment_layer != self.hp.layer:
            raise RuntimeError(f"ROME.setup loaded C of layer {self._moment_layer}, but the editor now edits layer "
                               f"{self.hp.layer}; run setup again")
        before = snapshot(model, self.parameter_names(model, arch))
        edits = apply_rome(model, tokenizer, arch, value_targets(requests), self.hp,
                           self._templates.sample(model, tokenizer), self._second_moment)
        problems = [LossProblem(r.record_id, "value optimisation", verdict, e.first_loss, e.last_loss)
                    for r, e in zip(requests, edits)
                    if (verdict := loss_trend(e.first_loss, e.last_loss, self.hp.values.stop_loss))]
        return EditOutcome(changes(model, before), {
            "value_loss_first": sum(e.first_loss for e in edits) / len(edits),
            "value_loss_last": sum(e.last_loss for e in edits) / len(edits)}, problems)

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"context_templates": self.context_templates}

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        """The solver that ran and how ill-conditioned C was (``solver.py``); None without C."""
        if self._second_moment is None:
            return None
        return EditorReport({"second_moment_solver": solver_report({self.hp.layer: self._second_moment},
                                                                   self.hp.solver)})


class MEMIT(Editor):
    """MEMIT: a batch of requests spread over ``layers`` (docs/methods.md §3).

    Args:
        layers: the edited layers.
        preservation_weight: λ (``mom2_update_weight``).
        values: value-optimisation settings (MEMIT: clamp_norm_factor 0.75).
        templates_per_seed / template_tokens / template_seed / template_length_rule: the context-template group,
            as ROME's; the default is the reference's: 1 per seed word of length 10 (``total``: the seed word's
            tokens included), 5 templates beside the bare one.
        solver: how λC + KKᵀ is solved when C is singular (``lit_edit/editing/solver.py``).
    """

    name = "memit"
    solves_with_second_moment = True   # the system contains λC: ``exact`` needs C positive definite (checked at setup)

    def __init__(self, layers: Sequence[int] = (13, 14, 15, 16, 17), preservation_weight: float = 20000.0,
                 values: ValueHyperparams | None = None, templates_per_seed: int = 1,
                 template_tokens: int | Sequence[int] = 10, template_seed: int = 0,
                 template_length_rule: str = "total", solver: SecondMomentSolver | None = None):
        if preservation_weight < 0:
            raise EditorOptionError(f"model.editor.preservation_weight must be >= 0, got {preservation_weight}")
        self.hp = MemitHyperparams(checked_layers(layers), preservation_weight, values or ValueHyperparams(),
                                   solver=solver or SecondMomentSolver())
        self._templates = ContextTemplates(templates_per_seed, template_tokens, template_seed, template_length_rule)
        self._second_moments: dict[int, PreparedMoment] | None = None

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, self.hp.layers)

    def prompt_prefix_tokens(self, model, tokenizer) -> int:
        return self._templates.longest_prefix(model, tokenizer)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        for layer in self.hp.layers:
            arch.check_layer(model, layer)
        self._templates.sample(model, tokenizer)
        moments = second_moments_for(model, tokenizer, arch, context.model_name, self.hp.layers,
                                     context.statistics, context.progress, context.ranks)
        self._second_moments = {layer: PreparedMoment(c, f"layer {layer}") for layer, c in moments.items()}
        if self.solves_with_second_moment:
            for moment in self._second_moments.values():
                moment.check(self.hp.solver)

    @property
    def template_groups(self) -> list[list[str]]:
        templates = self._templates.templates
        return [templates[:1], templates[1:]]

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return ffn_weight_names(arch, self.hp.layers)

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        if self._second_moments is None:
            raise RuntimeError("MEMIT.setup must run before the first edit (it loads the statistics C)")
        before = snapshot(model, self.parameter_names(model, arch))
        _, values = apply_memit(model, tokenizer, arch, value_targets(requests), self.hp, self.template_groups,
                                self._second_moments)
        return EditOutcome(changes(model, before), value_diagnostics(values),
                           value_loss_problems(requests, values, self.hp.values.stop_loss))

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"context_templates": self._templates.templates}

    def report(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditorReport | None:
        """The solver that ran and how ill-conditioned each layer's C was (``solver.py``)."""
        if self._second_moments is None:
            return None
        return EditorReport({"second_moment_solver": solver_report(self._second_moments, self.hp.solver)})


class FT(Editor):
    """Constrained fine-tuning of the FFN output projection (FT-L: ``loss="prompt_last"``; FT-M: ``"target_new"``).

    Args:
        layers: the layers whose FFN output projection (weight and bias) is trained.
        loss: ``prompt_last`` (FT-L: every target token read at the prompt's last position) or ``target_new``
            (FT-M: teacher-forced cross-entropy over the target tokens).
        lr: Adam's learning rate.
        steps: epochs over the requests of an edit step.
        batch_size: requests per optimiser step.
        weight_decay: Adam's L2 term.
        norm_constraint: ε: each trained weight is clamped to its original value ± ε after every optimiser step;
            null: unconstrained.
        stop_loss: an optimiser step is skipped when its chunk's loss is below this, and training stops when an
            epoch's mean is.
    """

    name = "ft"

    def __init__(self, layers: Sequence[int] = (0,), loss: str = "prompt_last", lr: float = 5e-4, steps: int = 25,
                 batch_size: int = 64, weight_decay: float = 0.0, norm_constraint: float | None = 5e-4,
                 stop_loss: float = 1e-2):
        self.hp = FtHyperparams(checked_layers(layers), loss, lr, steps, batch_size, weight_decay, norm_constraint,
                                stop_loss)

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, self.hp.layers)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        for layer in self.hp.layers:
            arch.check_layer(model, layer)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return [f"{arch.ffn_out_at(layer)}.{name}" for layer in self.hp.layers
                for name, _ in model.get_submodule(arch.ffn_out_at(layer)).named_parameters()]

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        result = apply_ft(model, tokenizer, arch, value_targets(requests), self.hp)
        verdict = loss_trend(result.first_loss, result.last_loss, self.hp.stop_loss) if result.epochs > 1 else None
        problems = [LossProblem(", ".join(r.record_id for r in requests), "FT", verdict, result.first_loss,
                                result.last_loss, result.epochs)] if verdict else []
        return EditOutcome(result.deltas, {"ft_loss_first": result.first_loss, "ft_loss_last": result.last_loss,
                                           "ft_epochs": float(result.epochs)}, problems)
