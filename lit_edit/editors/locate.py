"""ROME, MEMIT and FT as editors (docs/methods.md §1–3)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.contexts import check_template_settings, sample_context_templates
from lit_edit.editing.ft import FtHyperparams, apply_ft
from lit_edit.editing.memit import MemitHyperparams, apply_memit
from lit_edit.editing.requests import EditRequest
from lit_edit.editing.rome import RomeHyperparams, apply_rome
from lit_edit.editing.values import ValueHyperparams, ValueResult
from lit_edit.editors.base import EditContext, Editor, EditOutcome, changes, ffn_weight_names, snapshot, value_targets
from lit_edit.models.architectures import Architecture
from lit_edit.stats import second_moments_for


def value_diagnostics(values: ValueResult) -> dict[str, float]:
    """The mean value-optimisation loss at the first and last step (every MEMIT-family editor reports it)."""
    return {"value_loss_first": float(values.first_loss.mean()), "value_loss_last": float(values.last_loss.mean())}


class ContextTemplates:
    """Context templates sampled once from the unedited model with a fixed seed (``lit_edit.editing.contexts``):
    ``per_seed`` samples of each seed word for each of ``lengths``, counted under ``length_rule``."""

    def __init__(self, per_seed: int, lengths: int | Sequence[int], seed: int, length_rule: str = "total"):
        self.lengths = check_template_settings(per_seed, lengths, length_rule)
        self.per_seed, self.seed, self.length_rule = per_seed, seed, length_rule
        self.templates: list[str] | None = None

    def sample(self, model, tokenizer) -> list[str]:
        if self.templates is None:
            self.templates = sample_context_templates(model, tokenizer, per_seed=self.per_seed, lengths=self.lengths,
                                                      length_rule=self.length_rule, seed=self.seed)
        return self.templates


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
    """

    name = "rome"

    def __init__(self, layer: int = 17, values: ValueHyperparams | None = None, mom2_adjustment: bool = True,
                 templates_per_seed: int = 2, template_tokens: int | Sequence[int] = (5, 10), template_seed: int = 0,
                 template_length_rule: str = "total"):
        self.hp = RomeHyperparams(layer, values or ValueHyperparams(clamp_norm_factor=4.0), mom2_adjustment)
        self._templates = ContextTemplates(templates_per_seed, template_tokens, template_seed, template_length_rule)
        self._second_moment = None

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        arch.check_layer(model, self.hp.layer)
        self._templates.sample(model, tokenizer)
        if self.hp.mom2_adjustment:
            self._second_moment = second_moments_for(model, tokenizer, arch, context.model_name, [self.hp.layer],
                                                     context.statistics, context.progress, context.ranks)[self.hp.layer]

    @property
    def context_templates(self) -> list[str] | None:
        return self._templates.templates

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return ffn_weight_names(arch, [self.hp.layer])

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        before = snapshot(model, self.parameter_names(model, arch))
        edits = apply_rome(model, tokenizer, arch, value_targets(requests), self.hp,
                           self._templates.sample(model, tokenizer), self._second_moment)
        return EditOutcome(changes(model, before), {
            "value_loss_first": sum(e.first_loss for e in edits) / len(edits),
            "value_loss_last": sum(e.last_loss for e in edits) / len(edits)})

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"context_templates": self.context_templates}


class MEMIT(Editor):
    """MEMIT: a batch of requests spread over ``layers`` (docs/methods.md §3).

    Args:
        layers: the edited layers.
        preservation_weight: λ (``mom2_update_weight``).
        values: value-optimisation settings (MEMIT: clamp_norm_factor 0.75).
        templates_per_seed / template_tokens / template_seed / template_length_rule: the context-template group,
            as ROME's; the default is the reference's: 1 per seed word of length 10 (``total``: the seed word's
            tokens included), 5 templates beside the bare one.
    """

    name = "memit"

    def __init__(self, layers: Sequence[int] = (13, 14, 15, 16, 17), preservation_weight: float = 20000.0,
                 values: ValueHyperparams | None = None, templates_per_seed: int = 1,
                 template_tokens: int | Sequence[int] = 10, template_seed: int = 0,
                 template_length_rule: str = "total"):
        self.hp = MemitHyperparams(tuple(layers), preservation_weight, values or ValueHyperparams())
        self._templates = ContextTemplates(templates_per_seed, template_tokens, template_seed, template_length_rule)
        self._second_moments = None

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        for layer in self.hp.layers:
            arch.check_layer(model, layer)
        self._templates.sample(model, tokenizer)
        self._second_moments = second_moments_for(model, tokenizer, arch, context.model_name, self.hp.layers,
                                                  context.statistics, context.progress, context.ranks)

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
        return EditOutcome(changes(model, before), value_diagnostics(values))

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"context_templates": self._templates.templates}


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
        self.hp = FtHyperparams(tuple(layers), loss, lr, steps, batch_size, weight_decay, norm_constraint, stop_loss)

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext) -> None:
        for layer in self.hp.layers:
            arch.check_layer(model, layer)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return [f"{arch.ffn_out_at(layer)}.{name}" for layer in self.hp.layers
                for name, _ in model.get_submodule(arch.ffn_out_at(layer)).named_parameters()]

    def edit(self, model, tokenizer, arch: Architecture, requests: Sequence[EditRequest]) -> EditOutcome:
        result = apply_ft(model, tokenizer, arch, value_targets(requests), self.hp)
        return EditOutcome(result.deltas, {"ft_loss_first": result.first_loss, "ft_loss_last": result.last_loss,
                                           "ft_epochs": float(result.epochs)})
