"""MEND's gradient factors and edits (docs/methods.md §5) against values written by hand or computed here: the
per-row target NLL on a hand-made table, factors of a left-padded batch against autograd on the weights, the
groups of each row, a module whose output never reaches the loss, the padded group layout, the edit learning
rate and its scale, the reduction handed to the running moments, and ΔW in the weight's dtype."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lit_edit.editing.mend import (
    edit_weights,
    gradient_factors,
    grouped_rows,
    module_io_sizes,
    per_row_target_nll,
    pseudo_gradient,
    stored_as_input_by_output,
    transformed_factors,
)
from lit_edit.editing.mend_network import MendNetwork, shape_key
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.modules.mend import edited_module_names
from lit_edit.scoring import labelled_batch
from tests.conftest import make_tiny_model

PROMPTS = ["Alda Venkor was born in", "The capital of Omberlund is"]
ANSWERS = ["Port Ivory", "Grauden"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = make_tiny_model("gpt2", tmp_path_factory.mktemp("mend-mutants"), seed=3)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model.requires_grad_(False)
    return model, tokenizer, edited_module_names(architecture_of(model), [1, 2], ["ffn_in", "ffn_out"])


def test_a_module_that_is_not_a_linear_layer_is_refused_by_its_class():
    with pytest.raises(TypeError) as refused:
        stored_as_input_by_output(nn.Embedding(3, 2))
    assert str(refused.value) == "MEND edits linear layers (nn.Linear or Conv1D); Embedding is neither"


def test_each_row_s_nll_is_the_mean_over_its_own_labelled_tokens():
    """Logits ln(p) of a 3-token vocabulary; row 0 labels two tokens (p = 1/2, 1/4), row 1 one (p = 1/8)."""
    p = torch.tensor([[[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]],
                      [[0.75, 0.125, 0.125], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 1 / 3, 1 / 3]]])
    labels = torch.tensor([[-100, 0, 0], [-100, 2, -100]])
    nll = per_row_target_nll(p.log(), labels)
    expected = torch.tensor([(math.log(2) + math.log(4)) / 2, math.log(8)])
    torch.testing.assert_close(nll, expected, rtol=1e-6, atol=1e-7)


def test_a_row_without_a_labelled_token_is_refused():
    with pytest.raises(ValueError) as refused:
        per_row_target_nll(torch.zeros(2, 3, 4), torch.tensor([[-100, 1, 2], [5, -100, -100]]))
    assert str(refused.value) == "a row has no labelled token: every edit example needs a target"


def _left_padded(tokenizer):
    """The right-padded batch of :func:`labelled_batch` with each row's padding moved to its start."""
    ids, mask, labels = labelled_batch(tokenizer, PROMPTS, ANSWERS)
    shifts = (mask.shape[1] - mask.sum(1)).tolist()
    ids, mask, labels = (torch.stack([row.roll(s) for row, s in zip(t, shifts, strict=True)]) for t in (ids, mask, labels))
    assert not mask[:, -1].eq(0).any() and mask[:, 0].eq(0).any()
    return ids, mask, labels


def test_left_padded_factors_rebuild_the_gradient_of_the_masked_model(tiny):
    """Σ_t x_t δ_tᵀ of the factors equals autograd's ∇W of the summed per-row NLL with the same attention mask;
    the row groups handed in label each row's tokens."""
    model, tokenizer, names = tiny
    ids, mask, labels = _left_padded(tokenizer)
    factors, loss = gradient_factors(model, names, ids, mask, labels, row_groups=torch.tensor([1, 0]))
    weights = [model.get_submodule(name).weight for name in names]
    with torch.enable_grad():
        for w in weights:
            w.requires_grad_(True)
        logits = model(input_ids=ids, attention_mask=mask).logits
        direct = torch.autograd.grad(per_row_target_nll(logits, labels).sum(), weights)
        for w in weights:
            w.requires_grad_(False)
    for name, grad in zip(names, direct, strict=True):
        f = factors[name]
        rebuilt = pseudo_gradient(f.inputs, f.output_grads, stored_as_input_by_output(model.get_submodule(name)))
        torch.testing.assert_close(rebuilt, grad, atol=1e-6, rtol=1e-4)
    last_target = [int(row.nonzero().max()) for row in labels.ne(-100)]    # δ is 0 past the last scored logit
    # row 0's tokens are group 1, row 1's group 0: each row contributes its real tokens up to its last target
    # (the logit at t − 1 scores token t, so the token holding the last target carries no gradient)
    counts = [int(mask[r, :last_target[r]].sum()) for r in range(2)]
    assert factors[names[0]].groups.tolist() == [1] * counts[0] + [0] * counts[1]


