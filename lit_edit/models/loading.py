"""Loading any Hugging Face causal LM and its tokenizer from a local folder (or a hub name when online)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from lit_edit.models.architectures import architecture_of
from lit_edit.paths import candidates, resolve_path

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "auto": "auto"}


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model", "vocab.txt")
"""A local folder holds a tokenizer only with one of these (``tokenizer_config.json`` alone describes none)."""


class ModelLoadError(OSError):
    """The model or tokenizer could not be loaded; the message names the path and what is wrong."""


def locate_model(name_or_path: str) -> str:
    """``name_or_path`` as written when it exists from here, else a local folder found under the data root or in
    the project (``lit_edit.paths``), else unchanged: a hub name such as ``gpt2-xl`` or ``meta-llama/Llama-2-7b-hf``.
    (As written where it can be, so that caches keyed by the model's name stay the same.)"""
    return name_or_path if Path(name_or_path).expanduser().exists() else str(resolve_path(name_or_path))


def _check_location(name_or_path: str) -> None:
    path = Path(name_or_path).expanduser()
    hub_like = not name_or_path.startswith((".", "~", os.sep)) and name_or_path.count("/") <= 1
    looks_local = path.exists() or not hub_like
    if looks_local and not path.is_dir():
        raise ModelLoadError(f"model directory {str(path)!r} does not exist")
    if looks_local and not (path / "config.json").exists():
        raise ModelLoadError(f"{str(path)!r} has no config.json: not a Hugging Face model folder")


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model, with a pad token (EOS when the tokenizer has none). A local folder without
    tokenizer files is refused (transformers would build a tokenizer of one token from ``config.json`` alone)."""
    name_or_path = locate_model(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and not any((path / name).exists() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{str(path)!r} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); copy the "
                             "model's tokenizer files into it")
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"could not load a tokenizer from {name_or_path!r}: {e}") from e
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name_or_path: str, dtype: str = "float32", device: str | torch.device = "cpu") -> PreTrainedModel:
    """Load a causal LM in evaluation mode and check that its family is described."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    name_or_path = locate_model(name_or_path)
    _check_location(name_or_path)
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=DTYPES[dtype])
    except (OSError, ValueError) as e:
        where = "" if Path(name_or_path).is_dir() else (
            " (not a local folder in any of " + ", ".join(str(c) for c in candidates(name_or_path))
            + ", so it was taken as a Hugging Face hub name)")
        raise ModelLoadError(f"could not load a causal LM from {name_or_path!r}{where}: {e}") from e
    except SafetensorError as e:
        raise ModelLoadError(f"{_weight_files(name_or_path)} of {name_or_path!r} is not a readable safetensors "
                             f"file ({e}): truncated or corrupt; copy it again") from e
    except pickle.UnpicklingError as e:
        raise ModelLoadError(f"the PyTorch weights file of {name_or_path!r} holds objects other than tensors, which "
                             "lit-edit does not unpickle (that could run code): convert a trusted copy to "
                             "model.safetensors") from e
    architecture_of(model)
    return model.to(device).eval()


def _weight_files(name_or_path: str) -> str:
    """The weight files of a local model folder, for a message (the folder when it has none)."""
    files = sorted(Path(name_or_path).expanduser().glob("*.safetensors")) if Path(name_or_path).is_dir() else []
    return ", ".join(str(f) for f in files) or str(name_or_path)


def load_model_and_tokenizer(name_or_path: str, dtype: str = "float32", device: str | torch.device = "cpu",
                             tokenizer: str | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer, checked to fit each other (every token id must have an embedding row)."""
    model = load_model(name_or_path, dtype, device)
    tok = load_tokenizer(tokenizer or name_or_path)
    check_tokenizer_fits(model, tok, tokenizer or name_or_path)
    return model, tok


def check_tokenizer_fits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, where: str) -> None:
    n_embeddings = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > n_embeddings:
        raise ModelLoadError(f"tokenizer at {where!r} has {len(tokenizer)} tokens but the model has only "
                             f"{n_embeddings} embeddings: they do not belong together")
