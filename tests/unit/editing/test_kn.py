"""KN (knowledge neurons): batched attribution equals the per-layer loop, IG equals a direct Riemann sum, the edit
equals its formula on the weights, edits flip facts on the fact-world model, rollback is exact, bad input is named."""

from __future__ import annotations

import json
import random

import pytest
import torch
import yaml

from lit_edit.data import EditDataModule
from lit_edit.editing import read_zsre
from lit_edit.editing.kn import (
    KnHyperparams,
    add_to_value_vectors,
    alphas,
    apply_kn,
    cap_neurons,
    coarse_neurons,
    edit_scales,
    integrated_gradients,
    integrated_gradients_per_layer,
    refine_neurons,
    value_delta,
)
from lit_edit.editing.requests import EditRequest, EditRequestError
from lit_edit.editors.base import snapshot
from lit_edit.editors.kn import KN
from lit_edit.factworld.acceptance import load_world
from lit_edit.factworld.edits import fact_questions
from lit_edit.loops import EditTrainer
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.modules import EditingModule
from lit_edit.scoring import answer_token_predictions
from tests.conftest import FACTWORLD, ROOT, make_tiny_model
from tests.edit_configs import method_config

FACTWORLD_GPT2 = ROOT / "checkpoints" / "factworld-gpt2"
REQUEST = EditRequest(prompt="Where was {} born?", subject="Hathio Mafubral", target_new="Grauden",
                      target_true="Vashti Falls", record_id="r0")


def _load(folder):
    model, tokenizer = load_model_and_tokenizer(str(folder))
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer, architecture_of(model)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request, tmp_path_factory):
    return _load(make_tiny_model(request.param, tmp_path_factory.mktemp(f"kn-{request.param}"), seed=3))


@pytest.fixture(scope="module")
def factworld():
    return _load(FACTWORLD_GPT2)


