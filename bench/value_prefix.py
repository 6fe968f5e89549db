"""Value optimisation with the blocks below the edited layer kept from the first pass vs every step a full forward
pass (``optimize_values(..., reuse_lower_layers=False)``), side by side in one run.

A random model of GPT-2 XL's width (d = 1600, 25 heads, FFN 6400, vocabulary 50257) with few layers, so it runs on a
CPU; δ at the FFN output of ``--layer`` (ROME) or at the block output (``--module block``, MEMIT). Every request runs
all ``--steps`` steps (stop_loss 0), the two variants alternate ``--repeats`` times and the fastest of each is kept.
The script prints both times, their ratio, the bound of the ratio if the lower blocks' forward were all the work,
and whether the two results are bit-identical; then the same with ``values.reuse_prefix`` (each step re-runs only the
positions from the subject on), its ratio to both and how far its values are from the full pass's.
    python bench/value_prefix.py [--layers 8] [--layer 5] [--requests 2] [--steps 10] [--module ffn|block]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lit_edit.editing import read_zsre
from lit_edit.editing.values import ValueHyperparams, ValueTarget, optimize_values
from lit_edit.models import architecture_of, load_tokenizer

# short context prefixes of about ten tokens, as ROME's sampled templates are
TEMPLATES = ("{}", "The city council met again on Tuesday. {}", "In a quiet village by the sea, {}",
             "According to the latest report, {}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--layer", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--module", choices=["ffn", "block"], default="ffn")
    parser.add_argument("--tokenizer", default="checkpoints/factworld-gpt2")
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.tokenizer)
    config = GPT2Config(vocab_size=50257, n_embd=1600, n_head=25, n_inner=6400, n_layer=args.layers, n_positions=1024)
    model = AutoModelForCausalLM.from_config(config).eval()
    arch = architecture_of(model)
    module = arch.ffn_at(args.layer) if args.module == "ffn" else arch.layer(args.layer)
    requests = read_zsre("data/factworld/zsre/zsre_factworld.json").requests[: args.requests]
    targets = [ValueTarget(r.prompt, r.subject, r.target_new) for r in requests]
    hp = ValueHyperparams(steps=args.steps, stop_loss=0.0)
    print(f"random GPT-2 XL-width model, {args.layers} layers, δ at {module}, {len(targets)} requests x "
          f"{len(TEMPLATES)} templates + KL rows, {args.steps} steps, {torch.get_num_threads()} threads")
    optimize_values(model, tokenizer, module, targets[:1], dataclasses.replace(hp, steps=2), TEMPLATES)  # warm-up
    variants = {"full pass every step": (False, False), "lower blocks kept": (True, False),
                "prefix reused too": (True, True)}
    seconds = {name: [] for name in variants}
    results = {}
    for _ in range(args.repeats):
        for name, (reuse, prefix) in variants.items():
            start = time.perf_counter()
            results[name] = optimize_values(model, tokenizer, module, targets,
                                            dataclasses.replace(hp, reuse_prefix=prefix), TEMPLATES,
                                            reuse_lower_layers=reuse)
            seconds[name].append(time.perf_counter() - start)
    full, kept, prefix = (min(seconds[name]) for name in variants)
    for name, times in seconds.items():
        print(f"{name:>22}: {min(times):7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"{'ratio':>22}: {full / kept:7.2f}x  (bound if the {args.layer} lower blocks' forward were all the work: "
          f"{args.layers / (args.layers - args.layer):.2f}x)")
    same = all(torch.equal(getattr(results["full pass every step"], f.name), getattr(results["lower blocks kept"], f.name))
               for f in dataclasses.fields(results["lower blocks kept"]))
    print(f"{'bit-identical results':>22}: {same}")
    reference, reused = results["full pass every step"].values, results["prefix reused too"].values
    print(f"{'prefix reused too':>22}: {full / prefix:7.2f}x the full pass, {kept / prefix:.2f}x the lower blocks kept; "
          f"values differ by {float((reused - reference).norm() / reference.norm()):.1e} relative "
          f"(values.reuse_prefix: equal to float32 rounding, not bit for bit)")

if __name__ == "__main__":
    main()
