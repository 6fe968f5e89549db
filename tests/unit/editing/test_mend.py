"""MEND: the gradient factors against autograd, the low-rank edited forward against functional_call, the editor
network's identity start and running moments, a training step that learns, checkpoint checks, and edits with
the shipped editor on held-out fact-world requests."""

from __future__ import annotations

import json

import pytest
import torch
from torch.func import functional_call

from lit_edit.data.mend import MendDataModule
from lit_edit.editing.mend import (
    edit_weights,
    edited_forward,
    gradient_factors,
    grouped_rows,
    module_io_sizes,
    per_row_target_nll,
    pseudo_gradient,
    stored_as_input_by_output,
    transformed_factors,
    weight_delta,
)
from lit_edit.editing.mend_checkpoint import MendCheckpointError, load_mend_checkpoint, save_mend_checkpoint
from lit_edit.editing.mend_network import MendNetwork, RunningMoments
from lit_edit.editing.requests import EditRequest, EditRequestError
from lit_edit.editors import MEND
from lit_edit.editors.base import EditContext
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.modules.mend import MendModule, edited_module_names
from lit_edit.scoring import labelled_batch, score_answers
from tests.conftest import ROOT, SHARED_DATA, make_tiny_model

SHIPPED = ROOT / "checkpoints" / "mend-factworld-gpt2"
PROMPTS = ["Alda Venkor was born in", "The capital of Omberlund is", "Hathio Mafubral works for"]
ANSWERS = ["Port Ivory", "Grauden", "Velcro Dynamics"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny(request, tmp_path_factory):
    folder = make_tiny_model(request.param, tmp_path_factory.mktemp(f"mend-{request.param}"), seed=3)
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model.requires_grad_(False)
    arch = architecture_of(model)
    return folder, model, tokenizer, edited_module_names(arch, [1, 2], ["ffn_in", "ffn_out"])


def test_factors_rebuild_the_true_gradient_of_every_edited_weight(tiny):
    """∇W = Σ_t x_t δ_tᵀ (MEND Eq. 2) in the stored layout, against autograd on the weights themselves."""
    _, model, tokenizer, names = tiny
    ids, mask, labels = labelled_batch(tokenizer, PROMPTS, ANSWERS)
    factors, loss = gradient_factors(model, names, ids, mask, labels)
    weights = [model.get_submodule(name).weight for name in names]
    with torch.enable_grad():
        for w in weights:
            w.requires_grad_(True)
        direct_loss = per_row_target_nll(model(input_ids=ids, attention_mask=mask).logits, labels).sum()
        direct = torch.autograd.grad(direct_loss, weights)
        for w in weights:
            w.requires_grad_(False)
    assert torch.allclose(loss, direct_loss)
    for name, grad in zip(names, direct):
        f = factors[name]
        rebuilt = pseudo_gradient(f.inputs, f.output_grads, stored_as_input_by_output(model.get_submodule(name)))
        assert rebuilt.shape == grad.shape
        assert torch.allclose(rebuilt, grad, atol=1e-6, rtol=1e-4), name
        assert f.inputs.shape[0] < mask.sum()      # tokens after each row's last target carry no gradient


def test_edited_forward_equals_functional_call_with_each_rows_own_weights(tiny):
    """Rows in different groups see different edits; each equals a model whose weights are W + ΔW_g."""
    _, model, tokenizer, names = tiny
    generator = torch.Generator().manual_seed(0)
    n_groups, tokens = 2, torch.tensor([0, 0, 1, 1, 1, 0])
    edits = {}
    for name in names:
        size_in, size_out = module_io_sizes(model.get_submodule(name))
        x, d = torch.randn(6, size_in, generator=generator), torch.randn(6, size_out, generator=generator)
        edits[name] = (grouped_rows(x, tokens, n_groups), grouped_rows(d, tokens, n_groups), torch.tensor(0.05))
        edits[name + "/raw"] = (x, d)
    ids, mask, _ = labelled_batch(tokenizer, PROMPTS, ANSWERS)
    row_groups = torch.tensor([1, 0, 1])
    plain = {name: edits[name] for name in names}
    with edited_forward(model, plain, row_groups):
        hooked = model(input_ids=ids, attention_mask=mask).logits
    for row, group in enumerate(row_groups.tolist()):
        params = {}
        for name in names:
            x, d = edits[name + "/raw"]
            module = model.get_submodule(name)
            chosen = tokens == group
            params[f"{name}.weight"] = module.weight + weight_delta(x[chosen], d[chosen], 0.05,
                                                                    stored_as_input_by_output(module))
        direct = functional_call(model, params, args=(), kwargs={"input_ids": ids[row:row + 1],
                                                                 "attention_mask": mask[row:row + 1]}).logits
        assert torch.allclose(hooked[row:row + 1], direct, atol=1e-5), row
    with torch.no_grad():
        assert not torch.allclose(model(input_ids=ids, attention_mask=mask).logits, hooked)   # the hooks are gone


def test_grouped_rows_keeps_every_row_in_its_group_and_pads_with_zeros():
    rows = torch.arange(10.0).view(5, 2)
    grouped = grouped_rows(rows, torch.tensor([1, 0, 1, 1, 0]), 3)
    assert grouped.shape == (3, 3, 2)
    assert torch.equal(grouped[0, :2], rows[[1, 4]]) and torch.equal(grouped[1], rows[[0, 2, 3]])
    assert not grouped[2].any() and not grouped[0, 2].any()


def test_running_moments_match_the_direct_mean_and_std_and_sum_across_processes():
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(n, 4, generator=generator) * 3 + 1 for n in (5, 9, 2)]
    moments = RunningMoments(4)
    for batch in batches:
        moments.update(batch)
    mean, std = moments.mean_std()
    everything = torch.cat(batches).double()
    assert torch.allclose(mean, everything.mean(0)) and torch.allclose(std, everything.std(0))
    doubled = RunningMoments(4)
    doubled.update(batches[0], reduce=lambda t: 2 * t)    # two ranks that saw the same rows
    assert doubled.count == 10 and torch.allclose(doubled.mean_std()[0], batches[0].double().mean(0))


