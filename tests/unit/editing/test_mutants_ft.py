"""FT's training loop against one Adam step written here (docs/methods.md §1): the chunks, the skipped chunk
below ``stop_loss``, the weight decay, the loss handed on, every layer trained, the L∞ clamp as the projection of
the unconstrained step, the reported losses and epochs, and the message of a non-finite loss."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.ft import FtHyperparams, apply_ft, ft_loss
from lit_edit.editing.values import ValueTarget
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import make_tiny_model

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot")]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model("gpt2", tmp_path_factory.mktemp("ft"), seed=3)


def _fresh(folder):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    return model, tokenizer, architecture_of(model)


def _names(model, arch, layers):
    return [f"{arch.ffn_out_at(layer)}.{name}" for layer in layers
            for name, _ in model.get_submodule(arch.ffn_out_at(layer)).named_parameters()]


def _one_adam_step(folder, layers, targets, loss, lr, weight_decay):
    """The change of one Adam step on the mean loss of ``targets``, on a model of its own."""
    model, tokenizer, arch = _fresh(folder)
    names = _names(model, arch, layers)
    for p in model.parameters():
        p.requires_grad_(False)
    params = [model.get_parameter(name) for name in names]
    before = [p.detach().clone() for p in params]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    ft_loss(model, tokenizer, targets, loss).backward()
    optimizer.step()
    return {name: p.detach() - b for name, p, b in zip(names, params, before, strict=True)}


def _losses(folder, targets, loss):
    model, tokenizer, _ = _fresh(folder)
    with torch.no_grad():
        return [float(ft_loss(model, tokenizer, [t], loss)) for t in targets]


def test_one_chunk_of_two_requests_is_one_adam_step_with_weight_decay_on_every_layer(tiny):
    model, tokenizer, arch = _fresh(tiny)
    hp = FtHyperparams(layers=(0, 1), loss="target_new", lr=1e-3, steps=1, batch_size=2, weight_decay=0.5,
                       norm_constraint=None, stop_loss=0.0)
    result = apply_ft(model, tokenizer, arch, TARGETS, hp)
    expected = _one_adam_step(tiny, (0, 1), TARGETS, "target_new", 1e-3, 0.5)
    assert set(result.deltas) == set(expected) and len(expected) == 4
    for name, delta in expected.items():
        torch.testing.assert_close(result.deltas[name], delta, rtol=1e-5, atol=1e-8)
    with torch.no_grad():
        first = float(ft_loss(_fresh(tiny)[0], tokenizer, TARGETS, "target_new"))
    assert (result.first_loss, result.last_loss, result.epochs) == (pytest.approx(first), pytest.approx(first), 1)


def test_a_chunk_below_stop_loss_is_skipped_and_the_next_one_trained(tiny):
    losses = _losses(tiny, TARGETS, "prompt_last")
    low, high = sorted(range(2), key=losses.__getitem__)
    assert losses[high] > 1.01 * losses[low]
    ordered = [TARGETS[low], TARGETS[high]]
    model, tokenizer, arch = _fresh(tiny)
    hp = FtHyperparams(layers=(1,), lr=1e-3, steps=1, batch_size=1, norm_constraint=None,
                       stop_loss=(losses[low] + losses[high]) / 2)
    result = apply_ft(model, tokenizer, arch, ordered, hp)
    expected = _one_adam_step(tiny, (1,), [TARGETS[high]], "prompt_last", 1e-3, 0.0)
    for name, delta in expected.items():
        torch.testing.assert_close(result.deltas[name], delta, rtol=1e-5, atol=1e-8)
    # neither chunk changed the model before its loss was read: the epoch's mean is that of the two losses
    assert result.first_loss == pytest.approx((losses[low] + losses[high]) / 2, rel=1e-6)


def test_the_clamp_is_the_projection_of_the_unconstrained_step(tiny):
    """After one step, W − W0 = clamp(the unconstrained step, −ε, ε), entry by entry (Adam's first step is ±lr,
    so with ε < lr every entry sits on the bound of its own sign)."""
    free = _one_adam_step(tiny, (1,), TARGETS[:1], "prompt_last", 1e-2, 0.0)
    model, tokenizer, arch = _fresh(tiny)
    before = {name: model.get_parameter(name).detach().clone() for name in free}
    result = apply_ft(model, tokenizer, arch, TARGETS[:1], FtHyperparams(layers=(1,), lr=1e-2, steps=1,
                                                                         norm_constraint=4e-3, stop_loss=0.0))
    for name, step in free.items():
        expected = step.clamp(-4e-3, 4e-3)
        assert (expected > 0).any() and (expected < 0).any()
        rounding = 2 * torch.finfo(torch.float32).eps * (before[name].abs() + 1e-2)
        assert ((result.deltas[name] - expected).abs() <= rounding).all(), name


def test_no_epoch_reports_nan_losses_and_zero_epochs(tiny):
    model, tokenizer, arch = _fresh(tiny)
    result = apply_ft(model, tokenizer, arch, TARGETS, FtHyperparams(layers=(1,), steps=0))
    assert result.epochs == 0 and result.first_loss != result.first_loss and result.last_loss != result.last_loss
    assert all(not delta.any() for delta in result.deltas.values())


def test_a_non_finite_loss_is_refused_naming_the_epoch_and_the_chunk(tiny):
    model, tokenizer, arch = _fresh(tiny)
    with torch.no_grad():
        model.get_parameter(f"{arch.ffn_out_at(1)}.bias")[0] = float("nan")
    with pytest.raises(FloatingPointError) as refused:
        apply_ft(model, tokenizer, arch, TARGETS, FtHyperparams(layers=(1,), batch_size=1))
    assert str(refused.value) == "FT loss is nan at epoch 0, requests from 0"
