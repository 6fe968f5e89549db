"""Model folders an editing run cannot use are refused when the module is built, before any work, naming the path:
a tokenizer with more tokens than the model has embeddings, a folder without tokenizer files (transformers would
build a one-token tokenizer from config.json alone), and a truncated or corrupt model.safetensors. The folder is
left as it was."""

from __future__ import annotations

import shutil

import pytest
from transformers import AutoModelForCausalLM, GPT2Config

from lit_edit.editors import FT
from lit_edit.models.loading import ModelLoadError, load_tokenizer
from lit_edit.modules import EditingModule
from tests.conftest import FACTWORLD


def _contents(folder) -> dict:
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


def _build(folder, tmp_path, **options):
    return EditingModule(str(folder), FT(layers=[1]), results_dir=str(tmp_path / "run"),
                         cache_dir=str(tmp_path / "cache"), **options)


def test_a_tokenizer_with_more_tokens_than_the_embeddings_is_refused(tmp_path):
    folder = tmp_path / "small-vocab"
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-gpt2"))
    config = GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    before = _contents(folder)
    with pytest.raises(ModelLoadError, match=rf"tokenizer at '.*small-vocab' has {len(tokenizer)} tokens but the model "
                                             r"has only 100 embeddings"):
        _build(folder, tmp_path)
    assert _contents(folder) == before and not (tmp_path / "run").exists()


def test_a_folder_without_tokenizer_files_is_refused(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "weights-only"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_gpt2_dir / name, folder / name)
    before = _contents(folder)
    with pytest.raises(ModelLoadError, match=r"'.*weights-only' holds no tokenizer \(none of tokenizer.json, "
                                             r"tokenizer.model, vocab.json.*\); copy the model's tokenizer files"):
        _build(folder, tmp_path)
    assert _contents(folder) == before and not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_weights_file_is_named(tiny_gpt2_dir, tmp_path, damage):
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_gpt2_dir, folder)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a safetensors file" * 4)
    before = _contents(folder)
    with pytest.raises(ModelLoadError, match=r"damaged/model.safetensors of '.*damaged' is not a readable safetensors "
                                             r"file \(.*\): truncated or corrupt; copy it again"):
        _build(folder, tmp_path)
    assert _contents(folder) == before and not (tmp_path / "run").exists()
