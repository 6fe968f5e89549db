import dataclasses

import pytest
import torch

from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from lit_edit.models import architecture_of, load_model_and_tokenizer

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems"),
           ValueTarget("Where does {} live?", "Kel Marrow", "Torvale")]
TEMPLATES = ("{}", "The weather was mild. {}", "Nobody expected it. {}")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_and_tokenizer(request, tmp_path_factory):
    from .conftest import make_tiny_model

    folder = make_tiny_model(request.param, tmp_path_factory.mktemp(f"values-{request.param}"), seed=3)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    return model.double(), tokenizer


def _module(model, kind):
    arch = architecture_of(model)
    return arch.layer(1) if kind == "block" else arch.ffn_at(1)


@pytest.mark.parametrize("kind", ["block", "ffn"])
def test_batched_equals_one_request_at_a_time(model_and_tokenizer, kind):
    model, tokenizer = model_and_tokenizer
    # A random tiny model has a tiny ‖h‖ (FFN outputs especially), so the reference's ‖δ‖/‖h‖² decay would
    # dominate and the loss would rise: switch it off here and take small steps.
    hp = ValueHyperparams(steps=4, lr=0.01, weight_decay=0.0, clamp_norm_factor=100.0)
    probe = optimize_values(model, tokenizer, _module(model, kind), TARGETS, hp, TEMPLATES)
    # a threshold some requests reach halfway and others not, so per-row stopping is exercised
    hp = dataclasses.replace(hp, steps=8, stop_loss=float(probe.last_loss.median()) + 1e-9)
    batched = optimize_values(model, tokenizer, _module(model, kind), TARGETS, hp, TEMPLATES)
    assert 0 < int((batched.steps_taken < hp.steps - 1).sum()) < len(TARGETS)
    for i, target in enumerate(TARGETS):
        alone = optimize_values(model, tokenizer, _module(model, kind), [target], hp, TEMPLATES)
        torch.testing.assert_close(batched.values[i], alone.values[0], rtol=1e-5, atol=1e-5)
        assert int(batched.steps_taken[i]) == int(alone.steps_taken[0])
    # in passes of at most 3 requests (3 + 1): every field the same, in request order
    chunked = optimize_values(model, tokenizer, _module(model, kind), TARGETS,
                              dataclasses.replace(hp, requests_per_pass=3), TEMPLATES)
    for field in dataclasses.fields(chunked):
        torch.testing.assert_close(getattr(chunked, field.name), getattr(batched, field.name), rtol=1e-5, atol=1e-5,
                                   equal_nan=True)


def test_requests_per_pass_must_be_positive():
    with pytest.raises(ValueError, match="values.requests_per_pass must be >= 1"):
        ValueHyperparams(requests_per_pass=0)


def test_optimisation_lowers_the_loss_and_respects_the_clamp(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    hp = ValueHyperparams(steps=15, lr=0.01, weight_decay=1e-4, clamp_norm_factor=0.75)
    result = optimize_values(model, tokenizer, _module(model, "block"), TARGETS, hp, TEMPLATES)
    assert (result.last_loss < result.first_loss).all()
    delta_norm = (result.values - result.initial_outputs).norm(dim=1)
    assert (delta_norm <= 0.75 * result.initial_outputs.norm(dim=1) + 1e-6).all()


def test_parameters_get_no_gradient_and_stay_unchanged(model_and_tokenizer):
    """Only δ is differentiated: a model whose parameters require grad (as loaded) gets no ``.grad`` from value
    optimisation and keeps its weights."""
    model, tokenizer = model_and_tokenizer
    assert all(p.requires_grad for p in model.parameters())
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimize_values(model, tokenizer, _module(model, "block"), TARGETS, ValueHyperparams(steps=3, lr=0.01), TEMPLATES)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, before[name]) for name, p in model.named_parameters())


def test_the_first_template_must_be_the_bare_prompt(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="bare"):
        optimize_values(model, tokenizer, _module(model, "block"), TARGETS, ValueHyperparams(), ("A. {}",))


def test_first_loss_is_the_mean_template_nll_from_the_full_logits(model_and_tokenizer):
    """At δ = 0 the loss is the rewriting NLL alone (KL and weight decay vanish): for each request, the mean over
    templates of the per-prompt mean NLL of the target, read here from the model's full logits."""
    model, tokenizer = model_and_tokenizer
    result = optimize_values(model, tokenizer, _module(model, "block"), TARGETS, ValueHyperparams(steps=1),
                             TEMPLATES)
    for i, t in enumerate(TARGETS):
        target = tokenizer(" " + t.target, add_special_tokens=False)["input_ids"]
        per_template = []
        for template in TEMPLATES:
            prompt = tokenizer(template.format(t.prompt).format(t.subject))["input_ids"]
            ids = torch.tensor([prompt + target])
            with torch.no_grad():
                logprobs = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
            per_template.append(-sum(logprobs[len(prompt) - 1 + j, tok] for j, tok in enumerate(target)) / len(target))
        expected = torch.stack(per_template).mean()
        torch.testing.assert_close(result.first_loss[i].double(), expected, rtol=1e-6, atol=1e-6)
