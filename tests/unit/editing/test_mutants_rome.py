"""ROME's sequence of rank-one edits (docs/methods.md §2) on a tiny GPT-2, against passes and closed forms written
here: ΔW = (v* − o*)(C⁻¹k̄)ᵀ / ((C⁻¹k̄)ᵀk*) with k*, k̄ and o* read by hooks at the rule's subject token, v* the
value optimisation under the context templates, the solver's C, each request on the model the previous ones
left, ΔW rounded to the weight's dtype before it is added; and every refusal with its message."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.rome import RomeHyperparams, apply_rome
from lit_edit.editing.solver import SecondMomentSolver, UpdateSolveError
from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from tests.conftest import load_frozen, make_tiny_model
from tests.direct import hooked

LAYER = 1
TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems")]
TEMPLATES = ["{}", "The weather was mild. {}"]
VALUES = ValueHyperparams(steps=3, lr=0.05, weight_decay=0.0, clamp_norm_factor=100.0, fact_token="subject_first")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-rome"), seed=5)


def _loaded(folder, dtype=torch.float64):
    return load_frozen(folder, dtype)


def _first_subject_token(tokenizer, text, subject):
    """The first token whose character span reaches into the subject (``subject_first``)."""
    start = text.index(subject)
    spans = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return next(i for i, (_, end) in enumerate(spans) if end > start)


def _ffn_out_io(model, tokenizer, arch, template, target):
    """(input, output) of the FFN output projection at the subject's first token of ``template`` around the prompt."""
    text = template.format(target.prompt).format(target.subject)
    seen: dict = {}
    with torch.no_grad(), hooked(model, arch.ffn_out_at(LAYER), seen):
        model(input_ids=torch.tensor([tokenizer(text)["input_ids"]]))
    position = _first_subject_token(tokenizer, text, target.subject)
    return seen["input"][0, position], seen["output"][0, position]


def _moment(m):
    g = torch.Generator().manual_seed(0)
    base = torch.randn(m, 4 * m, generator=g, dtype=torch.float64)
    return base @ base.T / (4 * m)


def _direct(model, tokenizer, arch, target):
    """k*, k̄, o* and v* of one request on the model as it is now."""
    k_star, o_star = _ffn_out_io(model, tokenizer, arch, "{}", target)
    k_mean = torch.stack([_ffn_out_io(model, tokenizer, arch, t, target)[0] for t in TEMPLATES]).mean(0)
    value = optimize_values(model, tokenizer, arch.ffn_at(LAYER), [target], VALUES, TEMPLATES).values[0]
    return k_star, k_mean, o_star, value


