"""Second-moment statistics for several layers: one forward pass for all layers vs one pass per layer.

Same model, corpus and token budget each way; prints forward tokens, wall time and the ratios, and checks that
the two give the same C.
    python bench/stats_one_pass.py [--layers 0 1 2 3] [--tokens 40000]
    python bench/stats_one_pass.py --random-layers 8 --layers 1 2 3 4 5     # five edited layers, as MEMIT
"""

from __future__ import annotations

import argparse
import time

import torch

from lit_edit.data.corpus import read_texts
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.stats import collect_second_moments, token_batches


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="checkpoints/factworld-gpt2")
    parser.add_argument("--layers", type=int, nargs="+", default=None)
    parser.add_argument("--tokens", type=int, default=40_000)
    parser.add_argument("--random-layers", type=int, default=0,
                        help="use a random GPT-2 of this many layers (fact-world size and tokenizer) instead of --model")
    args = parser.parse_args()
    model, tokenizer = load_model_and_tokenizer(args.model)
    if args.random_layers:
        from transformers import GPT2Config, GPT2LMHeadModel

        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=192, n_head=4, n_inner=768,
                                           n_positions=256, n_layer=args.random_layers)).eval()
        args.model = f"random GPT-2, {args.random_layers} layers, d=192, m=768"
    arch = architecture_of(model)
    layers = args.layers or list(range(arch.n_layers(model)))
    texts = read_texts("data/factworld/corpus/train.jsonl")

    def batches():
        return token_batches(tokenizer, texts, 256)

    start = time.perf_counter()
    together = collect_second_moments(model, arch, layers, batches(), max_tokens=args.tokens, progress=False)
    t_one = time.perf_counter() - start
    start = time.perf_counter()
    apart = {}
    for layer in layers:
        apart.update(collect_second_moments(model, arch, [layer], batches(), max_tokens=args.tokens, progress=False))
    t_each = time.perf_counter() - start
    gap = max(float((together[layer].sum_kkt - apart[layer].sum_kkt).abs().max()) for layer in layers)
    tokens = together[layers[0]].count
    print(f"model {args.model}, layers {layers}, {tokens} tokens per layer")
    print(f"  one pass for all layers  {t_one:7.2f} s  forward tokens {tokens}")
    print(f"  one pass per layer       {t_each:7.2f} s  forward tokens {tokens * len(layers)}")
    print(f"  ratio                    {t_each / t_one:7.2f} x time, {len(layers):.2f} x tokens   "
          f"(max |ΔΣkkᵀ| = {gap:.1e})")


if __name__ == "__main__":
    main()
