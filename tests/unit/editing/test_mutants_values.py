"""Value optimisation (docs/methods.md §0.6): how an edit's optimisation went (``loss_trend``), on losses chosen
by hand around its 10 % bands; and, on tiny GPT-2 and LLaMA models, each request of a batch against a direct
one-request optimisation (``tests/direct.py``) with every term live, in passes of one request too, the target's
leading spaces, the ``subject_first`` rule's h read by a hook, and the refusals."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import pytest
import torch

from lit_edit.editing.values import ValueHyperparams, ValueTarget, loss_trend, optimize_values
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.conftest import make_tiny_model
from tests.direct import hooked, optimise_one_value


@pytest.mark.parametrize(("first", "last", "stop_loss", "expected"), [
    (2.0, math.nan, 0.05, "diverged"), (math.inf, 1.0, 0.05, "diverged"), (2.0, -math.inf, 0.05, "diverged"),
    (2.0, 0.04, 0.05, None),            # below stop_loss: fine however little it fell
    (0.045, 0.049, 0.05, None),         # rose by 9 %, but below stop_loss
    (2.0, 2.3, 0.05, "diverged"),       # rose by 15 %
    (2.0, 2.19, 0.05, "stalled"),       # rose by 9.5 %
    (2.0, 2.0, 0.05, "stalled"),
    (2.0, 1.81, 0.05, "stalled"),       # fell by 9.5 %
    (2.0, 1.79, 0.05, None),            # fell by 10.5 %
    (2.0, 0.05, 0.05, None),            # at stop_loss: fell far enough
    (0.5, 0.5, 0.5, "stalled"),         # stop_loss is a strict bound
    (1.0, 1.1, 0.05, "stalled"),        # exactly 10 % up: not yet a divergence
    (1.0, 0.9, 0.05, None),             # exactly 10 % down: enough
])
def test_loss_trend_against_its_bands(first, last, stop_loss, expected):
    assert loss_trend(first, last, stop_loss) == expected


# ------------------------------------------------------------ the optimisation against a direct one per request

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Ziva Lorn", "Quillon Systems Limited")]   # 2 and 6 target tokens
TEMPLATES = ("{}", "The weather was mild. {}")
LIVE = ValueHyperparams(steps=5, lr=0.05, kl_factor=0.25, weight_decay=0.01, clamp_norm_factor=1.0)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request, tmp_path_factory):
    folder = make_tiny_model(request.param, tmp_path_factory.mktemp(f"values-{request.param}"), seed=3)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    return model.double(), tokenizer, architecture_of(model)


def _midway_stop(model, tokenizer, module):
    """A stop threshold midway between the two requests' first losses (direct optimisation, no step): the first
    request stops before any step, the second runs every step."""
    first = [optimise_one_value(model, tokenizer, module, t, replace(LIVE, steps=1), TEMPLATES)[2] for t in TARGETS]
    assert first[0] < first[1] and first[1] - first[0] > 1e-3
    return (first[0] + first[1]) / 2


def _against_direct(model, tokenizer, module, hp, batched):
    for i, target in enumerate(TARGETS):
        value, initial, first_loss, last_loss, steps = optimise_one_value(model, tokenizer, module, target, hp,
                                                                          TEMPLATES)
        torch.testing.assert_close(batched.values[i], value, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(batched.initial_outputs[i], initial, rtol=1e-6, atol=1e-8)
        assert float(batched.first_loss[i]) == pytest.approx(first_loss, rel=1e-5)
        assert float(batched.last_loss[i]) == pytest.approx(last_loss, rel=1e-5)
        assert int(batched.steps_taken[i]) == steps
    assert batched.steps_taken.dtype == torch.long


@pytest.mark.parametrize("reuse_lower_layers", [True, False])
def test_each_request_gets_what_a_direct_optimisation_gives_it(tiny, reuse_lower_layers):
    """Weight decay, KL and the clamp live (‖δ‖/‖h‖ passes 1 in the second step), the stop threshold midway
    between the two requests' first losses: each request of the batch, and of passes of one request, gets what a
    direct one-request optimisation (tests/direct.py) gives it, with either first pass."""
    model, tokenizer, arch = tiny
    module = arch.layer(1)
    hp = replace(LIVE, stop_loss=_midway_stop(model, tokenizer, module))
    batched = optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES, reuse_lower_layers=reuse_lower_layers)
    assert batched.steps_taken.tolist() == [0, hp.steps - 1]
    _against_direct(model, tokenizer, module, hp, batched)
    chunked = optimize_values(model, tokenizer, module, TARGETS, replace(hp, requests_per_pass=1), TEMPLATES,
                              reuse_lower_layers=reuse_lower_layers)
    for field in fields(chunked):
        torch.testing.assert_close(getattr(chunked, field.name), getattr(batched, field.name), rtol=1e-5, atol=1e-7)
        assert getattr(chunked, field.name).dtype == getattr(batched, field.name).dtype, field.name


def test_requests_that_all_run_every_step_stay_independent(tiny):
    """No request stops (stop_loss 0): the KL, the weight decay and the clamp of each request are its own."""
    model, tokenizer, arch = tiny
    hp = replace(LIVE, stop_loss=0.0)
    batched = optimize_values(model, tokenizer, arch.layer(1), TARGETS, hp, TEMPLATES)
    assert batched.steps_taken.tolist() == [hp.steps - 1] * 2
    _against_direct(model, tokenizer, arch.layer(1), hp, batched)


def test_passes_of_two_requests_over_three_give_the_whole_batch_s_result(tiny):
    model, tokenizer, arch = tiny
    three = [*TARGETS, ValueTarget("{} works for", "Bram Tosk", "Torvale")]
    hp = replace(LIVE, steps=3, stop_loss=0.0)
    whole = optimize_values(model, tokenizer, arch.layer(1), three, hp, TEMPLATES)
    parts = optimize_values(model, tokenizer, arch.layer(1), three, replace(hp, requests_per_pass=2), TEMPLATES)
    assert parts.values.shape == (3, whole.values.shape[1])
    torch.testing.assert_close(parts.values, whole.values, rtol=1e-5, atol=1e-7)


def test_delta_is_float32_whatever_the_default_dtype(tiny):
    model, tokenizer, arch = tiny
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = optimize_values(model, tokenizer, arch.layer(1), TARGETS[:1], replace(LIVE, steps=2), TEMPLATES)
    finally:
        torch.set_default_dtype(previous)
    assert result.values.dtype == torch.float32


def test_non_finite_values_are_refused_naming_the_request(tiny):
    """An infinite learning rate sends the second request's δ to inf, then NaN (the clamp scales by 0); the first
    stops before any step and keeps δ = 0."""
    model, tokenizer, arch = tiny
    module = arch.layer(1)
    hp = replace(LIVE, lr=math.inf, stop_loss=_midway_stop(model, tokenizer, module))
    with pytest.raises(FloatingPointError) as refused:
        optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES)
    assert str(refused.value) == "value optimisation produced non-finite values for requests [1]"


def test_a_target_s_leading_spaces_are_dropped(tiny):
    model, tokenizer, arch = tiny
    hp = replace(LIVE, steps=3)
    spaced = optimize_values(model, tokenizer, arch.layer(1), [ValueTarget("{} was born in", "Alda Venkor",
                                                                           "   Port Ivory")], hp, TEMPLATES)
    plain = optimize_values(model, tokenizer, arch.layer(1), TARGETS[:1], hp, TEMPLATES)
    assert torch.equal(spaced.values, plain.values)


def test_subject_first_starts_from_h_at_the_subject_s_first_token(tiny):
    """The subject opens the bare prompt: h is the block output at position 0 (after LLaMA's <s>, position 1)."""
    model, tokenizer, arch = tiny
    result = optimize_values(model, tokenizer, arch.layer(1), TARGETS[:1], replace(LIVE, steps=1,
                                                                                    fact_token="subject_first"))
    ids = tokenizer(TARGETS[0].prompt.format(TARGETS[0].subject))["input_ids"]
    position = 1 if ids[0] == tokenizer.bos_token_id else 0
    seen: dict = {}
    with torch.no_grad(), hooked(model, arch.layer(1), seen):
        model(input_ids=torch.tensor([ids]))
    torch.testing.assert_close(result.initial_outputs[0], seen["output"][0, position].float())


def test_no_request_is_refused_and_one_request_per_pass_is_allowed(tiny):
    model, tokenizer, arch = tiny
    with pytest.raises(ValueError) as refused:
        optimize_values(model, tokenizer, arch.layer(1), [], LIVE)
    assert str(refused.value) == "no requests"
    assert ValueHyperparams(requests_per_pass=1).requests_per_pass == 1