def test_each_request_is_the_closed_form_on_the_model_the_previous_ones_left(folder):
    """``ridge`` with ε = 0.5: u = (C + ε λ_max(C) I)⁻¹ k̄, far from C⁻¹k̄; the second request's k*, k̄, o* and v*
    are read on a copy holding the first ΔW, and the edited FFN maps that k* to v*."""
    model, tokenizer, arch = _loaded(folder)
    replica = _loaded(folder)[0]
    c, eps = _moment(arch.inner_size(model)), 0.5
    shifted = c + eps * torch.linalg.eigvalsh(c)[-1] * torch.eye(len(c), dtype=torch.float64)
    original = arch.to_math(arch.edit_weight(model, LAYER)).clone()
    hp = RomeHyperparams(layer=LAYER, values=VALUES, solver=SecondMomentSolver(method="ridge", ridge=eps))
    edits = apply_rome(model, tokenizer, arch, TARGETS, hp, TEMPLATES, c)

    expected = []
    for target, edit in zip(TARGETS, edits, strict=True):
        k_star, k_mean, o_star, value = _direct(replica, tokenizer, arch, target)
        u = torch.linalg.solve(shifted, k_mean)
        delta = torch.outer(value - o_star, u) / (u @ k_star)
        assert edit.layer == LAYER
        torch.testing.assert_close(edit.key, k_star, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(edit.value, value, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(edit.delta, delta, rtol=1e-8, atol=1e-10)
        weight = arch.edit_weight(replica, LAYER)
        with torch.no_grad():
            weight += arch.from_math(delta)
        expected.append(delta)
        torch.testing.assert_close(_ffn_out_io(replica, tokenizer, arch, "{}", target)[1], value.double(), rtol=1e-8,
                                   atol=1e-10)
    changed = arch.to_math(arch.edit_weight(model, LAYER)) - original
    torch.testing.assert_close(changed, expected[0] + expected[1], rtol=1e-8, atol=1e-10)


def test_without_the_covariance_the_direction_is_the_mean_key_and_delta_is_rounded_before_it_is_added(folder):
    """``mom2_adjustment`` false, no C: ΔW = (v* − o*) k̄ᵀ / (k̄ᵀk*); in a float32 model W + ΔW is the float32 sum
    of W and ΔW rounded to float32 (not the float64 sum rounded once)."""
    model, tokenizer, arch = _loaded(folder, torch.float32)
    k_star, k_mean, o_star, value = _direct(model, tokenizer, arch, TARGETS[0])
    before = arch.edit_weight(model, LAYER).clone()
    (edit,) = apply_rome(model, tokenizer, arch, TARGETS[:1], RomeHyperparams(layer=LAYER, values=VALUES,
                                                                               mom2_adjustment=False), TEMPLATES)
    k_star, k_mean = k_star.double(), k_mean.double()
    torch.testing.assert_close(edit.delta, torch.outer((value - o_star).double(), k_mean) / (k_mean @ k_star),
                               rtol=1e-4, atol=1e-6)
    assert edit.delta.dtype == torch.float64
    assert torch.equal(arch.edit_weight(model, LAYER), before + arch.from_math(edit.delta).to(torch.float32))


def test_a_second_moment_is_required_with_the_covariance_adjustment(folder):
    with pytest.raises(ValueError) as refused:
        apply_rome(*_loaded(folder), TARGETS, RomeHyperparams(layer=LAYER, values=VALUES), TEMPLATES)
    assert str(refused.value) == ("ROME with mom2_adjustment needs the second moment C of layer 1; pass it, or set "
                                  "mom2_adjustment false")


def test_a_second_moment_with_nan_is_refused_naming_the_layer(folder):
    model, tokenizer, arch = _loaded(folder)
    broken = _moment(arch.inner_size(model))
    broken[2, 2] = float("nan")
    with pytest.raises(UpdateSolveError) as refused:
        apply_rome(model, tokenizer, arch, TARGETS, RomeHyperparams(layer=LAYER, values=VALUES), TEMPLATES, broken)
    assert str(refused.value) == "layer 1: the second moment contains NaN or inf"


def test_a_bad_layer_is_refused_naming_the_option():
    with pytest.raises(EditorOptionError) as refused:
        RomeHyperparams(layer=-1)
    assert str(refused.value) == "model.editor.layer: [-1] are not layer indices (whole numbers >= 0)"


def test_a_direction_orthogonal_to_the_key_is_refused_naming_the_request(folder):
    """C chosen so that k̄ᵀC⁻¹k* = 0: with e₁ = k̄/‖k̄‖ and e₂ the unit part of k* orthogonal to it,
    k* = β₁e₁ + β₂e₂, C⁻¹ = I + (M − I) on span(e₁, e₂) with M = [[1, −β₁/β₂], [−β₁/β₂, 1 + (β₁/β₂)²]]
    (positive definite: its determinant is 1)."""
    model, tokenizer, arch = _loaded(folder)
    k_star, k_mean, _, _ = _direct(model, tokenizer, arch, TARGETS[0])
    e1 = k_mean / k_mean.norm()
    rest = k_star - (k_star @ e1) * e1
    e2 = rest / rest.norm()
    ratio = float(k_star @ e1) / float(k_star @ e2)
    basis = torch.stack([e1, e2], 1)
    m_small = torch.tensor([[1.0, -ratio], [-ratio, 1.0 + ratio ** 2]], dtype=torch.float64)
    inverse = torch.eye(len(e1), dtype=torch.float64) + basis @ (m_small - torch.eye(2, dtype=torch.float64)) @ basis.T
    assert abs(float(k_mean @ inverse @ k_star)) < 1e-12 * float(k_mean.norm() * k_star.norm())
    c = torch.linalg.inv(inverse)
    with pytest.raises(FloatingPointError, match=r"^request 0: uᵀk\* = .*: the key is orthogonal to the update "
                                                 r"direction"):
        apply_rome(model, tokenizer, arch, TARGETS, RomeHyperparams(layer=LAYER, values=VALUES), TEMPLATES,
                   (c + c.T) / 2)
