"""Length-grouped vs. random batches for fact-world pretraining: padding waste and training time.

Runs both batchings over the same documents with the same model and prints the ratios side by side.
    python bench/corpus_batching.py [--batches 40]
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from lit_edit.data.corpus import LengthGroupedBatches, read_texts
from lit_edit.models import load_tokenizer


def random_batches(sequences, batch_size, pad_id, seed):
    shuffled = list(range(len(sequences)))
    random.Random(seed).shuffle(shuffled)
    grouped = LengthGroupedBatches(sequences, batch_size, pad_id, seed)
    grouped.batches = [shuffled[i:i + batch_size] for i in range(0, len(shuffled), batch_size)]
    return grouped


def run(batches, model, optimizer, n):
    real = padded = 0
    start = time.perf_counter()
    for i in range(n):
        batch = batches[i]
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        real += int(batch["attention_mask"].sum())
        padded += batch["attention_mask"].numel()
    return time.perf_counter() - start, real, padded


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=48)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = load_tokenizer("data/factworld/tokenizer-gpt2")
    texts = read_texts("data/factworld/corpus/train.jsonl")
    sequences = [ids + [tokenizer.eos_token_id] for ids in tokenizer(texts)["input_ids"]]
    config = AutoConfig.for_model("gpt2", vocab_size=len(tokenizer), n_layer=4, n_embd=192, n_head=4, n_inner=768,
                                  n_positions=256)
    results = {}
    for name, make in (("length-grouped", LengthGroupedBatches), ("random", random_batches)):
        model = AutoModelForCausalLM.from_config(config)
        optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
        batches = make(sequences, args.batch_size, tokenizer.pad_token_id, 0)
        # the same number of *documents* each way: the first n batches of each order
        results[name] = run(batches, model, optimizer, args.batches)
    for name, (seconds, real, padded) in results.items():
        print(f"{name:15s} {seconds:7.2f} s  {real:7d} real tokens  {padded:7d} computed  "
              f"padding {1 - real / padded:6.1%}  {real / seconds:8.0f} real tokens/s")
    g, r = results["length-grouped"], results["random"]
    print(f"ratio real tokens/s, length-grouped / random: {(g[1] / g[0]) / (r[1] / r[0]):.2f}x")


if __name__ == "__main__":
    main()
