"""DDP evaluation throughput: the downstream evaluation in one process vs two (``strategy: ddp``, gloo on CPU).

Both runs are ``main.py test --config configs/eval/tasks.yaml`` in a subprocess on the same records (``--subset``
per task); each writes ``downstream.json`` with the seconds of its evaluation (from the first test batch to the
metrics, model loading and process start excluded). Printed side by side: the evaluation seconds, prompt tokens
per second in all and per rank (the prompt tokens of every query the tasks ask, counted with the model's
tokenizer; the generated tokens come on top and are the same in both runs), the launch-to-exit wall time, and
the largest difference of the scores. Every process gets ``--threads`` threads (default 1: on a 2-core machine two ranks
of one thread each use the same cores as one process of two threads, so no speed-up is expected there; the
point of the sharding is more devices).

    python bench/ddp_eval.py [--subset 64] [--threads 1] [--devices 2] [--root data/factworld/tasks]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lit_edit.models import load_tokenizer
from lit_edit.tasks.registry import TASK_NAMES, get_task
from lit_edit.tasks.suite import load_task_records

ROOT = Path(__file__).resolve().parents[1]
MODEL = "checkpoints/factworld-gpt2"


def prompt_tokens(root: str, subset: int) -> int:
    """Prompt tokens of every query of the evaluated records (what the evaluation puts through the model at least)."""
    tokenizer = load_tokenizer(str(ROOT / MODEL))
    total = 0
    for name in TASK_NAMES:
        task = get_task(name)
        for _, record in load_task_records(root, name, subset):
            total += sum(len(tokenizer(query.prompt)["input_ids"]) for query in task.queries(record))
    return total


def evaluate(folder: Path, devices: int, subset: int, threads: int, root: str) -> tuple[dict, float]:
    command = [sys.executable, "main.py", "test", "--config", "configs/eval/tasks.yaml", "--trainer.accelerator",
               "cpu", "--trainer.devices", str(devices), "--trainer.logger", "false", "--trainer.default_root_dir",
               str(folder), "--model.init_args.results_dir", str(folder), "--data.init_args.subset", str(subset),
               "--data.init_args.root", root, "--trainer.enable_progress_bar", "false"]
    if devices > 1:
        command += ["--trainer.strategy", "ddp"]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True,
                   env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return json.loads((folder / "downstream.json").read_text()), time.perf_counter() - started


def largest_difference(a, b) -> float:
    """The largest absolute difference between two nested score dicts (sums added in another order differ in the
    last bits)."""
    if isinstance(a, dict):
        return max((largest_difference(a[k], b[k]) for k in a), default=0.0)
    if a is None or b is None:
        return 0.0 if a is b else float("inf")
    return abs(a - b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subset", type=int, default=64, help="records per task")
    parser.add_argument("--threads", type=int, default=1, help="threads per process (OMP_NUM_THREADS)")
    parser.add_argument("--devices", type=int, default=2, help="processes of the DDP run")
    parser.add_argument("--root", default="data/factworld/tasks")
    args = parser.parse_args()
    tokens = prompt_tokens(args.root, args.subset)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for devices in (1, args.devices):
            result, wall = evaluate(Path(tmp) / f"devices{devices}", devices, args.subset, args.threads, args.root)
            rows.append((devices, result, wall))
    print(f"downstream evaluation, {len(TASK_NAMES)} tasks × {args.subset} records ({tokens} prompt tokens), "
          f"{args.threads} thread(s) per process, {os.cpu_count()} CPUs")
    print("| processes | eval s | prompt tok/s (all) | tok/s per rank | wall s (launch to exit) | largest score "
          "difference |")
    print("|---|---|---|---|---|---|")
    base = rows[0][1]["scores"]
    for devices, result, wall in rows:
        seconds = result["seconds"]
        print(f"| {devices} | {seconds:.1f} | {tokens / seconds:.0f} | {tokens / seconds / devices:.0f} | {wall:.1f} "
              f"| {largest_difference(base, result['scores']):.1e} |")
    one, many = rows[0][1]["seconds"], rows[-1][1]["seconds"]
    print(f"ratio ({args.devices} processes / 1) of evaluation throughput: {one / many:.2f} in all, "
          f"{one / many / args.devices:.2f} per rank")


if __name__ == "__main__":
    main()
