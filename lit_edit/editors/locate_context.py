"""What a locate-and-edit editor (ROME, MEMIT, D4S, COMEBA-HK, AlphaEdit) prepares once and keeps for the run: the
context templates and the second moment C of each edited layer (docs/methods.md §0.4, §2–3). Each of these editors
owns a :class:`LocateContext`; what a method adds to it (D4S's sums, AlphaEdit's null spaces) is its own state."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.editing.contexts import ContextTemplateHyperparams, sample_context_templates
from lit_edit.editing.memit import LocateHyperparams
from lit_edit.editing.solver import PreparedMoment, SecondMomentSolver, solver_report
from lit_edit.editing.values import ValueResult
from lit_edit.editors.base import EditContext, Editor, EditorReport, check_layers_fit, ffn_weight_names
from lit_edit.models.architectures import Architecture
from lit_edit.stats import second_moments_for


class LocateContext:
    """The context templates, sampled once from the unedited model with a fixed seed as ``settings`` say
    (``lit_edit.editing.contexts``), and C per edited layer with its cached factorisations
    (:class:`~lit_edit.editing.solver.PreparedMoment`), loaded by :meth:`load_second_moments`."""

    def __init__(self, settings: ContextTemplateHyperparams):
        self.settings = settings
        self.templates: list[str] | None = None
        self.second_moments: dict[int, PreparedMoment] | None = None

    def sample_templates(self, model, tokenizer) -> list[str]:
        """The templates, sampled on the first call."""
        if self.templates is None:
            s = self.settings
            self.templates = sample_context_templates(model, tokenizer, per_seed=s.templates_per_seed,
                                                      lengths=s.template_lengths,
                                                      length_rule=s.template_length_rule, seed=s.template_seed)
        return self.templates

    def longest_prefix(self, model, tokenizer) -> int:
        """Tokens of the longest template's text before the prompt, plus one for the joint."""
        return max(len(tokenizer(t.replace("{}", "").rstrip())["input_ids"]) + 1
                   for t in self.sample_templates(model, tokenizer))

    @property
    def template_groups(self) -> list[list[str]]:
        """MEMIT's two template groups: the bare prompt, and the sampled templates."""
        return [self.templates[:1], self.templates[1:]]

    def setup(self, model, tokenizer, arch: Architecture, context: EditContext, layers: Sequence[int],
              solver: SecondMomentSolver | None) -> dict[int, PreparedMoment]:
        """Before the first edit of a layer-loop method: check ``layers`` against the model, sample the templates and
        load C of every layer; with ``solver``, refuse now a C it cannot solve the method's system with (``exact``
        needs C positive definite when the system contains λC)."""
        for layer in layers:
            arch.check_layer(model, layer)
        self.sample_templates(model, tokenizer)
        moments = self.load_second_moments(model, tokenizer, arch, context, layers)
        if solver is not None:
            for moment in moments.values():
                moment.check(solver)
        return moments

    def load_second_moments(self, model, tokenizer, arch: Architecture, context: EditContext,
                            layers: Sequence[int]) -> dict[int, PreparedMoment]:
        """C of every layer in ``layers`` (from the statistics cache, or collected), each prepared once."""
        moments = second_moments_for(model, tokenizer, arch, context.model_name, list(layers), context.statistics,
                                     context.progress, context.ranks)
        self.second_moments = {layer: PreparedMoment(c, f"layer {layer}") for layer, c in moments.items()}
        return self.second_moments

    def second_moment_on(self, model, arch: Architecture, layer: int) -> PreparedMoment:
        """C of ``layer`` on the device of the layer's edited weight."""
        return self.second_moments[layer].to(arch.edit_weight(model, layer).device)

    def solver_report(self, solver: SecondMomentSolver) -> EditorReport | None:
        """The solver that ran and how ill-conditioned each layer's C was (``solver.py``); None without C."""
        if self.second_moments is None:
            return None
        return EditorReport({"second_moment_solver": solver_report(self.second_moments, solver)})


class LayerLoopEditor(Editor):
    """An editor of MEMIT's layer loop over ``hp.layers`` (MEMIT, D4S, COMEBA-HK, AlphaEdit): it owns a
    :class:`LocateContext`, and the parts of the editor interface that only ask it are answered here once (the layers
    fit the model, the templates' prefix, the edited weights, the templates in the run record, the solver report).
    A method's own state and its edit step stay in its editor file."""

    def __init__(self, hp: LocateHyperparams):
        self.hp = hp
        self._context = LocateContext(hp)

    def check_fits(self, model, arch: Architecture) -> None:
        check_layers_fit(model, arch, self.hp.layers)

    def prompt_prefix_tokens(self, model, tokenizer) -> int:
        return self._context.longest_prefix(model, tokenizer)

    def parameter_names(self, model, arch: Architecture) -> list[str]:
        return ffn_weight_names(arch, self.hp.layers)

    def hyperparameters(self) -> dict:
        return super().hyperparameters() | {"context_templates": self._context.templates}

    def report(self, model, tokenizer, arch: Architecture, requests) -> EditorReport | None:
        """The solver that ran and how ill-conditioned each layer's C was (``solver.py``)."""
        return self._context.solver_report(self.hp.solver)


def value_diagnostics(values: ValueResult) -> dict[str, float]:
    """The mean value-optimisation loss at the first and last step (every MEMIT-family editor reports it)."""
    return {"value_loss_first": float(values.first_loss.mean()), "value_loss_last": float(values.last_loss.mean())}
