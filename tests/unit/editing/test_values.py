import dataclasses

import pytest
import torch

from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from lit_edit.models import architecture_of, load_model_and_tokenizer
from tests.direct import optimise_one_value

TARGETS = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
           ValueTarget("The pet of {} is a", "Bram Tosk", "parrot"),
           ValueTarget("{} works for", "Ziva Lorn", "Quillon Systems"),
           ValueTarget("Where does {} live?", "Kel Marrow", "Torvale")]
TEMPLATES = ("{}", "The weather was mild. {}", "Nobody expected it. {}")


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_and_tokenizer(request, tmp_path_factory):
    from tests.conftest import make_tiny_model

    folder = make_tiny_model(request.param, tmp_path_factory.mktemp(f"values-{request.param}"), seed=3)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    return model.double(), tokenizer


def _module(model, kind):
    arch = architecture_of(model)
    return arch.layer(1) if kind == "block" else arch.ffn_at(1)


def _midway(values: torch.Tensor, i: int) -> float:
    """Midway between the i-th and (i+1)-th smallest of ``values``: a threshold no value sits on."""
    ordered = values.sort().values
    assert ordered[i + 1] - ordered[i] > 1e-3 * ordered[i + 1].abs()
    return float(ordered[i] + ordered[i + 1]) / 2


def _live_settings(model, tokenizer, module) -> ValueHyperparams:
    """Settings under which every per-request term of the objective is live: weight decay and KL above zero, a
    clamp that binds, and a stop threshold one request crosses halfway."""
    h = optimize_values(model, tokenizer, module, TARGETS, ValueHyperparams(steps=1), TEMPLATES).initial_outputs
    norms = h.norm(dim=1)
    # the reference's decay ‖δ‖/‖h‖² is steep on a random tiny model's small ‖h‖: scale it to ‖h‖
    hp = ValueHyperparams(steps=8, lr=0.05, kl_factor=0.25, weight_decay=0.001 * float(norms.mean()),
                          clamp_norm_factor=100.0)
    free = optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES)
    # half the smallest ‖δ‖/‖h‖ the free run reaches: the clamp binds for every request that runs long enough
    hp = dataclasses.replace(hp, clamp_norm_factor=0.5 * float(((free.values - free.initial_outputs).norm(dim=1)
                                                                  / norms).min()))
    # the loss of every request at every step; the stop threshold goes midway into the largest drop below a
    # request's earlier losses, so that request stops there and no loss sits near the threshold
    losses = torch.stack([optimize_values(model, tokenizer, module, TARGETS, dataclasses.replace(hp, steps=steps),
                                          TEMPLATES).last_loss for steps in range(1, hp.steps + 1)])
    lowest = losses.cummin(0).values
    step, request = divmod(int((lowest[:-1] - losses[1:]).argmax()), len(TARGETS))
    stop = float(lowest[step, request] + losses[step + 1, request]) / 2
    assert (losses - stop).abs().min() > 1e-5 * stop, (losses, stop)
    return dataclasses.replace(hp, stop_loss=stop)


@pytest.mark.parametrize("kind", ["block", "ffn"])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_batched_equals_one_request_at_a_time_and_a_direct_optimisation(model_and_tokenizer, kind):
    """With weight decay, KL, a binding clamp and per-request stopping all live — the per-request terms that could
    couple requests — the batched optimisation gives each request what it gets alone, what a direct one-request
    implementation of the objective gives (tests/direct.py), and the same in passes of ``requests_per_pass``."""
    model, tokenizer = model_and_tokenizer
    module = _module(model, kind)
    hp = _live_settings(model, tokenizer, module)
    batched = optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES)
    ratio = (batched.values - batched.initial_outputs).norm(dim=1) / batched.initial_outputs.norm(dim=1)
    at_clamp = (ratio - hp.clamp_norm_factor).abs() < 1e-5 * hp.clamp_norm_factor
    assert at_clamp.any(), (ratio, hp.clamp_norm_factor)                                # the clamp binds
    assert (ratio <= hp.clamp_norm_factor * (1 + 1e-6)).all()
    stopped = batched.steps_taken < hp.steps - 1
    assert stopped.any() and not stopped.all() and ((batched.steps_taken > 0) & stopped).any(), batched.steps_taken
    for term in ("weight_decay", "kl_factor"):                                       # each term changes the result
        without = optimize_values(model, tokenizer, module, TARGETS, dataclasses.replace(hp, **{term: 0.0}), TEMPLATES)
        assert (without.values - batched.values).abs().max() > 1e-5, term
    for i, target in enumerate(TARGETS):
        alone = optimize_values(model, tokenizer, module, [target], hp, TEMPLATES)
        torch.testing.assert_close(batched.values[i], alone.values[0], rtol=1e-5, atol=1e-7)
        assert int(batched.steps_taken[i]) == int(alone.steps_taken[0])
        value, initial, first, last, steps = optimise_one_value(model, tokenizer, module, target, hp, TEMPLATES)
        torch.testing.assert_close(batched.values[i], value, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(batched.initial_outputs[i], initial, rtol=1e-6, atol=1e-8)
        assert float(batched.first_loss[i]) == pytest.approx(first, rel=1e-5)
        assert float(batched.last_loss[i]) == pytest.approx(last, rel=1e-5)
        assert int(batched.steps_taken[i]) == steps
    # in passes of at most 3 requests (3 + 1): every field the same, in request order
    chunked = optimize_values(model, tokenizer, module, TARGETS, dataclasses.replace(hp, requests_per_pass=3),
                              TEMPLATES)
    for field in dataclasses.fields(chunked):
        torch.testing.assert_close(getattr(chunked, field.name), getattr(batched, field.name), rtol=1e-5, atol=1e-7,
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
