import pytest
import torch

from lit_edit.hooks import StopForward, forward_until, record, rewrite_input, rewrite_output
from lit_edit.models import architecture_of, load_model


@pytest.fixture(scope="module")
def model(tiny_gpt2_dir):
    return load_model(str(tiny_gpt2_dir))


def _inputs():
    torch.manual_seed(1)
    return {"input_ids": torch.randint(0, 100, (2, 7))}


def test_record_captures_ffn_key_and_block_output(model):
    arch = architecture_of(model)
    with record(model, [arch.ffn_out_at(1), arch.layer(1), arch.ffn_in_at(1)]) as seen:
        model(**_inputs())
    mlp = model.get_submodule(arch.ffn_at(1))
    expected_key = mlp.act(seen[arch.ffn_in_at(1)].output)
    assert torch.allclose(seen[arch.ffn_out_at(1)].input, expected_key, atol=1e-6)
    assert seen[arch.layer(1)].output.shape == (2, 7, arch.hidden_size(model))


def test_rewrite_output_changes_the_logits_and_is_removed_afterwards(model):
    arch = architecture_of(model)
    before = model(**_inputs()).logits
    with rewrite_output(model, {arch.layer(2): lambda h: h + 1.0}):
        during = model(**_inputs()).logits
    after = model(**_inputs()).logits
    assert not torch.allclose(before, during)
    assert torch.equal(before, after)


def test_rewrite_input_zero_key_equals_bias_only(model):
    arch = architecture_of(model)
    name = arch.ffn_out_at(0)
    with rewrite_input(model, {name: torch.zeros_like}), record(model, [name]) as seen:
        model(**_inputs())
    bias = model.get_submodule(name).bias
    assert torch.allclose(seen[name].output, bias.expand_as(seen[name].output))


def test_hooks_are_removed_when_the_block_raises(model):
    arch = architecture_of(model)
    before = model(**_inputs()).logits
    with pytest.raises(RuntimeError, match="boom"):
        with rewrite_output(model, {arch.layer(0): lambda h: h * 0}), record(model, [arch.layer(1)]):
            raise RuntimeError("boom")
    assert torch.equal(model(**_inputs()).logits, before)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_stop_after_ends_the_forward_pass_early(model):
    arch = architecture_of(model)
    with record(model, [arch.layer(0), arch.layer(2)], stop_after=arch.layer(0)) as seen:
        forward_until(model, **_inputs())
    assert seen[arch.layer(0)].output is not None
    assert seen[arch.layer(2)].output is None
    with pytest.raises(StopForward), record(model, [arch.layer(0)], stop_after=arch.layer(0)):
        model(**_inputs())


def test_unknown_module_name_is_named(model):
    with pytest.raises(KeyError, match="transformer.h.99"):
        with record(model, ["transformer.h.99"]):
            pass
