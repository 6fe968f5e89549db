"""Re-running only the blocks from the edited layer on (lit_edit/models/upper_layers.py) against the full forward pass,
on every supported family, and value optimisation with the lower blocks kept against the same with every step a full
pass: the same numbers, bit for bit."""

import dataclasses

import pytest
import torch

from lit_edit.editing.values import ValueHyperparams, optimize_values
from lit_edit.hooks import rewrite_output
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.models.upper_layers import layer_of, record_upper_layers, upper_layers_supported
from tests.unit.editing.test_values import TARGETS, TEMPLATES


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    return model.eval(), tokenizer


def _padded_batch(tokenizer):
    # rows of different lengths, right-padded: the padding mask and the positions differ per row
    texts = ["Alda Venkor was born in Port", "The pet of Bram Tosk is a parrot and more words follow here", "Ziva"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"] == 0).any()
    return batch["input_ids"], batch["attention_mask"]


@pytest.mark.parametrize("first_layer", [0, 1, 2])
def test_upper_blocks_alone_equal_the_full_pass(tiny, first_layer):
    model, tokenizer = tiny
    ids, mask = _padded_batch(tokenizer)
    arch = architecture_of(model)
    shift = torch.linspace(-1, 1, arch.hidden_size(model))
    with torch.no_grad():
        with record_upper_layers(model, first_layer) as upper:
            model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
        # a change inside the first re-run block, as value optimisation makes, reaches the output the same way
        edits = {arch.ffn_at(first_layer): lambda out: out + shift}
        with rewrite_output(model, edits):
            full = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
            alone = upper.run()
        assert not torch.equal(full, model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state)
    assert torch.equal(alone, full)


@pytest.mark.parametrize(("kind", "layer"), [("block", 1), ("block", 2), ("ffn", 2)])
def test_value_optimisation_keeping_the_lower_blocks_is_unchanged(tiny, kind, layer):
    """δ inside block l (FFN output: blocks l… re-run) and at the output of block l (blocks l+1… re-run; at the last
    block the final norm alone) against a full pass at every step."""
    model, tokenizer = tiny
    arch = architecture_of(model)
    module = arch.layer(layer) if kind == "block" else arch.ffn_at(layer)
    hp = ValueHyperparams(steps=5, lr=0.05, weight_decay=0.0, clamp_norm_factor=100.0)
    kept = optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES)
    full = optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES, reuse_lower_layers=False)
    assert int(kept.steps_taken.max()) > 0
    for field in dataclasses.fields(kept):
        assert torch.equal(getattr(kept, field.name), getattr(full, field.name)), field.name


def _block_calls(model, tokenizer, module_of, steps: int) -> dict[int, int]:
    """How often each block runs while optimising values at ``module_of(arch)`` for ``steps`` steps."""
    arch = architecture_of(model)
    calls = {i: 0 for i in range(arch.n_layers(model))}
    handles = [model.get_submodule(arch.layer(i)).register_forward_pre_hook(
        lambda mod, args, i=i: calls.__setitem__(i, calls[i] + 1)) for i in calls]
    hp = ValueHyperparams(steps=steps, lr=0.05, weight_decay=0.0, stop_loss=0.0)   # no request stops early
    try:
        optimize_values(model, tokenizer, module_of(arch), TARGETS, hp, TEMPLATES)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def test_blocks_below_the_edited_layer_run_once(tiny):
    """δ at the FFN output of block 2: every step runs block 2 only; blocks 0 and 1 run in the first pass alone."""
    model, tokenizer = tiny
    assert _block_calls(model, tokenizer, lambda arch: arch.ffn_at(2), steps=4) == {0: 1, 1: 1, 2: 5}


@pytest.mark.parametrize(("layer", "expected"), [(1, {0: 1, 1: 1, 2: 5}), (2, {0: 1, 1: 1, 2: 1})])
def test_a_block_whose_output_is_edited_runs_once(tiny, layer, expected):
    """δ at the output of block l (MEMIT): block l runs in the first pass alone, like the blocks below it."""
    model, tokenizer = tiny
    assert _block_calls(model, tokenizer, lambda arch: arch.layer(layer), steps=4) == expected


def test_a_model_in_training_mode_runs_every_block_every_step(tiny):
    """Dropout draws new masks in every block at every step, so nothing below the edited layer is fixed."""
    model, tokenizer = tiny
    arch = architecture_of(model)
    calls = []
    handle = model.get_submodule(arch.layer(0)).register_forward_pre_hook(lambda mod, args: calls.append(1))
    hp = ValueHyperparams(steps=3, lr=0.05, weight_decay=0.0, stop_loss=0.0)
    model.train()
    try:
        optimize_values(model, tokenizer, arch.ffn_at(2), TARGETS, hp, TEMPLATES)
    finally:
        model.eval()
        handle.remove()
    assert len(calls) == 1 + hp.steps


def test_modules_outside_the_blocks_use_the_full_pass(tiny):
    model, _ = tiny
    arch = architecture_of(model)
    assert layer_of(arch, arch.ffn_at(1)) == 1 and layer_of(arch, arch.layer(2)) == 2
    assert not upper_layers_supported(model, arch.final_norm)
    assert not upper_layers_supported(model, arch.unembedding)
