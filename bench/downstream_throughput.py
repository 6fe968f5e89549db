"""Downstream evaluation throughput: the batched evaluator against two honest baselines, per task.

Baselines, both greedy with batch size 1 and no reuse of a prompt shared by two modes:
  * ``once``: the model loaded once, one ``generate`` call per prompt;
  * ``reload``: the reference harness's procedure as it runs — the model loaded afresh (``from_pretrained`` from
    the local folder) for every example, then one ``generate`` per prompt.
The batched evaluator (``lit_edit.tasks.evaluate``) generates each distinct (prompt, length, stop) once, in
batches of similar length sized by tokens (``lit_edit.generation.plan_batches``), left-padded with the KV cache,
and 1-token tasks as one forward pass. The generations agree with the ``once`` baseline (the fraction of
identical ones is printed); the ratios of wall times are the speed-ups. The bound is one batched forward pass
over the finished sequences (prompt + generated tokens), the least work that puts every token through the model
once; the faster baseline's time over that bound (``ceiling``) is the most any evaluator that runs every token
once could gain over it.

Two set-ups, side by side in one run:
  * the shipped fact-world model on the fact-world mini tasks;
  * a tiny random GPT-2 (2 layers, 64 wide) on the real test sets (``--data-root``, skipped when absent).

    python bench/downstream_throughput.py [--examples 64] [--batch-size 32] [--token-budget 4096]
                                          [--data-root ../shared/data/tasks] [--device cuda] [--no-reload]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from lit_edit.generation import default_token_budget
from lit_edit.models import load_model_and_tokenizer, load_tokenizer
from lit_edit.tasks.evaluate import generate_for_records
from lit_edit.tasks.registry import TASK_NAMES, get_task
from lit_edit.tasks.suite import load_task_records

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def one_at_a_time(model, tokenizer, task, records) -> list[dict[str, list[int]]]:
    """One ``generate`` per query, batch size 1, the model as given (loaded once)."""
    return [generate_queries(model, tokenizer, task, record) for record in records]


@torch.no_grad()
def reloaded_per_example(folder: str, device: str, task, records) -> list[dict[str, list[int]]]:
    """The reference harness's procedure: the model loaded from ``folder`` for every example, then one
    ``generate`` per query."""
    out = []
    for record in records:
        model, tokenizer = load_model_and_tokenizer(folder)
        out.append(generate_queries(model.to(device).eval(), tokenizer, task, record))
    return out


def generate_queries(model, tokenizer, task, record) -> dict[str, list[int]]:
    """The new token ids of each query of ``record``, one ``generate`` call each."""
    generated = {}
    for query in task.queries(record):
        input_ids = tokenizer(query.prompt, return_tensors="pt")["input_ids"].to(model.device)
        ids = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                             max_new_tokens=query.max_new_tokens, do_sample=False, num_beams=1,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)[0, input_ids.shape[1]:]
        generated[query.variant] = ids.tolist()
    return generated


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


def timed(run: Callable[[], object]) -> tuple[object, float]:
    """``run()``'s result and its wall time in seconds (queued GPU work included)."""
    synchronize()
    start = time.perf_counter()
    result = run()
    synchronize()
    return result, time.perf_counter() - start