def _ids(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    return tokenizer(prompt)["input_ids"], tokenizer(" " + answer, add_special_tokens=False)["input_ids"]


# ------------------------------------------------------------------------------------------------ attribution


@pytest.mark.parametrize("batch_size", [7, 1000])
def test_batched_attribution_equals_the_per_layer_loop(tiny, batch_size):
    """Rows of all layers and steps share passes (7: chunks straddle layers; 1000: one pass) and give the IG of the
    reference's loop (one layer at a time, prompt + g_{<j} per sub-token)."""
    model, tokenizer, arch = tiny
    prompt, target = _ids(tokenizer, "Where was Hathio Mafubral born?", "Vashti Falls")
    assert len(target) == 2
    layers = list(range(arch.n_layers(model)))
    batched = integrated_gradients(model, arch, prompt, target, layers, steps=6, batch_size=batch_size)
    loop = integrated_gradients_per_layer(model, arch, prompt, target, layers, steps=6, batch_size=4)
    assert batched.shape == (len(layers), 2, arch.inner_size(model))
    scale = loop.abs().max()
    assert scale > 0
    assert float((batched - loop).abs().max() / scale) < 1e-5


def _direct_ig(model, arch, prompt, target, layer, j, steps):
    """IG_j(layer) by its definition: one α at a time, the activation replaced in a copy, autograd per step."""
    ids = torch.tensor([prompt + target[:j]])
    seen = {}
    handle = model.get_submodule(arch.ffn_in_at(layer)).register_forward_hook(
        lambda mod, args, out: seen.__setitem__("a", out[0, -1].detach().clone()))
    model(input_ids=ids)
    handle.remove()
    a, total = seen["a"], torch.zeros_like(seen["a"])
    for alpha in torch.linspace(0, 1, steps):
        x = (alpha * a).requires_grad_()

        def put(mod, args, out, x=x):
            out = out.clone()
            out[0, -1] = x
            return out

        handle = model.get_submodule(arch.ffn_in_at(layer)).register_forward_hook(put)
        with torch.enable_grad():
            p = model(input_ids=ids).logits[0, -1].softmax(-1)[target[j]]
            total += torch.autograd.grad(p, x)[0]
        handle.remove()
    return a * total / steps


def test_integrated_gradients_equal_an_explicit_riemann_sum_and_are_complete(factworld):
    model, tokenizer, arch = factworld
    prompt, target = _ids(tokenizer, "Where was Hathio Mafubral born?", "Vashti Falls")
    batched = integrated_gradients(model, arch, prompt, target, [1, 3], steps=5, batch_size=64)
    for k, layer in enumerate([1, 3]):
        for j in range(len(target)):
            direct = _direct_ig(model, arch, prompt, target, layer, j, steps=5)
            torch.testing.assert_close(batched[k, j], direct, rtol=1e-4, atol=1e-6)
    # completeness: Σ_i IG_i → P(g_1 | a) − P(g_1 | 0) as S grows ((1/S)·Σ over linspace(0, 1, S) is off by O(1/S))
    ig = integrated_gradients(model, arch, prompt, target[:1], [3], steps=200)[0, 0]
    p_clean = model(input_ids=torch.tensor([prompt])).logits[0, -1].softmax(-1)[target[0]]

    def zero(mod, args, out):
        out = out.clone()
        out[0, -1] = 0
        return out

    handle = model.get_submodule(arch.ffn_in_at(3)).register_forward_hook(zero)
    p_zero = model(input_ids=torch.tensor([prompt])).logits[0, -1].softmax(-1)[target[0]]
    handle.remove()
    gap = float(p_clean - p_zero)
    assert abs(gap) > 0.05
    assert abs(float(ig.sum()) - gap) < 0.02 * abs(gap)
    assert alphas(3).tolist() == [0.0, 0.5, 1.0]


# -------------------------------------------------------------------------------------------------- selection


def test_coarse_selection_refinement_and_cap():
    scores = torch.tensor([[1.0, 0.3, -2.0], [0.25, 0.1, 0.5]])
    assert coarse_neurons(scores, 0.2).tolist() == [[True, True, False], [True, False, True]]
    a = torch.tensor([[True, False], [True, True]])
    b = torch.tensor([[True, False], [False, False]])
    c = torch.tensor([[False, True], [True, False]])
    assert refine_neurons([a, b, c], 0.5).tolist() == [[True, False], [True, False]]    # in ≥ 1.5 of 3 sets
    assert refine_neurons([a, b, c], 1.0).tolist() == [[False, False], [False, False]]
    assert torch.equal(refine_neurons([a], 0.4), a)                                    # one prompt: the coarse set
    capped = cap_neurons(coarse_neurons(scores, 0.2), scores, 2)
    assert capped.tolist() == [[True, False, False], [False, False, True]]


def test_refinement_without_rephrases_keeps_the_coarse_set(factworld):
    model, tokenizer, arch = factworld
    outcomes = []
    for refine in (False, True):
        editor = KN(steps=4, refine=refine)
        before = snapshot(model, editor.parameter_names(model, arch))
        outcomes.append(editor.edit(model, tokenizer, arch, [REQUEST]))
        with torch.no_grad():
            for name, value in before.items():
                model.get_parameter(name).copy_(value)
    plain, refined = outcomes
    assert refined.diagnostics["kn_prompts"] == 1
    assert refined.diagnostics["kn_neurons"] == plain.diagnostics["kn_neurons"] > 0
    assert all(torch.equal(plain.deltas[n], refined.deltas[n]) for n in plain.deltas)


# ------------------------------------------------------------------------------------------------------- edit


def _greedy(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


@pytest.mark.parametrize("embedding", ["output", "input"])
@pytest.mark.parametrize("target_new", ["Grauden", "Port Ivory Bay"])
def test_the_edit_moves_each_selected_value_vector_by_the_embedding_difference(tiny, embedding, target_new):
    """Every selected neuron's value vector (Conv1D row / Linear column) changes by c·(ΣE[t] − ΣE[o]), c = 2 for a
    one-token target; nothing else changes. The tiny LLaMA is untied, so output and input embeddings differ."""
    model, tokenizer, arch = tiny
    request = EditRequest(prompt=REQUEST.prompt, subject=REQUEST.subject, target_new=target_new,
                          target_true="Vashti Falls", record_id="r1")
    layers = list(range(arch.n_layers(model)))
    names = [f"{arch.ffn_out_at(layer)}.weight" for layer in layers]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompt, new = _ids(tokenizer, request.text, target_new)
    old = _greedy(model, prompt, len(new))
    [edit] = apply_kn(model, tokenizer, arch, [request], KnHyperparams(steps=3, threshold=0.5, embedding=embedding))
    after = dict(model.named_parameters())
    table = (model.lm_head if embedding == "output" else model.get_input_embeddings()).weight
    c = 2.0 if len(new) == 1 else 1.0
    expected = c * (table[new].sum(0) - table[old].sum(0))
    assert edit.old_ids == old and edit.new_ids == new and edit.neurons
    torch.testing.assert_close(edit.delta, expected)
    for k, layer in enumerate(layers):
        delta = arch.to_math(after[names[k]] - before[names[k]])                 # [d, m]
        chosen = [i for lay, i in edit.neurons if lay == layer]
        mask = torch.zeros(delta.shape[1], dtype=torch.bool)
        mask[chosen] = True
        torch.testing.assert_close(delta[:, mask], expected[:, None].expand(-1, len(chosen)), rtol=1e-5, atol=1e-6)
        assert not delta[:, ~mask].any()
    assert all(torch.equal(before[n], after[n]) for n in before if n not in names)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])


