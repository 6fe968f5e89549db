"""KN attribution: all layers × integration steps × target sub-tokens batched into few passes vs the reference's loop
(one layer and one sub-token at a time, S scaled copies per pass in chunks of 20).

Both compute the same integrated gradients (docs/methods.md §4, §12 item 8); the script prints the wall times of both
on the same requests, the ratio, and the largest difference of the results relative to their largest value.
Two models: the shipped fact-world GPT-2 and a random GPT-2-medium-shaped model (d=1024, m=4096, 16 heads; the
depth is ``--random-layers``, since the cost of both grows linearly with it).
    python bench/kn_attribution.py [--requests 8] [--steps 20] [--batch-size 256] [--random-layers 6] [--repeats 3]
                                   [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lit_edit.editing import read_zsre
from lit_edit.editing.kn import integrated_gradients, integrated_gradients_per_layer
from lit_edit.models import architecture_of, load_model_and_tokenizer


def random_medium(tokenizer, layers: int, device: str):
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=1024, n_layer=layers, n_head=16, n_inner=4096,
                        n_positions=256, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config).to(device).eval()


def compare(label: str, model, tokenizer, requests, steps: int, batch_size: int, repeats: int, sync) -> None:
    arch = architecture_of(model)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = list(range(arch.n_layers(model)))
    inputs = [(tokenizer(r.text)["input_ids"], tokenizer(" " + r.target_true, add_special_tokens=False)["input_ids"])
              for r in requests]
    integrated_gradients(model, arch, *inputs[0], layers, steps, batch_size)            # warm-up
    integrated_gradients_per_layer(model, arch, *inputs[0], layers, steps)
    t_batched, t_loop = float("inf"), float("inf")
    for _ in range(repeats):          # alternated, best of ``repeats``: the machine may be shared
        sync()
        start = time.perf_counter()
        batched = [integrated_gradients(model, arch, p, g, layers, steps, batch_size) for p, g in inputs]
        sync()
        t_batched = min(t_batched, time.perf_counter() - start)
        start = time.perf_counter()
        loop = [integrated_gradients_per_layer(model, arch, p, g, layers, steps, 20) for p, g in inputs]
        sync()
        t_loop = min(t_loop, time.perf_counter() - start)
    gap = max(float((b - r).abs().max() / r.abs().max()) for b, r in zip(batched, loop))
    tokens = sum(len(g) for _, g in inputs)
    rows = len(layers) * steps * tokens
    print(f"{label}: {len(layers)} layers, {len(inputs)} requests ({tokens} answer tokens), S={steps}: {rows} rows; "
          f"best of {repeats}")
    print(f"  batched ({batch_size} rows/pass, {sum(-(-len(layers) * steps * len(g) // batch_size) for _, g in inputs)}"
          f" passes)   {t_batched:8.2f} s")
    print(f"  per-layer loop (20 rows/pass, {len(layers) * tokens * -(-steps // 20)} passes)   {t_loop:8.2f} s")
    print(f"  speed-up {t_loop / t_batched:6.2f} x   (max |IG_batched − IG_loop| / max |IG| = {gap:.1e})")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="checkpoints/factworld-gpt2")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--random-layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    requests = read_zsre("data/factworld/zsre/zsre_factworld.json").requests[: args.requests]
    print(torch.cuda.get_device_name(model.device) if model.device.type == "cuda"
          else f"cpu, {torch.get_num_threads()} threads")
    compare(args.model, model, tokenizer, requests, args.steps, args.batch_size, args.repeats, sync)
    compare("random GPT-2-medium-shaped", random_medium(tokenizer, args.random_layers, args.device), tokenizer,
            requests, args.steps, args.batch_size, args.repeats, sync)


if __name__ == "__main__":
    main()
