"""Inference cost of COMEBA-HK's hook layers: the hooked model (validated gate) vs the plain model.

The hook layers hold a random ΔW on the edited layers (the cost does not depend on its values). Side by side on
the same batches: teacher-forced forward passes (tokens/s) and greedy generation with the KV cache (new tokens/s),
plain vs hooked; and the hooks' memory (bytes) against the model's parameters.
    python bench/hook_overhead.py [--model checkpoints/factworld-gpt2] [--layers 0 1] [--device cuda]
    python bench/hook_overhead.py --random gpt2-xl --layers 13 14 15 16 17 --device cuda   # GPT-2 XL shape, random
"""

from __future__ import annotations

import argparse
import time

import torch

from lit_edit.editing.hook_layers import HookBank
from lit_edit.generation import greedy_decode
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.stats import load_corpus_texts


def _random_model(name: str, device, dtype):
    from transformers import AutoModelForCausalLM, GPT2Config

    from lit_edit.models.loading import load_tokenizer

    if name != "gpt2-xl":
        raise ValueError(f"--random knows gpt2-xl only, got {name!r}")
    tokenizer = load_tokenizer("data/factworld/tokenizer-gpt2")
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=1600, n_layer=48, n_head=25, n_positions=1024)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).eval()
    return model, tokenizer


def _timed(fn, device, repeats):
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / repeats


@torch.no_grad()
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="checkpoints/factworld-gpt2")
    parser.add_argument("--random", default=None, help="a random model of this shape instead (gpt2-xl)")
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    if args.random:
        model, tokenizer = _random_model(args.random, device, dtype)
    else:
        model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
        model = model.to(dtype)
    arch = architecture_of(model)
    texts = load_corpus_texts("data/factworld/corpus/heldout.jsonl")[: args.batch]
    tokenizer.padding_side = "left"
    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=96).to(device)
    prompts = tokenizer([t[:60] for t in texts], return_tensors="pt", padding=True).to(device)
    bank = HookBank(model, arch, args.layers, alpha=2.2).install()
    for hook in bank.layers.values():
        hook.add(torch.randn(hook.delta.shape, device=hook.delta.device) * 1e-2)
    tokens = int(batch["attention_mask"].sum())
    forward = lambda: model(**batch)
    generate = lambda: greedy_decode(model, prompts["input_ids"], prompts["attention_mask"], args.new_tokens,
                                     eos_id=-1, pad_id=tokenizer.pad_token_id)
    rows = []
    for mode in ("off", "validated"):
        bank.set_mode(mode)
        rows.append((mode, tokens / _timed(forward, device, args.repeats),
                     args.batch * args.new_tokens / _timed(generate, device, args.repeats)))
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"device {device}, dtype {args.dtype}, hooked layers {args.layers}, batch {args.batch}")
    print(f"{'model':10} {'forward tok/s':>14} {'generate tok/s':>15}")
    for mode, fwd, gen in rows:
        print(f"{'plain' if mode == 'off' else 'hooked':10} {fwd:14.0f} {gen:15.0f}")
    print(f"hooked/plain: forward {rows[1][1] / rows[0][1]:.3f}, generate {rows[1][2] / rows[0][2]:.3f}")
    print(f"hook memory {bank.nbytes / 2**20:.1f} MiB = {bank.nbytes / parameters:.2%} of the model's "
          f"{parameters / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