def test_value_vector_layout_on_a_direct_computation(tiny):
    model, _, arch = tiny
    weight = arch.edit_weight(model, 1)
    original = weight.detach().clone()
    mask = torch.zeros(arch.n_layers(model), arch.inner_size(model), dtype=torch.bool)
    mask[1, [0, 5]] = True
    delta = torch.arange(arch.hidden_size(model), dtype=torch.float32)
    add_to_value_vectors(model, arch, list(range(arch.n_layers(model))), mask, delta)
    expected = original.clone()
    if arch.ffn_out_transposed:          # GPT-2 Conv1D [m, d]: row i
        expected[[0, 5], :] += delta
    else:                                # nn.Linear [d, m]: column i
        expected[:, [0, 5]] += delta[:, None]
    assert torch.equal(weight, expected)
    assert torch.equal(value_delta(torch.eye(4), [1], [2], 2.0), torch.tensor([0.0, -2.0, 2.0, 0.0]))
    with torch.no_grad():
        weight.copy_(original)


def _reference_executed_delta(table: torch.Tensor, old: list[int], new: list[int]) -> torch.Tensor:
    """What the reference's value-vector update adds to w, written out by its indexing rules: the old answer is
    indexed by one id when it is one token (a vector, subtracted twice) and by the id list otherwise (rows, each
    subtracted once); the target is always indexed by its id list (rows, each added once)."""
    w = torch.zeros(table.shape[1])
    old_embedding = table[old[0]] if len(old) == 1 else table[old]
    new_embedding = table[new]
    if old_embedding.ndim > 1:
        for row in old_embedding:
            w -= row
    else:
        w -= 2 * old_embedding
    if new_embedding.ndim > 1:
        for row in new_embedding:
            w += row
    else:
        w += 2 * new_embedding
    return w