class _SideBranch(nn.Module):
    """Embedding → ``used`` → logits; ``unused`` runs on the same hidden states, its output is dropped (its width,
    2, is not the sequence length, 3)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.used, self.unused = nn.Embedding(5, 4), nn.Linear(4, 5), nn.Linear(4, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.embed(input_ids)
        self.unused(hidden)
        return SimpleNamespace(logits=self.used(hidden))


def test_a_module_whose_output_never_reaches_the_loss_gives_no_factor_rows():
    model = _SideBranch().requires_grad_(False)
    ids, mask = torch.tensor([[1, 2, 3]]), torch.ones(1, 3, dtype=torch.long)
    factors, _ = gradient_factors(model, ["used", "unused"], ids, mask, torch.tensor([[-100, 4, 0]]))
    unused = factors["unused"]
    assert unused.inputs.shape == (0, 4) and unused.output_grads.shape == (0, 2) and unused.groups.shape == (0,)
    assert factors["used"].inputs.shape == (2, 4)                    # the tokens scoring positions 1 and 2


def test_grouped_rows_is_as_deep_as_the_largest_group_and_at_least_one():
    rows = torch.arange(6.0).view(3, 2)
    assert grouped_rows(rows[:2], torch.tensor([1, 0]), 2).shape == (2, 1, 2)
    assert torch.equal(grouped_rows(rows[:0], torch.zeros(0, dtype=torch.long), 2), torch.zeros(2, 1, 2))
    assert grouped_rows(rows[:0], torch.zeros(0, dtype=torch.long), 0).shape == (0, 1, 2)


def _network_and_factors(model, tokenizer, names):
    network = MendNetwork({name: module_io_sizes(model.get_submodule(name)) for name in names}, rank=4,
                          edit_lr=0.25).eval()
    ids, mask, labels = labelled_batch(tokenizer, PROMPTS[:1], ANSWERS[:1])
    return network, gradient_factors(model, names, ids, mask, labels)[0]


def test_the_edit_learning_rate_is_eta_times_the_scale_and_eta_alone_by_default(tiny):
    model, tokenizer, names = tiny
    network, factors = _network_and_factors(model, tokenizer, names)
    assert float(transformed_factors(network, factors, 1)[names[0]][2]) == 0.25
    assert float(transformed_factors(network, factors, 1, lr_scale=4.0)[names[0]][2]) == 1.0


def test_the_reduction_reaches_the_running_moments(tiny):
    """In training mode the moments count the tokens of every process: a reduction that doubles (two ranks that
    saw the same tokens) counts each token twice."""
    model, tokenizer, names = tiny
    network, factors = _network_and_factors(model, tokenizer, names)
    network.train()
    transformed_factors(network, factors, 1, reduce=lambda t: 2 * t)
    sizes = module_io_sizes(model.get_submodule(names[0]))
    moments = network.transforms[shape_key(sizes)].input_moments
    shared = [n for n in names if module_io_sizes(model.get_submodule(n)) == sizes]
    assert len(shared) == 2 and int(moments.count) == 2 * sum(len(factors[n].inputs) for n in shared)


def test_edit_weights_uses_eta_by_default_and_returns_the_change_in_the_weight_s_dtype(tiny):
    """ΔW = −η ∇̃W with η = 0.25 (no scale); in a float64 model ΔW is float64 and W changes by exactly ΔW."""
    model, tokenizer, names = tiny
    network, factors = _network_and_factors(model, tokenizer, names)
    model = copy.deepcopy(model).double()
    before = {name: model.get_submodule(name).weight.clone() for name in names}
    deltas = edit_weights(model, network, factors)
    for name in names:
        module = model.get_submodule(name)
        x, d = network(name, factors[name].inputs, factors[name].output_grads)
        expected = -0.25 * pseudo_gradient(x, d, stored_as_input_by_output(module))
        delta = deltas[f"{name}.weight"]
        assert delta.dtype == torch.float64
        torch.testing.assert_close(delta, expected.double(), rtol=1e-6, atol=1e-9)
        assert torch.equal(module.weight, before[name] + delta)
