"""FT-L2: FT, then each trained tensor's change projected onto the Frobenius ball of radius ρ, against FT's own
change scaled by hand; a ball that holds FT's change leaves it bit for bit."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing import read_zsre
from lit_edit.editing.ft import FtHyperparams, apply_ft
from lit_edit.editing.values import ValueTarget
from lit_edit.editors import EDITORS, FTL2, EditContext
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import FACTWORLD, ROOT

MODEL = ROOT / "checkpoints" / "factworld-gpt2"
TRAINING = {"layers": (1,), "loss": "target_new", "lr": 1e-2, "steps": 3}


@pytest.fixture(scope="module")
def request_and_ft_change():
    """A request and FT's change for it (no clamp), from a model of its own."""
    model, tokenizer = load_model_and_tokenizer(str(MODEL))
    r = read_zsre(FACTWORLD / "zsre" / "zsre_factworld.json").requests[1]
    ft = apply_ft(model, tokenizer, architecture_of(model), [ValueTarget(r.prompt, r.subject, r.target_new)],
                  FtHyperparams(**TRAINING, norm_constraint=None))
    return r, ft.deltas


def _edit(request, **options):
    model, tokenizer = load_model_and_tokenizer(str(MODEL))
    arch = architecture_of(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    editor = FTL2(**TRAINING, **options)
    editor.setup(model, tokenizer, arch, EditContext(str(MODEL), progress=False))
    outcome = editor.edit(model, tokenizer, arch, [request])
    return model, before, outcome


def test_each_change_is_ft_s_change_scaled_into_the_ball(request_and_ft_change):
    request, ft = request_and_ft_change
    weight = "transformer.h.1.mlp.c_proj.weight"
    radius = 0.5 * float(ft[weight].norm())              # binds for the weight
    model, before, outcome = _edit(request, max_delta_norm=radius)
    assert set(outcome.deltas) == set(ft)
    bound = 0
    for name, delta in outcome.deltas.items():
        change = ft[name].double()
        expected = change * min(1.0, radius / float(change.norm()))
        # W0 + ΔW is stored in float32: the change read back is off by the rounding of W0 + ΔW (an ulp, at most)
        rounding = torch.finfo(torch.float32).eps * (before[name].double().abs() + expected.abs())
        assert ((delta.double() - expected).abs() <= 1e-5 * expected.abs() + rounding).all(), name
        assert float(delta.double().norm()) <= radius * (1 + 1e-6)
        bound += float(change.norm()) > radius
        torch.testing.assert_close(model.get_parameter(name).detach() - before[name], delta, rtol=0, atol=0)
    assert bound >= 1
    assert all(torch.equal(before[n], model.get_parameter(n)) for n in before if n not in outcome.deltas)
    assert outcome.diagnostics["ft_epochs"] == 3.0


def test_a_ball_that_holds_the_change_leaves_ft_s_edit_bit_for_bit(request_and_ft_change):
    request, ft = request_and_ft_change
    radius = 2 * max(float(delta.norm()) for delta in ft.values())
    _, _, outcome = _edit(request, max_delta_norm=radius)
    assert all(torch.equal(outcome.deltas[name], ft[name]) for name in ft)


def test_ft_l2_is_registered_and_refuses_a_radius_that_is_not_positive():
    assert EDITORS["ft_l2"] is FTL2 and FTL2().hp.norm_constraint is None
    with pytest.raises(ValueError, match=r"model.editor.max_delta_norm must be > 0, got 0.0"):
        FTL2(max_delta_norm=0.0)
