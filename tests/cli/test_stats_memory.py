"""Statistics collection on a model configured with a 128k context length uses bounded memory (measured peak).

A tiny random LLaMA with ``max_position_embeddings=131072`` collects C over documents of 200,000–700,000
characters (the longest is longer than the model's context). The peak resident memory of the collection is
measured in a fresh subprocess: the kernel's high-water mark (``VmHWM``) is reset through
``/proc/self/clear_refs`` just before ``collect_second_moments`` and read right after it, against the resident
size at the reset. With ``max_length=256`` the increase must stay under ``BOUND``; the same measurement at
``max_length=8192`` must exceed it, and a forward over the model's whole context would need at least the keys
it records, computed from tensor sizes, far above it.

The batches are built by ``token_batches`` in the test process and loaded by the measuring one, so that memory the
tokenizer frees (kept by the allocator) cannot hide part of the collection's. The whole pipeline, tokenization
included, is measured on its own in a third test: ``first_tokens`` tokenizes only a prefix of each document (before
it did, the 700,000-character document alone cost about 100 MiB of peak memory, 150 bytes per character).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]   # run as a script too: no package import of tests

CONTEXT = 131_072
LAYERS = (0, 1)
HIDDEN, INNER = 64, 256
DOC_CHARS = (700_000, 400_000, 300_000, 200_000)
BOUND = 64 * 2**20  # bytes above the resident size at the start of the collection


def _documents() -> list[str]:
    """Very long documents: the fact-world corpus joined and cut into pieces of ``DOC_CHARS`` characters."""
    from lit_edit.data.corpus import read_texts

    joined = " ".join(read_texts(ROOT / "data/factworld/corpus/train.jsonl"))
    starts = [sum(DOC_CHARS[:i]) for i in range(len(DOC_CHARS))]
    assert starts[-1] + DOC_CHARS[-1] <= len(joined)
    return [joined[start:start + n] for start, n in zip(starts, DOC_CHARS)]


def _tokenizer():
    from lit_edit.models.loading import load_tokenizer

    return load_tokenizer(str(ROOT / "data/factworld/tokenizer-llama"))


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _model():
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    tokenizer = _tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=INNER,
                         num_hidden_layers=len(LAYERS), num_attention_heads=4, max_position_embeddings=CONTEXT,
                         pad_token_id=tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def _peak_above_start(fn) -> tuple[object, int]:
    """``fn()`` and the peak resident memory during it above the resident size at its start."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark (VmHWM) to the current resident size
    start = _status_bytes("VmRSS")
    result = fn()
    return result, _status_bytes("VmHWM") - start


def _measure(mode: str, argument: str) -> list[dict]:
    """In this (fresh) process, the key count and the peak memory above the start of each collection.

    ``collect``: over the token batches saved in ``argument`` (one list of batches per run, measured in order);
    ``pipeline``: ``token_batches`` over the documents (``argument`` = max_length) streamed into the collection,
    tokenization included.
    """
    import torch

    from lit_edit.models import architecture_of
    from lit_edit.stats import collect_second_moments, token_batches

    model, tokenizer = _model()
    arch = architecture_of(model)

    def collect(batches):
        return collect_second_moments(model, arch, list(LAYERS), batches, progress=False)[LAYERS[0]].count

    if mode == "collect":
        runs = [_peak_above_start(lambda b=batches: collect(b)) for batches in torch.load(argument)]
    else:
        documents = _documents()
        runs = [_peak_above_start(lambda: collect(token_batches(tokenizer, documents, int(argument))))]
    return [{"count": count, "increase": increase, "context": model.config.max_position_embeddings}
            for count, increase in runs]


def _run_child(*args: str) -> list[dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def document_tokens() -> list[int]:
    tokenizer = _tokenizer()
    return [len(tokenizer(text, verbose=False)["input_ids"]) for text in _documents()]


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> list[dict]:
    """The collection alone over ``token_batches`` of all documents at max_length 256, then of the longest one
    at 8192 (batched here, measured in a fresh process in that order)."""
    import torch

    from lit_edit.stats import token_batches

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
    tokenizer, documents = _tokenizer(), _documents()
    path = tmp_path_factory.mktemp("stats-memory") / "batches.pt"
    torch.save([list(token_batches(tokenizer, documents, 256)), list(token_batches(tokenizer, documents[:1], 8192))],
               path)
    return _run_child("collect", str(path))


def _keys_bytes(tokens: int) -> int:
    """What one forward over ``tokens`` positions holds at least: each layer's recorded fp32 keys and their
    float64 copy (``collect_second_moments`` keeps all layers' keys of a batch at once)."""
    return tokens * len(LAYERS) * INNER * (4 + 8)


def test_bounded_memory_on_documents_longer_than_the_context(collected, document_tokens):
    bounded = collected[0]
    assert bounded["context"] == CONTEXT
    assert max(document_tokens) > CONTEXT  # the longest document does not even fit the model
    assert bounded["count"] == sum(min(n, 256) for n in document_tokens)
    assert bounded["increase"] < BOUND, f"peak {bounded['increase'] / 2**20:.1f} MiB above the start"


def test_the_bound_is_one_a_full_context_forward_breaks(collected, document_tokens):
    """The measurement sees per-forward memory (8192 tokens already pass the bound), and a forward over the
    model's whole context would need, for its keys alone, many times the bound."""
    longer = collected[1]
    assert longer["count"] == 8192
    assert longer["increase"] > max(BOUND, _keys_bytes(8192)), f"{longer['increase'] / 2**20:.1f} MiB"
    full_context = min(max(document_tokens), CONTEXT)
    assert _keys_bytes(full_context) > 10 * BOUND


def test_bounded_memory_with_tokenization_of_long_documents(document_tokens):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to reset the peak resident size")
    (pipeline,) = _run_child("pipeline", "256")
    assert pipeline["count"] == sum(min(n, 256) for n in document_tokens)
    assert pipeline["increase"] < BOUND, f"peak {pipeline['increase'] / 2**20:.1f} MiB above the start"


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], sys.argv[2])))
