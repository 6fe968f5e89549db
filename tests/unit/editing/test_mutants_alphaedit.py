"""AlphaEdit at its edges (docs/methods.md §9): the null space's strict threshold, the refusal of non-finite
residuals or keys, α kept in float64, and, on a tiny GPT-2, the method's solver, layer label and fact-token rule
handed on."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lit_edit.editing.alphaedit import AlphaEditHyperparams, alphaedit_update, apply_alphaedit, null_space_basis
from lit_edit.editing.keys import template_keys
from lit_edit.editing.solver import SecondMomentSolver, UpdateSolveError
from lit_edit.editing.values import ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import make_tiny_model
from tests.direct import LIVE_VALUES

TARGET = ValueTarget("{} was born in", "Alda Venkor", "Port Ivory")
GROUPS = (("{}",), ("The weather was mild. {}",))


def test_an_eigenvalue_equal_to_the_threshold_is_not_in_the_null_space():
    c = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    basis = null_space_basis(c, 2.0)
    assert basis.shape == (3, 1) and abs(float(basis[0, 0])) == 1.0
    with pytest.raises(ValueError) as refused:
        null_space_basis(c, 1.0)
    assert str(refused.value) == (": the null space of C is empty at nullspace_threshold 1 (the smallest eigenvalue "
                                  "is 1); raise the threshold")


@pytest.mark.parametrize("bad", ["residuals", "keys"])
def test_non_finite_residuals_or_keys_are_refused_each_on_its_own(bad):
    r, k, u = torch.ones(2, 1), torch.ones(3, 1), torch.eye(3, dtype=torch.float64)[:, :2]
    if bad == "residuals":
        r[1, 0] = float("nan")
    else:
        k[0, 0] = float("inf")
    with pytest.raises(UpdateSolveError) as refused:
        alphaedit_update(r, k, u, torch.zeros(3, 3, dtype=torch.float64), 1.0)
    assert str(refused.value) == ": the residuals or keys contain NaN or inf"


def test_alpha_is_added_in_float64():
    """α = 0.1 is not a float32 number: with G = 0 the update is UᵀK Rᵀ / α exactly, to float64 rounding."""
    u = torch.eye(4, dtype=torch.float64)[:, :2]
    k = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64) * 1e-4
    r = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    update = alphaedit_update(r, k, u, torch.zeros(4, 4, dtype=torch.float64), 0.1)
    p = u @ u.T
    published = torch.linalg.solve(p @ (k @ k.T) + 0.1 * torch.eye(4, dtype=torch.float64), p @ k @ r.T).T
    torch.testing.assert_close(update, published, rtol=1e-13, atol=0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model("gpt2", tmp_path_factory.mktemp("alpha"), seed=5)


def _fresh(folder):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model = model.double()
    return model, tokenizer, architecture_of(model)


def test_the_method_s_solver_and_the_layer_label_reach_the_solve(tiny):
    """α = 0, no earlier keys, one request and a 3-dimensional null space: Uᵀ G U has rank 1, which ``exact``
    refuses (``pinv``, the default, would solve it)."""
    model, tokenizer, arch = _fresh(tiny)
    m = arch.inner_size(model)
    hp = AlphaEditHyperparams(layers=(1,), l2=0.0, values=LIVE_VALUES, solver=SecondMomentSolver(method="exact"))
    bases = {1: torch.eye(m, dtype=torch.float64)[:, :3]}
    with pytest.raises(UpdateSolveError, match=r"^layer 1: Uᵀ G U \+ αI: the matrix is not positive definite"):
        apply_alphaedit(model, tokenizer, arch, [TARGET], hp, GROUPS, bases,
                        {1: torch.zeros(m, m, dtype=torch.float64)})


def test_the_keys_added_after_the_batch_are_read_at_the_method_s_fact_token(tiny):
    model, tokenizer, arch = _fresh(tiny)
    m = arch.inner_size(model)
    values = replace(LIVE_VALUES, fact_token="subject_first")
    hp = AlphaEditHyperparams(layers=(1,), l2=1.0, values=values)
    previous = {1: torch.zeros(m, m, dtype=torch.float64)}
    apply_alphaedit(model, tokenizer, arch, [TARGET], hp, GROUPS, {1: torch.eye(m, dtype=torch.float64)[:, :4]},
                    previous)
    first = template_keys(model, tokenizer, arch, 1, [TARGET.prompt], [TARGET.subject], GROUPS,
                          "subject_first").averaged().double()
    last = template_keys(model, tokenizer, arch, 1, [TARGET.prompt], [TARGET.subject], GROUPS).averaged().double()
    assert not torch.allclose(first, last, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(previous[1], first @ first.T, rtol=1e-9, atol=1e-12)
