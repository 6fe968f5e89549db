"""Shared fixtures: tiny random models of every supported family, saved to disk like real checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPTJConfig,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

from lit_edit.models.loading import load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TIERS = {"cli": pytest.mark.cli, "slow": pytest.mark.slow}
FACTWORLD = ROOT / "data" / "factworld"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The tiers follow the folders: a test under ``tests/cli/`` (command-line runs, subprocesses, signals) is
    marked ``cli``, one under ``tests/slow/`` ``slow``; ``tests/unit/`` is the fast tier,
    ``-m "not cli and not slow"``, except its tests marked ``cli`` by hand because they take seconds (a whole run
    on a model). Runs before ``-m`` selects."""
    for item in items:
        marker = TIERS.get(item.path.relative_to(TESTS).parts[0])
        if marker is not None:
            item.add_marker(marker)


def real_data_root() -> Path:
    """Where the tests that need the real data (ZsRE, the 8 task sets) read it: ``$LIT_EDIT_DATA`` (the data root,
    ``lit_edit/paths.py``), else ``$LIT_EDIT_SHARED_DATA``, else ``../shared/data`` beside the clone where it exists,
    else the project's ``data/`` (where ``python -m lit_edit.tools fetch_data`` writes by default)."""
    for variable in ("LIT_EDIT_DATA", "LIT_EDIT_SHARED_DATA"):
        if os.environ.get(variable, "").strip():
            return Path(os.environ[variable]).expanduser()
    beside = ROOT.parent / "shared" / "data"
    return beside if beside.exists() else ROOT / "data"


SHARED_DATA = real_data_root()

TINY_CONFIGS = {
    "gpt2": lambda v: GPT2Config(vocab_size=v, n_embd=32, n_layer=3, n_head=2, n_inner=64, n_positions=128),
    "gptj": lambda v: GPTJConfig(vocab_size=v, n_embd=32, n_layer=3, n_head=2, rotary_dim=8, n_positions=128,
                                 n_inner=64),
    "gpt_neox": lambda v: GPTNeoXConfig(vocab_size=v, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                        intermediate_size=64, max_position_embeddings=128),
    "llama": lambda v: LlamaConfig(vocab_size=v, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                   intermediate_size=48, max_position_embeddings=128),
    "mistral": lambda v: MistralConfig(vocab_size=v, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                       num_key_value_heads=1, intermediate_size=48, max_position_embeddings=128),
    "qwen2": lambda v: Qwen2Config(vocab_size=v, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                   num_key_value_heads=1, intermediate_size=48, max_position_embeddings=128),
}


def make_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Save a random tiny ``family`` model with the fact-world tokenizer into ``folder``."""
    tokenizer_dir = FACTWORLD / ("tokenizer-llama" if family in ("llama", "mistral", "qwen2") else "tokenizer-gpt2")
    tokenizer = load_tokenizer(str(tokenizer_dir))
    torch.manual_seed(seed)
    config = TINY_CONFIGS[family](len(tokenizer))
    config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    config.bos_token_id = tokenizer.bos_token_id
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def load_frozen(folder: Path, dtype: torch.dtype | None = None):
    """The model of ``folder`` in eval mode, no parameter requiring grad (in ``dtype`` where given), its tokenizer
    and its architecture."""
    from lit_edit.models import architecture_of, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(str(folder))
    model = (model if dtype is None else model.to(dtype)).eval().requires_grad_(False)
    return model, tokenizer, architecture_of(model)


@pytest.fixture(scope="session", params=sorted(TINY_CONFIGS))
def tiny_model_dir(request, tmp_path_factory) -> tuple[str, Path]:
    family = request.param
    return family, make_tiny_model(family, tmp_path_factory.mktemp(f"tiny-{family}"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return make_tiny_model("gpt2", tmp_path_factory.mktemp("tiny-gpt2-single"))


def run_edit_cli(tmp_path: Path, *args: str):
    """An in-process editing run (``main.py test``) with ``args`` (configs and overrides), writing its results to
    ``tmp_path / "run"`` and its caches to ``tmp_path / "cache"``, without logger or progress bar; returns the CLI."""
    from lit_edit.cli import LitEditCLI

    cli = LitEditCLI(args=[*args, "--model.init_args.results_dir", str(tmp_path / "run"),
                           "--model.init_args.cache_dir", str(tmp_path / "cache"), "--trainer.logger", "false",
                           "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"],
                     run=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    return cli
