"""MEMIT's layer loop and its settings (docs/methods.md §3) on a tiny GPT-2: λ at its edge, the missing C named,
the fact-token rule handed to both passes, one pass per layer unless ``bare_pass``, the step counters, ΔW
rounded to the weight's dtype before it is added, the templates and layer of the value optimisation, and the
layer label and the solver reaching the solve — each against a pass, a count or a closed form written here."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.memit import (
    MemitHyperparams,
    add_to_weight,
    apply_memit,
    check_memit_layers,
    memit_values,
    spread_over_layers,
)
from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.solver import SecondMomentSolver, UpdateSolveError
from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from tests.conftest import load_frozen, make_tiny_model
from tests.direct import hooked

# the subject opens every prompt, so the rule ``subject_first`` reads position 0 and ``subject_last`` another one
TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems")]
GROUPS = (("{}",), ("The weather was mild. {}", "Nobody expected it. {}"))
FEW_STEPS = ValueHyperparams(steps=2, lr=0.01, weight_decay=0.0, clamp_norm_factor=100.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-memit"), seed=5)


def _loaded(folder, dtype=torch.float64):
    return load_frozen(folder, dtype)


def _values(model, n_targets):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n_targets, model.config.n_embd, generator=g, dtype=torch.float64)


def _recording_update(steps):
    def update(step):
        steps.append(step)
        return torch.zeros(step.residuals.shape[0], step.keys.shape[0], dtype=torch.float64)
    return update


@pytest.mark.parametrize("weight", [0.0, 0.5])
def test_a_preservation_weight_of_zero_or_below_one_is_accepted(weight):
    assert MemitHyperparams(layers=(0,), preservation_weight=weight).preservation_weight == weight


def test_a_negative_preservation_weight_is_refused_with_its_value():
    with pytest.raises(EditorOptionError) as refused:
        MemitHyperparams(layers=(0,), preservation_weight=-0.5)
    assert str(refused.value) == "model.editor.preservation_weight must be >= 0, got -0.5"


def test_a_layer_without_its_second_moment_is_named_with_the_layers_that_have_one(folder):
    model, _, arch = _loaded(folder)
    with pytest.raises(KeyError) as refused:
        check_memit_layers(model, arch, [0, 2], {0: torch.eye(3), 1: torch.eye(3)})
    assert refused.value.args == ("no second moment C for layer 2; have [0, 1]",)


@pytest.mark.parametrize("bare_pass", [False, True])
def test_the_fact_token_rule_reaches_the_keys_and_the_outputs(folder, bare_pass):
    """Under ``subject_first`` K is the FFN output projection's input and H the last block's output at position 0
    of each prompt, read here with a hook on a plain forward of the bare prompt (one template)."""
    model, tokenizer, arch = _loaded(folder)
    for t in TARGETS:
        subject_ids, prompt_ids = tokenizer(t.subject)["input_ids"], tokenizer(t.prompt.format(t.subject))["input_ids"]
        assert len(subject_ids) >= 2 and prompt_ids[:len(subject_ids)] == subject_ids   # first ≠ last token
    values, steps = _values(model, len(TARGETS)), []
    spread_over_layers(model, tokenizer, arch, TARGETS, values, [0, 1], [("{}",)], "subject_first",
                       _recording_update(steps), bare_pass=bare_pass)
    for step in steps:
        for i, t in enumerate(TARGETS):
            ids = torch.tensor([tokenizer(t.prompt.format(t.subject))["input_ids"]])
            key, block = {}, {}
            with torch.no_grad(), hooked(model, arch.ffn_out_at(step.layer), key), hooked(model, arch.layer(1), block):
                model(input_ids=ids)
            torch.testing.assert_close(step.keys[:, i], key["input"][0, 0], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(step.residuals[:, i], values[i] - block["output"][0, 0], rtol=1e-10,
                                       atol=1e-12)


class _RowsThrough:
    """Counts the sequences that pass through ``module`` while in use."""

    def __init__(self, model, module):
        self.model, self.module, self.rows = model, module, 0

    def __enter__(self):
        self.handle = self.model.get_submodule(self.module).register_forward_hook(self._count)
        return self

    def _count(self, _module, _args, output):
        self.rows += (output[0] if isinstance(output, tuple) else output).shape[0]

    def __exit__(self, *_):
        self.handle.remove()


@pytest.mark.parametrize(("bare_pass", "rows"), [(None, 2 * 3), (False, 2 * 3), (True, 2)])
def test_one_pass_per_layer_reads_h_l_unless_the_bare_prompts_get_their_own(folder, bare_pass, rows):
    """Before layer 0's update the last block (layer 1) has seen the 2 prompts under the 3 templates once (§12.5:
    keys and h^L from one pass, the default), or, with ``bare_pass``, only the 2 bare prompts: the keys' pass then
    stops at layer 0."""
    model, tokenizer, arch = _loaded(folder)
    options = {} if bare_pass is None else {"bare_pass": bare_pass}
    seen = []
    with _RowsThrough(model, arch.layer(1)) as through:
        def update(step):
            seen.append(through.rows)
            return torch.zeros(step.residuals.shape[0], step.keys.shape[0], dtype=torch.float64)
        spread_over_layers(model, tokenizer, arch, TARGETS, _values(model, 2), [0, 1], GROUPS, "subject_last", update,
                           **options)
    assert seen[0] == rows


def test_each_step_knows_its_place_in_the_ascending_layers(folder):
    model, tokenizer, arch = _loaded(folder)
    steps = []
    updates = spread_over_layers(model, tokenizer, arch, TARGETS, _values(model, 2), [2, 0, 1], GROUPS,
                                 "subject_last", _recording_update(steps))
    assert [(s.index, s.layer, s.remaining) for s in steps] == [(0, 0, 3), (1, 1, 2), (2, 2, 1)]
    assert [u.layer for u in updates] == [0, 1, 2]


def test_the_update_is_rounded_to_the_weights_dtype_before_it_is_added(folder):
    """W ← W + ΔW with ΔW converted to the weight's dtype first: in bfloat16 (8 significant bits) 1 + (2⁻⁸ + 2⁻¹⁶)
    is 1 + 2⁻⁸ after ΔW is rounded, a tie that rounds to even, 1; summed first in float64 it would be 1 + 2⁻⁷."""
    model, _, arch = _loaded(folder, torch.bfloat16)
    weight = arch.edit_weight(model, 0)
    with torch.no_grad():
        weight.fill_(1.0)
    shape = arch.to_math(weight).shape
    add_to_weight(model, arch, 0, torch.full(shape, 2.0 ** -8 + 2.0 ** -16, dtype=torch.float64))
    assert weight.dtype == torch.bfloat16
    assert torch.equal(weight, torch.ones_like(weight))


def test_values_are_optimised_at_the_last_layer_under_every_template_in_order(folder):
    model, tokenizer, arch = _loaded(folder)
    result = memit_values(model, tokenizer, arch, TARGETS, [1, 0], FEW_STEPS, GROUPS)
    model, tokenizer, arch = _loaded(folder)
    direct = optimize_values(model, tokenizer, "transformer.h.1", TARGETS, FEW_STEPS,
                             ["{}", "The weather was mild. {}", "Nobody expected it. {}"])
    assert torch.equal(result.values, direct.values)


def test_a_moment_with_nan_is_refused_naming_its_layer(folder):
    model, tokenizer, arch = _loaded(folder)
    m = arch.inner_size(model)
    broken = torch.eye(m, dtype=torch.float64)
    broken[1, 1] = float("nan")
    with pytest.raises(UpdateSolveError) as refused:
        apply_memit(model, tokenizer, arch, TARGETS, MemitHyperparams(layers=(0, 1), values=FEW_STEPS), GROUPS,
                    {0: torch.eye(m, dtype=torch.float64), 1: broken})
    assert str(refused.value) == "layer 1: the second moment contains NaN or inf"


def test_the_method_s_solver_and_the_layer_label_reach_the_solve(folder):
    """``exact`` on λC + KKᵀ with C = −I (no Cholesky factor) is refused naming the layer; ``pinv``, the default,
    would not refuse it this way."""
    model, tokenizer, arch = _loaded(folder)
    m = arch.inner_size(model)
    hp = MemitHyperparams(layers=(1,), preservation_weight=3.0, values=FEW_STEPS,
                          solver=SecondMomentSolver(method="exact"))
    with pytest.raises(UpdateSolveError, match=r"^layer 1: λC \+ KKᵀ: the matrix is not positive definite "
                                               r"\(Cholesky stops at column"):
        apply_memit(model, tokenizer, arch, TARGETS, hp, GROUPS, {1: -torch.eye(m, dtype=torch.float64)})


def test_a_ridge_solver_solves_with_c_shifted_by_its_share_of_the_largest_eigenvalue(folder):
    """ΔW = R Kᵀ (λ (C + ε λ_max(C) I) + KKᵀ)⁻¹ with ε = 0.5: far from the unshifted solution."""
    model, tokenizer, arch = _loaded(folder)
    m, lam, eps = arch.inner_size(model), 3.0, 0.5
    g = torch.Generator().manual_seed(0)
    base = torch.randn(m, 4 * m, generator=g, dtype=torch.float64)
    c = base @ base.T / (4 * m)
    hp = MemitHyperparams(layers=(1,), preservation_weight=lam, values=FEW_STEPS,
                          solver=SecondMomentSolver(method="ridge", ridge=eps))
    (update,), _ = apply_memit(model, tokenizer, arch, TARGETS, hp, GROUPS, {1: c})
    k, r = update.keys.double(), update.residuals.double()
    shifted = c + eps * torch.linalg.eigvalsh(c)[-1] * torch.eye(m, dtype=torch.float64)
    expected = r @ k.T @ torch.linalg.inv(lam * shifted + k @ k.T)
    torch.testing.assert_close(update.delta, expected, rtol=1e-8, atol=1e-10)
    unshifted = r @ k.T @ torch.linalg.inv(lam * c + k @ k.T)
    assert not torch.allclose(update.delta, unshifted, rtol=1e-3, atol=0)