def bench_task(model, tokenizer, folder: str | None, name: str, records: list[dict], batch_size: int,
               token_budget: int) -> dict:
    task = get_task(name)
    batched_run = lambda rows: generate_for_records(model, tokenizer, task, rows, batch_size, token_budget)  # noqa: E731
    batched_run(records[:2])                                      # warm-up: first-call costs
    one_at_a_time(model, tokenizer, task, records[:2])
    batched, fast = timed(lambda: batched_run(records))
    reference, once = timed(lambda: one_at_a_time(model, tokenizer, task, records))
    reload = (timed(lambda: reloaded_per_example(folder, str(model.device), task, records))[1]
              if folder else float("nan"))
    stops = {q.variant: q.stop is not None for record in records for q in task.queries(record)}
    agree = [agrees(reference[i][v], batched[i][v].new_ids, tokenizer.eos_token_id, stops[v])
             for i in range(len(records)) for v in reference[i]]
    unique = {(tuple(g.prompt_ids), tuple(g.new_ids)) for row in batched for g in row.values()}
    bound = forward_bound(model, [list(p) + list(n) for p, n in unique], tokenizer.pad_token_id or 0, batch_size)
    faster = min(once, reload) if reload == reload else once
    return {"task": name, "queries": len(agree), "once_s": once, "reload_s": reload, "batched_s": fast,
            "over_once": once / fast, "over_reload": reload / fast, "over_faster": faster / fast,
            "bound_s": bound, "ceiling": faster / bound, "identical": sum(agree) / len(agree)}


def tiny_random_gpt2(folder: Path):
    """A tiny random GPT-2 with the fact-world tokenizer, saved to ``folder`` (the reload baseline reads it)."""
    tokenizer = load_tokenizer(str(ROOT / "data/factworld/tokenizer-gpt2"))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=2, n_positions=2048,
                        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                        pad_token_id=tokenizer.eos_token_id)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=64, help="examples per task (a seeded subset)")
    parser.add_argument("--batch-size", type=int, default=32, help="the most prompts in one generation batch")
    parser.add_argument("--token-budget", type=int, default=None,
                        help="tokens in one generation batch (default: lit_edit.generation.default_token_budget)")
    parser.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data" / "tasks"))
    parser.add_argument("--tasks", nargs="*", default=list(TASK_NAMES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-reload", action="store_true", help="skip the model-per-example baseline")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    scratch = tempfile.TemporaryDirectory()
    setups = [("fact-world model (checkpoints/factworld-gpt2), mini tasks", str(ROOT / "checkpoints/factworld-gpt2"),
               ROOT / "data/factworld/tasks")]
    if Path(args.data_root).exists():
        setups.append(("tiny random GPT-2, real test sets", tiny_random_gpt2(Path(scratch.name)), Path(args.data_root)))
    else:
        print(f"(real test sets not found at {args.data_root}: the tiny-model set-up is skipped)")
    where = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
             else f"{torch.get_num_threads()} threads")
    print(f"{where}, {args.examples} examples per task, generation batches ≤ {args.batch_size} prompts and "
          f"≤ {args.token_budget or default_token_budget(torch.device(args.device))} tokens")
    for title, folder, root in setups:
        model, tokenizer = load_model_and_tokenizer(folder)
        model.to(args.device).eval()
        print(f"\n{title}")
        print(f"{'task':18s} {'queries':>7s} {'once s':>7s} {'reload s':>8s} {'lit-edit s':>10s} {'× once':>7s} "
              f"{'× reload':>8s} {'bound s':>8s} {'ceiling':>8s} {'identical':>9s}")
        rows = []
        for name in args.tasks:
            records = [r for _, r in load_task_records(root, name, args.examples, seed=0)]
            row = bench_task(model, tokenizer, None if args.no_reload else folder, name, records, args.batch_size,
                             args.token_budget)
            rows.append(row)
            print(f"{name:18s} {row['queries']:7d} {row['once_s']:7.2f} {row['reload_s']:8.2f} "
                  f"{row['batched_s']:10.2f} {row['over_once']:6.2f}× {row['over_reload']:7.2f}× "
                  f"{row['bound_s']:8.3f} {row['ceiling']:7.1f}× {row['identical']:9.3f}")
        geomean = math.exp(sum(math.log(r["over_faster"]) for r in rows) / len(rows))
        print(f"over the faster baseline: geomean {geomean:.2f}×, lowest {min(r['over_faster'] for r in rows):.2f}× "
              f"({min(rows, key=lambda r: r['over_faster'])['task']}); ceiling geomean "
              f"{math.exp(sum(math.log(r['ceiling']) for r in rows) / len(rows)):.1f}×")


if __name__ == "__main__":
    main()
