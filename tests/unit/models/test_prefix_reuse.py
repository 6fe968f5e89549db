"""Re-running each row from one position on with the earlier positions' keys and values kept
(lit_edit/models/prefix_reuse.py) against the full forward pass on every supported family, and value optimisation with
``reuse_prefix`` against the full rows: equal up to float32 rounding, fewer positions per step."""

import dataclasses

import pytest
import torch

from lit_edit.editing.comeba import ComebaHyperparams
from lit_edit.editing.options import EditorOptionError
from lit_edit.editing.values import ValueHyperparams, optimize_values
from lit_edit.hooks import rewrite_output
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.models.prefix_reuse import PrefixReuse, prefix_reuse_supported
from tests.conftest import load_frozen
from tests.unit.editing.test_values import TARGETS, TEMPLATES

UNSUPPORTED = {"mistral"}    # its cache layers are sliding windows: the full rows run instead


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    model = model.eval().requires_grad_(False)
    assert prefix_reuse_supported(model) == (family not in UNSUPPORTED)
    return family, model, tokenizer


def _batch(tokenizer):
    """Right-padded rows of different lengths, each with its own start: the middle, the last token, the first."""
    texts = ["Alda Venkor was born in Port Ivory", "The pet of Bram Tosk is a parrot and more words follow here",
             "Ziva Lunn"]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    lengths = batch["attention_mask"].sum(1)
    start = torch.stack([lengths[0] // 2, lengths[1] - 1, torch.tensor(0)])
    assert (batch["attention_mask"] == 0).any() and len(set(start.tolist())) == 3
    return batch["input_ids"], batch["attention_mask"], start


@pytest.mark.parametrize("layer", [0, 2])
def test_the_suffix_pass_equals_the_full_pass_with_a_change_at_each_rows_start(tiny, layer):
    family, model, tokenizer = tiny
    if family in UNSUPPORTED:
        pytest.skip(f"{family}: not supported, the full rows run (see the value-optimisation test)")
    ids, mask, start = _batch(tokenizer)
    arch = architecture_of(model)
    shift = torch.linspace(-1, 1, arch.hidden_size(model))
    rows = torch.arange(ids.shape[0])
    reuse = PrefixReuse.record(model, ids, mask, start, tokenizer.pad_token_id)

    def at_start(out):
        out = out.clone()
        out[rows, start] += shift
        return out

    def at_first_column(out):
        out = out.clone()
        out[:, 0] += shift
        return out

    with torch.no_grad():
        with rewrite_output(model, {arch.ffn_at(layer): at_start}):
            full = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        with rewrite_output(model, {arch.ffn_at(layer): at_first_column}):
            suffix = model.base_model(**reuse.suffix_inputs(model.base_model)).last_hidden_state
    assert suffix.shape[1] == int((mask.sum(1) - start).max()) < ids.shape[1]
    for row in range(ids.shape[0]):
        columns = reuse.valid[row].nonzero().squeeze(1)
        expected = full[row, start[row] + columns]
        torch.testing.assert_close(suffix[row, columns], expected, rtol=1e-5, atol=1e-5)
    # the change is there, so the comparison is not between two unchanged passes
    with torch.no_grad():
        plain = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert not torch.allclose(plain[rows, start], full[rows, start])


def test_the_suffix_pass_in_bfloat16_equals_the_full_pass_to_its_rounding(tiny_model_dir):
    """The mask is made in the model's dtype (attention refuses a float32 mask beside bf16 queries)."""
    family, folder = tiny_model_dir
    if family in UNSUPPORTED:
        pytest.skip(f"{family}: not supported")
    model, tokenizer, _ = load_frozen(folder, torch.bfloat16)
    ids, mask, start = _batch(tokenizer)
    reuse = PrefixReuse.record(model, ids, mask, start, tokenizer.pad_token_id)
    assert reuse.attention_mask.dtype == torch.bfloat16
    with torch.no_grad():
        full = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        suffix = model.base_model(**reuse.suffix_inputs(model.base_model)).last_hidden_state
    for row in range(ids.shape[0]):
        columns = reuse.valid[row].nonzero().squeeze(1)
        torch.testing.assert_close(suffix[row, columns], full[row, start[row] + columns], rtol=0.05, atol=0.05)


def test_a_model_in_training_mode_with_other_attention_or_without_a_config_runs_the_full_rows(tiny):
    family, model, _ = tiny
    assert not prefix_reuse_supported(torch.nn.Linear(2, 2))
    try:
        model.train()
        assert not prefix_reuse_supported(model)
    finally:
        model.eval()
    implementation = model.config._attn_implementation
    try:
        model.config._attn_implementation = "eager"
        assert prefix_reuse_supported(model) == (family not in UNSUPPORTED)
        model.config._attn_implementation = "flash_attention_2"      # takes no 4-D mask
        assert not prefix_reuse_supported(model)
    finally:
        model.config._attn_implementation = implementation


def test_a_start_outside_its_row_is_refused(tiny):
    _, model, tokenizer = tiny
    ids, mask, start = _batch(tokenizer)
    start[2] = mask[2].sum()       # one past the last token of the short row
    with pytest.raises(ValueError, match="every start must be a token of its row"):
        PrefixReuse.record(model, ids, mask, start, tokenizer.pad_token_id)


@pytest.mark.parametrize(("kind", "layer"), [("ffn", 0), ("ffn", 1), ("block", 1)])
def test_value_optimisation_reusing_the_prefix_equals_the_full_rows(tiny, kind, layer):
    """δ inside block l (ROME: FFN output) and at the output of block l (MEMIT), the lower blocks kept or not."""
    family, model, tokenizer = tiny
    arch = architecture_of(model)
    module = arch.layer(layer) if kind == "block" else arch.ffn_at(layer)
    hp = ValueHyperparams(steps=5, lr=0.05, weight_decay=0.0, clamp_norm_factor=100.0)
    full = optimize_values(model, tokenizer, module, TARGETS, hp, TEMPLATES)
    assert int(full.steps_taken.max()) > 0
    for reuse_lower_layers in (True, False):
        reused = optimize_values(model, tokenizer, module, TARGETS, dataclasses.replace(hp, reuse_prefix=True),
                                 TEMPLATES, reuse_lower_layers=reuse_lower_layers)
        assert torch.equal(reused.steps_taken, full.steps_taken)
        for name in ("values", "initial_outputs", "first_loss", "last_loss"):
            if family in UNSUPPORTED:      # the full rows: the same numbers
                assert torch.equal(getattr(reused, name), getattr(full, name)), name
            else:
                torch.testing.assert_close(getattr(reused, name), getattr(full, name), rtol=1e-4, atol=1e-5)


def test_each_step_runs_only_the_positions_from_the_subject_on(tiny):
    family, model, tokenizer = tiny
    if family in UNSUPPORTED:
        pytest.skip(f"{family}: not supported")
    arch = architecture_of(model)
    widths = {False: [], True: []}
    hp = ValueHyperparams(steps=4, lr=0.05, weight_decay=0.0, stop_loss=0.0)
    for reuse in widths:
        handle = model.get_submodule(arch.layer(1)).register_forward_pre_hook(
            lambda module, args, kwargs, reuse=reuse: widths[reuse].append(
                (kwargs.get("hidden_states", args[0] if args else None)).shape[1]), with_kwargs=True)
        try:
            optimize_values(model, tokenizer, arch.ffn_at(1), TARGETS, dataclasses.replace(hp, reuse_prefix=reuse),
                            TEMPLATES)
        finally:
            handle.remove()
    full_width, suffix_width = max(widths[False]), widths[True][-1]
    # the first pass runs the full rows once; the steps (the last three calls) only the suffix
    assert widths[True][0] == full_width and set(widths[True][-3:]) == {suffix_width} and suffix_width < full_width


def test_comeba_with_hook_layers_refuses_prefix_reuse():
    with pytest.raises(EditorOptionError, match="values.reuse_prefix: COMEBA-HK's gate"):
        ComebaHyperparams(layers=[1], values=ValueHyperparams(reuse_prefix=True))
    assert ComebaHyperparams(layers=[1], hooks=False, values=ValueHyperparams(reuse_prefix=True)).values.reuse_prefix