@pytest.mark.parametrize("target_new", ["Grauden", "Port Ivory Bay"])
def test_one_token_edit_reference_equals_what_the_reference_executes(tiny, target_new):
    """``one_token_edit="reference"``: w += E[t] − 2E[o] for a one-token target (the reference adds its target's
    embedding rows once and doubles only the old answer's vector), c_t = c_o = 1 for longer targets; checked on the
    weights of every selected neuron against the reference's indexing written out."""
    model, tokenizer, arch = tiny
    request = EditRequest(prompt=REQUEST.prompt, subject=REQUEST.subject, target_new=target_new,
                          target_true="Vashti Falls", record_id="r2")
    layers = list(range(arch.n_layers(model)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    prompt, new = _ids(tokenizer, request.text, target_new)
    old = _greedy(model, prompt, len(new))
    hp = KnHyperparams(steps=3, threshold=0.5, embedding="input", one_token_edit="reference")
    [edit] = apply_kn(model, tokenizer, arch, [request], hp)
    table = model.get_input_embeddings().weight.detach().float()
    expected = _reference_executed_delta(table, old, new)
    if len(new) == 1:
        torch.testing.assert_close(expected, table[new[0]] - 2 * table[old[0]])
        assert not torch.allclose(expected, 2 * (table[new[0]] - table[old[0]]))
    torch.testing.assert_close(edit.delta, expected)
    for layer in layers:
        name = f"{arch.ffn_out_at(layer)}.weight"
        delta = arch.to_math(dict(model.named_parameters())[name] - before[name])
        for i in [i for lay, i in edit.neurons if lay == layer]:
            torch.testing.assert_close(delta[:, i], expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])


def test_one_token_edit_rules_on_a_direct_computation():
    """(5) on a 4-token identity embedding: the default doubles both terms of a one-token target, the reference rule
    only the old answer; longer targets are the same under both; scale cannot be combined with the reference rule."""
    table = torch.eye(4)
    doubled, reference = KnHyperparams(), KnHyperparams(one_token_edit="reference")
    assert torch.equal(value_delta(table, [1], [2], *edit_scales(1, doubled)), torch.tensor([0.0, -2.0, 2.0, 0.0]))
    assert torch.equal(value_delta(table, [1], [2], *edit_scales(1, reference)), torch.tensor([0.0, -2.0, 1.0, 0.0]))
    for hp in (doubled, reference):
        assert torch.equal(value_delta(table, [0, 1], [2, 3], *edit_scales(2, hp)), torch.tensor([-1.0, -1.0, 1, 1]))
    assert edit_scales(1, KnHyperparams(scale=3.0)) == (3.0, 3.0)
    with pytest.raises(ValueError, match="one_token_edit must be one of"):
        KnHyperparams(one_token_edit="twice")
    with pytest.raises(ValueError, match="scale=3.0 sets c_t = c_o"):
        KnHyperparams(scale=3.0, one_token_edit="reference")
    assert KN(one_token_edit="reference").hp.one_token_edit == "reference"


# ------------------------------------------------------------------------------------------ fact-world model


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_kn_flips_most_facts_and_keeps_most_unrelated_ones(factworld):
    """6 requests, each edited alone and rolled back: most first answer tokens flip, and most unrelated first answer
    tokens are kept (measured, one thread: 6 of 6 flipped, 0.817 kept — fewer than ROME's ≥ 0.9, tests/unit/editing/test_rome.py;
    a floor, so that a KN that disturbs less passes)."""
    model, tokenizer, arch = factworld
    requests = read_zsre(FACTWORLD / "zsre" / "zsre_factworld.json").requests[:6]
    world = load_world(FACTWORLD)
    unrelated = random.Random(0).sample([(q, a) for q, a in fact_questions(world, heldout=False)
                                         if not any(r.subject in q for r in requests)], 60)
    first = lambda: [p[0] for p, _ in answer_token_predictions(model, tokenizer, [q for q, _ in unrelated],
                                                                [a for _, a in unrelated])]
    before = first()
    originals = {n: p.detach().clone() for n, p in model.named_parameters()}
    flipped, kept = [], []
    for request in requests:
        [(pred, gold)] = answer_token_predictions(model, tokenizer, [request.text], [request.target_new])
        assert pred[0] != gold[0]                       # the unedited model does not say the new target
        apply_kn(model, tokenizer, arch, [request], KnHyperparams())
        [(pred, gold)] = answer_token_predictions(model, tokenizer, [request.text], [request.target_new])
        flipped.append(pred[0] == gold[0])
        kept.append(sum(b == a for b, a in zip(before, first())) / len(unrelated))
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(originals[n])
    print(f"KN: {sum(flipped)}/{len(requests)} flipped, {sum(kept) / len(kept):.3f} of unrelated first tokens kept")
    assert sum(flipped) >= 4
    assert sum(kept) / len(kept) >= 0.7


def test_rollback_restores_every_parameter_bit_exactly(tmp_path):
    module = EditingModule(str(FACTWORLD_GPT2), KN(steps=5), rollback=True, families=("token",),
                           results_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), monitor_docs=4)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(root=str(FACTWORLD), n=4, batch_size=2), verbose=False)
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "kn" and metrics["n_edits"] == 4
    lines = (tmp_path / "run" / "steps.csv").read_text().splitlines()
    header = lines[0].split(",")
    norms = [sum(float(line.split(",")[i]) for i, c in enumerate(header) if c.startswith("update_fro/"))
             for line in lines[1:]]
    assert len(norms) == 2 and all(n > 0 for n in norms)               # the edits were there before the rollback
    assert metrics["final"]["token"]["reliability"] > metrics["pre"]["token"]["reliability"]


