import json

import pytest
import torch

from lit_edit.models import ARCHITECTURES, ModelLoadError, architecture_of, load_model, load_model_and_tokenizer
from lit_edit.models.architectures import UnsupportedArchitectureError


def test_every_described_module_exists_with_the_right_shape(tiny_model_dir):
    family, folder = tiny_model_dir
    model, tokenizer = load_model_and_tokenizer(str(folder))
    arch = architecture_of(model)
    assert arch.name == family
    d, m, n = arch.hidden_size(model), arch.inner_size(model), arch.n_layers(model)
    assert n == 3 and d == 32
    for layer in range(n):
        w = arch.to_math(arch.edit_weight(model, layer))
        assert tuple(w.shape) == (d, m), f"{family} layer {layer}: math-layout weight must be [d, m]"
        assert model.get_submodule(arch.ffn_in_at(layer)) is not None
        assert model.get_submodule(arch.ffn_at(layer)) is not None
        assert model.get_submodule(arch.layer(layer)) is not None
    assert model.get_submodule(arch.final_norm) is not None
    assert model.get_submodule(arch.unembedding).weight.shape[0] == len(tokenizer)
    assert model.get_submodule(arch.embedding).weight.shape == (len(tokenizer), d)


def test_the_math_layout_computes_the_module_output(tiny_model_dir):
    """W k + b with W from ``to_math`` must equal what the FFN output module computes."""
    _, folder = tiny_model_dir
    model = load_model(str(folder))
    arch = architecture_of(model)
    module = model.get_submodule(arch.ffn_out_at(1))
    k = torch.randn(5, arch.inner_size(model))
    expected = module(k)
    bias = module.bias if module.bias is not None else 0
    assert torch.allclose(k @ arch.to_math(module.weight).T + bias, expected, atol=1e-5)
    delta = torch.randn(arch.hidden_size(model), arch.inner_size(model))
    assert arch.from_math(delta).shape == module.weight.shape


def test_layer_out_of_range_names_the_valid_range(tiny_gpt2_dir):
    model = load_model(str(tiny_gpt2_dir))
    with pytest.raises(IndexError, match=r"layers 0\.\.2"):
        architecture_of(model).edit_weight(model, 3)


def test_unknown_architecture_lists_the_supported_ones(tmp_path):
    from transformers import BloomConfig, BloomForCausalLM

    BloomForCausalLM(BloomConfig(vocab_size=50, hidden_size=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedArchitectureError) as info:
        load_model(str(tmp_path))
    for name in ARCHITECTURES:
        assert name in str(info.value)
    assert "architectures.py" in str(info.value)


def test_missing_directory_is_named(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match="no-such-model"):
        load_model(str(missing))


def test_folder_without_config_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(str(tmp_path))


def test_tokenizer_model_mismatch_is_refused(tiny_gpt2_dir, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=100, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="do not belong together"):
        load_model_and_tokenizer(str(tmp_path), tokenizer=str(tiny_gpt2_dir))


def test_bad_dtype_is_refused(tiny_gpt2_dir):
    with pytest.raises(ValueError, match="float64x"):
        load_model(str(tiny_gpt2_dir), dtype="float64x")


def test_bfloat16_loading(tiny_gpt2_dir):
    model = load_model(str(tiny_gpt2_dir), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert json.loads((tiny_gpt2_dir / "config.json").read_text())["model_type"] == "gpt2"


def test_every_supported_family_has_a_tiny_model_for_the_layout_tests():
    """docs/adding-a-model.md: a family added to ARCHITECTURES is covered by the tests over ``tiny_model_dir``."""
    from tests.conftest import TINY_CONFIGS

    assert sorted(ARCHITECTURES) == sorted(TINY_CONFIGS)
