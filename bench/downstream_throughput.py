"""Downstream evaluation throughput: the batched evaluator vs. the reference harness's procedure, per task.

The reference scored one example at a time: one ``generate`` call per prompt, batch size 1, no reuse of a
prompt shared by two modes. The batched evaluator (``lit_edit.tasks.evaluate``) generates each distinct
(prompt, length, stop) once, in length-sorted left-padded batches with the KV cache. Both produce the same
generations (the fraction of identical continuations is printed), and the ratio of their wall times is the
speed-up. The last columns compare the evaluator with a bound: one batched forward pass over the finished
sequences (prompt + generated tokens), the least work that puts every token through the model once; the
reference's time over that bound (``ceiling``) is the most any evaluator that runs every token once could gain.

Two set-ups, side by side in one run:
  * the shipped fact-world model on the fact-world mini tasks;
  * a tiny random GPT-2 (2 layers, 64 wide) on the real test sets (``--data-root``, skipped when absent).

    python bench/downstream_throughput.py [--examples 64] [--batch-size 32] [--data-root ../shared/data/tasks]
                                          [--device cuda]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lit_edit.models import load_model_and_tokenizer, load_tokenizer
from lit_edit.tasks.evaluate import generate_for_records
from lit_edit.tasks.registry import TASK_NAMES, get_task
from lit_edit.tasks.suite import load_task_records

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def reference_procedure(model, tokenizer, task, records) -> list[dict[str, list[int]]]:
    """One ``generate`` per query, batch size 1, as the reference harness ran it."""
    out = []
    for record in records:
        generated = {}
        for query in task.queries(record):
            input_ids = tokenizer(query.prompt, return_tensors="pt")["input_ids"].to(model.device)
            ids = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                 max_new_tokens=query.max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)[0, input_ids.shape[1]:]
            generated[query.variant] = ids.tolist()
        out.append(generated)
    return out


@torch.no_grad()
def forward_bound(model, sequences: list[list[int]], pad_id: int, batch_size: int) -> float:
    """Seconds for one batched (length-sorted, right-padded) forward pass over ``sequences``, logits for the last
    position only (as the decoder computes them): every token through every block once, nothing repeated."""
    ordered = sorted(sequences, key=len)
    synchronize()
    start = time.perf_counter()
    for i in range(0, len(ordered), batch_size):
        chunk = ordered[i:i + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(chunk):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device), logits_to_keep=1)
    synchronize()
    return time.perf_counter() - start


def synchronize() -> None:
    """Wait for queued GPU work, so that a wall time covers it (a no-op on CPU)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def agrees(reference: list[int], batched: list[int], eos_id: int, stop_cut: bool) -> bool:
    """A batched generation equals the reference's, both cut after the first EOS (a stop-string cut may end the
    batched one earlier: then it is a prefix)."""
    if eos_id in reference:
        reference = reference[: reference.index(eos_id) + 1]
    return reference[: len(batched)] == batched if stop_cut else reference == batched


def bench_task(model, tokenizer, name: str, records: list[dict], batch_size: int) -> dict:
    task = get_task(name)
    generate_for_records(model, tokenizer, task, records[:2], batch_size)      # warm-up: first-call costs
    reference_procedure(model, tokenizer, task, records[:2])
    start = time.perf_counter()
    batched = generate_for_records(model, tokenizer, task, records, batch_size)
    fast = time.perf_counter() - start
    start = time.perf_counter()
    reference = reference_procedure(model, tokenizer, task, records)
    slow = time.perf_counter() - start
    stops = {q.variant: q.stop is not None for record in records for q in task.queries(record)}
    agree = [agrees(reference[i][v], batched[i][v].new_ids, tokenizer.eos_token_id, stops[v])
             for i in range(len(records)) for v in reference[i]]
    unique = {(tuple(g.prompt_ids), tuple(g.new_ids)) for row in batched for g in row.values()}
    bound = forward_bound(model, [list(p) + list(n) for p, n in unique], tokenizer.pad_token_id or 0, batch_size)
    return {"task": name, "queries": len(agree), "reference_s": slow, "batched_s": fast, "speedup": slow / fast,
            "bound_s": bound, "batched_over_bound": fast / bound, "ceiling": slow / bound,
            "identical": sum(agree) / len(agree)}


def tiny_random_gpt2():
    tokenizer = load_tokenizer(str(ROOT / "data/factworld/tokenizer-gpt2"))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, n_positions=2048,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                        pad_token_id=tokenizer.eos_token_id)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=64, help="examples per task (a seeded subset)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    parser.add_argument("--tasks", nargs="*", default=list(TASK_NAMES))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    setups = [("fact-world model, mini tasks", *load_model_and_tokenizer(str(ROOT / "checkpoints/factworld-gpt2")),
               ROOT / "data/factworld/tasks")]
    if Path(args.data_root).exists():
        setups.append(("tiny random GPT-2, real test sets", *tiny_random_gpt2(), Path(args.data_root)))
    else:
        print(f"(real test sets not found at {args.data_root}: the tiny-model set-up is skipped)")
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"{where}, {args.examples} examples per task, generation batch {args.batch_size}")
    for title, model, tokenizer, root in setups:
        model.to(args.device).eval()
        print(f"\n{title}")
        print(f"{'task':18s} {'queries':>7s} {'reference s':>11s} {'batched s':>9s} {'speed-up':>8s} "
              f"{'bound s':>8s} {'batched/bound':>13s} {'ceiling':>8s} {'identical':>9s}")
        for name in args.tasks:
            records = [r for _, r in load_task_records(root, name, args.examples, seed=0)]
            row = bench_task(model, tokenizer, name, records, args.batch_size)
            print(f"{name:18s} {row['queries']:7d} {row['reference_s']:11.2f} {row['batched_s']:9.2f} "
                  f"{row['speedup']:7.1f}× {row['bound_s']:8.3f} {row['batched_over_bound']:12.1f}× {row['ceiling']:7.1f}× "
                  f"{row['identical']:9.3f}")


if __name__ == "__main__":
    main()
