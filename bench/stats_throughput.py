"""Statistics collection throughput: ``collect_second_moments`` vs a plain forward pass over the same token batches.

The batches are made once by ``token_batches`` (the documents cut to 256 tokens, about 4,096 tokens a batch) and
reused by every measurement, so tokenization is not timed. Per model and layer set, side by side in one run and
interleaved over ``--repeats`` rounds (median of each):
  * ``forward``: the whole model, ``model(input_ids, attention_mask)`` with the logits;
  * ``to deepest``: the forward stopped after the deepest requested layer's FFN output projection, recording
    its input as the collection does but accumulating nothing: the least work a collection must do;
  * ``collect``: the collection itself (padded positions dropped, keys cast to ``--dtype``, float64 by default,
    Σ k kᵀ per layer).

The ratio ``collect / to deepest`` is the collection's throughput against its bound (the limit is 1); the ratio
``collect / forward`` compares with a full forward pass (above 1 is possible: the collection stops early).
Layer sets: the editing layers of the fact-world configs ([0, 1]) and all layers (the deepest is the last).

    python bench/stats_throughput.py [--models checkpoints/factworld-gpt2 random-gpt2 random-llama]
                                     [--tokens 8192] [--repeats 5] [--dtype float32] [--threads 1]
                                     [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from lit_edit.data.corpus import read_texts
from lit_edit.hooks import forward_until, record
from lit_edit.models import architecture_of, load_model_and_tokenizer, load_tokenizer
from lit_edit.stats import collect_second_moments, token_batches

RANDOM = {  # tiny random models with the fact-world tokenizers (4 layers, d = 128): tokenizer folder, config
    "random-gpt2": ("tokenizer-gpt2", lambda **ids: GPT2Config(n_embd=128, n_layer=4, n_head=4, n_inner=512,
                                                               n_positions=1024, **ids)),
    "random-llama": ("tokenizer-llama", lambda **ids: LlamaConfig(hidden_size=128, num_hidden_layers=4,
                                                                  num_attention_heads=4, intermediate_size=352,
                                                                  max_position_embeddings=1024, **ids)),
}


def _load(name: str, device: torch.device):
    if name in RANDOM:
        folder, config = RANDOM[name]
        tokenizer = load_tokenizer(f"data/factworld/{folder}")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config(
            vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id))
    else:
        model, tokenizer = load_model_and_tokenizer(name)
    return model.to(device).eval(), tokenizer


def _timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measure(model, batches: list[dict], layers: list[int], repeats: int,
            dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Median seconds over ``repeats`` interleaved rounds of each of the three passes over ``batches``."""
    arch = architecture_of(model)
    device = next(model.parameters()).device
    deepest = arch.ffn_out_at(max(layers))
    on_device = [{k: v.to(device) for k, v in batch.items()} for batch in batches]

    def forward():
        for batch in on_device:
            model(**batch)

    def to_deepest():
        for batch in on_device:
            with record(model, [deepest], stop_after=deepest):
                forward_until(model, **batch)

    def collect():
        collect_second_moments(model, arch, layers, on_device, dtype, progress=False)

    passes = {"forward": forward, "to deepest": to_deepest, "collect": collect}
    times = {name: [] for name in passes}
    with torch.no_grad():
        for fn in passes.values():  # warm-up
            fn()
        for _ in range(repeats):
            for name, fn in passes.items():
                times[name].append(_timed(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["checkpoints/factworld-gpt2", "random-gpt2", "random-llama"])
    parser.add_argument("--corpus", default="data/factworld/corpus/train.jsonl")
    parser.add_argument("--tokens", type=int, default=8_192, help="tokens per pass (whole batches, at least this)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", help="accumulation dtype of the collection")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch's default unless given)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    texts = read_texts(args.corpus)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{where}; documents cut to {args.max_length} tokens; {args.dtype} sums; median of {args.repeats} rounds")
    print(f"{'model':30s} {'layers':>8s} {'tokens':>7s} {'forward tok/s':>13s} {'to deepest':>10s} "
          f"{'collect':>9s} {'collect/forward':>15s} {'collect/to deepest':>18s}")
    for name in args.models:
        model, tokenizer = _load(name, device)
        batches, tokens = [], 0
        for batch in token_batches(tokenizer, texts, args.max_length):
            batches.append(batch)
            tokens += int(batch["attention_mask"].sum())
            if tokens >= args.tokens:
                break
        n_layers = architecture_of(model).n_layers(model)
        for layers in ([0, 1], list(range(n_layers))):
            t = measure(model, batches, layers, args.repeats, getattr(torch, args.dtype))
            rate = {k: tokens / v for k, v in t.items()}
            label = f"{layers[0]}-{layers[-1]}" if len(layers) > 2 else ",".join(map(str, layers))
            print(f"{name.removeprefix('checkpoints/'):30s} {label:>8s} {tokens:7d} {rate['forward']:13,.0f} "
                  f"{rate['to deepest']:10,.0f} {rate['collect']:9,.0f} {t['forward'] / t['collect']:15.2f} "
                  f"{t['to deepest'] / t['collect']:18.2f}", flush=True)


if __name__ == "__main__":
    main()