def test_edit_changes_only_the_parameters_it_names(factworld):
    model, tokenizer, arch = factworld
    editor = KN(layers=[2, 3], steps=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    outcome = editor.edit(model, tokenizer, arch, [REQUEST])
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and changed <= set(editor.parameter_names(model, arch)) == set(outcome.deltas)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(before[n])


# ------------------------------------------------------------------------------------------------- bad input


def _request(**fields) -> EditRequest:
    base = dict(prompt=REQUEST.prompt, subject=REQUEST.subject, target_new="Grauden", target_true="Vashti Falls",
                record_id="zsre:7")
    return EditRequest(**(base | fields))


@pytest.fixture(scope="module")
def small_vocab(tmp_path_factory):
    """A GPT-2 whose embedding has 300 rows while the tokenizer has 2057: ids ≥ 300 do not exist for it."""
    folder = make_tiny_model("gpt2", tmp_path_factory.mktemp("kn-small-vocab"))
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model.resize_token_embeddings(300)
    return model, tokenizer, architecture_of(model)


@pytest.mark.parametrize("field", ["target_true", "target_new"])
def test_target_tokens_outside_the_embedding_name_record_and_field(small_vocab, field):
    model, tokenizer, arch = small_vocab
    words = dict(prompt="{} a", subject="b c", target_true="d", target_new="f")       # all ids < 300
    good, bad = _request(**words, record_id="zsre:6"), _request(**(words | {field: "Vashti Falls"}))
    weight = arch.edit_weight(model, 0).detach().clone()
    with pytest.raises(EditRequestError, match=rf"record zsre:7 field '{field}': encodes to token ids \[.*outside"):
        apply_kn(model, tokenizer, arch, [good, bad], KnHyperparams(steps=2))
    assert torch.equal(arch.edit_weight(model, 0), weight)          # checked before the first edit: nothing changed


def test_bad_targets_name_record_and_field(factworld):
    model, tokenizer, arch = factworld
    hp = KnHyperparams(steps=2)
    with pytest.raises(EditRequestError, match=r"record zsre:7 field 'target_true': KN .* needs it"):
        apply_kn(model, tokenizer, arch, [_request(target_true=None)], hp)
    with pytest.raises(EditRequestError, match=r"record zsre:7 field 'target_new': encodes to the tokenizer's "
                                               r"unknown/special token"):
        apply_kn(model, tokenizer, arch, [_request(target_new="<|endoftext|>")], hp)
    with pytest.raises(EditRequestError, match=r"record zsre:7 field 'target_new': target is empty"):
        _request(target_new="   ")

    class Dropping:      # a tokenizer that drops some text entirely
        def __getattr__(self, name):
            return getattr(tokenizer, name)

        def __call__(self, text, **kwargs):
            return {"input_ids": []} if text == " Grauden" else tokenizer(text, **kwargs)

    with pytest.raises(EditRequestError, match=r"record zsre:7 field 'target_new': encodes to no tokens"):
        apply_kn(model, Dropping(), arch, [_request()], hp)


# ---------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", ["gpt2-xl", "gpt-j-6b", "llama-2-7b", "llama-2-13b"])
def test_paper_configs_build_the_editor(name):
    editor = yaml.safe_load((ROOT / f"configs/edit/methods/{name}/kn.yaml").read_text())["model"]["init_args"]["editor"]
    assert editor["class_path"] == "lit_edit.editors.kn.KN"
    kn = KN(**editor["init_args"])
    assert kn.hp.steps == 20 and kn.hp.threshold == (0.1 if "gpt-j" in name else 0.2) and kn.hp.layers is None


def test_factworld_config_composes_with_every_mode():
    from lit_edit.cli import LitEditCLI

    modes = {"single": (1, True), "instance_sequential": (1, False), "batch_single": (10, True),
             "batch_sequential": (10, False)}
    for mode, (batch_size, rollback) in modes.items():
        cli = LitEditCLI(args=[*method_config("kn"), "--config",
                               str(ROOT / f"configs/edit/modes/{mode}.yaml"), "--trainer.logger", "false"], run=False)
        assert cli.datamodule.hparams.batch_size == batch_size and cli.model.hparams.rollback is rollback, mode
        assert isinstance(cli.model.editor, KN) and cli.model.editor.hp.steps == 20