def test_the_network_starts_as_the_identity_and_learns_only_in_training_mode():
    network = MendNetwork({"a": (6, 4), "b": (6, 4), "c": (4, 6)}, rank=3, edit_lr=1e-3)
    assert set(network.transforms) == {"6x4", "4x6"}          # shared per shape, told apart by modes
    x, d = torch.randn(7, 6), torch.randn(7, 4)
    network.eval()
    x_out, d_out = network("b", x, d)
    assert torch.allclose(x_out, x / (1 + 1e-7)) and torch.allclose(d_out, d / (1 + 1e-7))
    assert network.transforms["6x4"].input_moments.count == 0
    network.train()
    network("a", x, d)
    assert network.transforms["6x4"].input_moments.count == 7
    assert torch.allclose(network.edit_lr("c"), torch.tensor(1e-3))


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_a_few_training_steps_lower_the_edit_loss_on_the_fact_world_model():
    module = MendModule(rank=32, edit_lr=1e-4, lr=1e-3, lr_lr=1e-3)
    data = MendDataModule(batch_size=8)
    data.setup("fit")
    batch = data.train_requests[:8]
    optimizer = module.configure_optimizers()
    module.train()
    first = module.edit_losses(batch)
    losses = []
    for _ in range(12):
        results = module.edit_losses(batch)
        optimizer.zero_grad()
        results["loss"].backward()
        optimizer.step()
        losses.append(float(results["loss"]))
    assert losses[-1] < 0.5 * float(first["loss"]), losses
    assert float(module.network.edit_lrs.mean()) > 1e-4       # the learned step sizes grew from their start


def test_training_refuses_a_request_without_the_probe_it_needs():
    module = MendModule(rank=8, edit_loss_on="rephrase")
    request = EditRequest("{} was born in", "Alda Venkor", "Port Ivory", record_id="fw:7")
    with pytest.raises(EditRequestError, match=r"record fw:7 field 'rephrase_prompts'"):
        module.edit_losses([request])


def _checkpoint(tmp_path, folder, model, names, layers=(1, 2)):
    network = MendNetwork({name: module_io_sizes(model.get_submodule(name)) for name in names}, rank=4, edit_lr=0.5)
    return save_mend_checkpoint(tmp_path / "mend", network, {
        "base_model": str(folder), "architecture": architecture_of(model).name, "layers": list(layers),
        "module_templates": ["ffn_in", "ffn_out"], "base_weights_sha256": "",
        "network": {"rank": 4, "n_hidden": 1, "edit_lr": 0.5, "shared": True}})


def test_checkpoint_round_trip_and_an_editor_that_changes_and_rolls_back_exactly(tiny, tmp_path):
    folder, model, tokenizer, names = tiny
    path = _checkpoint(tmp_path, folder, model, names)
    network, meta = load_mend_checkpoint(path)
    assert meta["layers"] == [1, 2] and not network.training
    arch = architecture_of(model)
    editor = MEND(checkpoint=str(path), layers=[1, 2])
    editor.setup(model, tokenizer, arch, EditContext(str(folder), progress=False))
    before = {n: model.get_parameter(n).detach().clone() for n in editor.parameter_names(model, arch)}
    outcome = editor.edit(model, tokenizer, arch, [EditRequest("{} was born in", "Alda Venkor", "Port Ivory")])
    assert set(outcome.deltas) == set(before)
    for name, old in before.items():
        assert torch.equal(model.get_parameter(name), old + outcome.deltas[name])
        assert outcome.deltas[name].abs().sum() > 0
        model.get_parameter(name).data.copy_(old)


def test_a_checkpoint_for_other_layers_or_another_model_is_refused_naming_both(tiny, tmp_path):
    folder, model, tokenizer, names = tiny
    path = _checkpoint(tmp_path, folder, model, names)
    arch = architecture_of(model)
    with pytest.raises(MendCheckpointError, match=r"layers \[1, 2\]\), but this editor is configured for layers \[0, 1\]"):
        MEND(checkpoint=str(path), layers=[0, 1]).setup(model, tokenizer, arch, EditContext("mine", progress=False))
    other_family = "llama" if arch.name == "gpt2" else "gpt2"
    other = make_tiny_model(other_family, tmp_path / "other", seed=3)
    other_model, other_tokenizer = load_model_and_tokenizer(str(other))
    with pytest.raises(MendCheckpointError, match=rf"trained for '{folder}' \({arch.name}.*but '{other}' is a "
                                                  rf"{other_family} model"):
        MEND(checkpoint=str(path)).setup(other_model, other_tokenizer, architecture_of(other_model),
                                         EditContext(str(other), progress=False))
    meta = json.loads((path / "mend.json").read_text())
    meta["modules"] = {name: [size + 1 for size in shape] for name, shape in meta["modules"].items()}
    (path / "mend.json").write_text(json.dumps(meta))
    with pytest.raises(MendCheckpointError, match="has \\(input, output\\) sizes"):
        MEND(checkpoint=str(path)).setup(model, tokenizer, arch, EditContext(str(folder), progress=False))


@pytest.mark.skipif(not SHIPPED.exists(), reason="the shipped MEND editor is trained by configs/fit/mend_factworld.yaml")
def test_the_shipped_editor_flips_held_out_facts_and_leaves_unrelated_ones():
    """Requests 0–19 of the fact-world edit set: never seen in MEND training (records 300–999)."""
    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints" / "factworld-gpt2"))
    model.requires_grad_(False)
    arch = architecture_of(model)
    data = MendDataModule(train_start=0, train_stop=20, val_start=20, val_stop=40)
    data.setup("fit")
    editor = MEND(checkpoint=str(SHIPPED))
    editor.setup(model, tokenizer, arch, EditContext("checkpoints/factworld-gpt2", progress=False))
    names = editor.parameter_names(model, arch)
    originals = {n: model.get_parameter(n).detach().clone() for n in names}
    flipped = kept = 0
    for request in data.train_requests:
        probe = request.locality[0]
        before = score_answers(model, tokenizer, [probe.prompt], [probe.answer])[0].predicted
        editor.edit(model, tokenizer, arch, [request])
        score = score_answers(model, tokenizer, [request.prompt.format(request.subject)], [request.target_new])[0]
        flipped += score.token_accuracy == 1.0
        kept += score_answers(model, tokenizer, [probe.prompt], [probe.answer])[0].predicted == before
        for name, value in originals.items():
            model.get_parameter(name).data.copy_(value)
    assert flipped >= 16 and kept >= 16, (flipped, kept)


def test_edit_weights_applies_minus_eta_times_the_pseudo_gradient(tiny):
    _, model, tokenizer, names = tiny
    network = MendNetwork({name: module_io_sizes(model.get_submodule(name)) for name in names}, rank=4,
                          edit_lr=0.25).eval()
    ids, mask, labels = labelled_batch(tokenizer, PROMPTS[:1], ANSWERS[:1])
    factors, _ = gradient_factors(model, names, ids, mask, labels)
    expected = {}
    for name in names:
        x, d = network(name, factors[name].inputs, factors[name].output_grads)
        expected[f"{name}.weight"] = -0.5 * pseudo_gradient(x, d, stored_as_input_by_output(model.get_submodule(name)))
    before = {n: model.get_parameter(n).detach().clone() for n in expected}
    deltas = edit_weights(model, network, factors, lr_scale=2.0)
    for name, delta in expected.items():
        assert torch.allclose(deltas[name], delta, atol=1e-6)
        model.get_parameter(name).data.copy_(before[name])
    assert transformed_factors(network, factors, 1)[names[0]][0].shape[0] == 1


REAL_ZSRE = SHARED_DATA / "zsre" / "zsre_mend_eval_portability_gpt4.json"


@pytest.mark.skipif(not REAL_ZSRE.exists(), reason=f"real ZsRE data not found at {REAL_ZSRE}")
def test_training_reads_the_real_zsre_format_through_the_data_root():
    """The MEND loaders take the published ZsRE MEND format under ``root`` (here the eval file split in two)."""
    data = MendDataModule(root=str(SHARED_DATA), train_path="zsre/zsre_mend_eval_portability_gpt4.json",
                          val_path="zsre/zsre_mend_eval_portability_gpt4.json", train_start=0, train_stop=4,
                          val_start=4, val_stop=8)
    data.setup("fit")
    assert len(data.train_requests) == 4 and len(data.val_requests) == 4
    assert all(r.rephrase_prompts and r.locality for r in data.train_requests)
    module = MendModule(rank=8, edit_loss_on="both")
    results = module.edit_losses(data.train_requests, generality=True)
    assert all(torch.isfinite(value) for value in results.values())
    assert float(results["nll_before"]) > 0
