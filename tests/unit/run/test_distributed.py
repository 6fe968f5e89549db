"""A multi-GPU-shaped run on CPU: two processes (gloo), the same numbers as one process.

The default suite checks the sharing functions (``lit_edit.distributed``, the sharded statistics pass) in two
spawned processes; the ``slow`` tests run the CLI in a subprocess with ``strategy: ddp`` (docs/lightning.md §2.2).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from lit_edit.distributed import SINGLE, Ranks, chunks, map_chunks
from lit_edit.models.architectures import architecture_of
from lit_edit.models.loading import load_model, load_tokenizer
from lit_edit.stats import collect_second_moments, token_batches
from tests.conftest import ROOT
from tests.edit_configs import method_config

TEXTS = [f"document {i}: " + " ".join(f"w{(i * 7 + j) % 50}" for j in range(3 + i % 17)) for i in range(40)]


def _worker(rank: int, world: int, init_file: str, model_dir: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ranks = Ranks(rank, world)
        squares = map_chunks(lambda part: [(x * x, ranks.rank) for x in part], list(range(11)), 3, ranks)
        model, tokenizer = load_model(model_dir), load_tokenizer(model_dir)
        moments = collect_second_moments(model, architecture_of(model), [0, 1],
                                         token_batches(tokenizer, TEXTS, 16, tokens_per_batch=64), max_tokens=500,
                                         progress=False, ranks=ranks)
        torch.save({"squares": squares, "sums": {k: m.sum_kkt for k, m in moments.items()},
                    "counts": {k: m.count for k, m in moments.items()}}, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_chunks_and_statistics_shared_by_two_processes_equal_one_process(tiny_gpt2_dir, tmp_path):
    """Chunk i goes to rank i % 2 and comes back in item order on both ranks; the statistics pass split over two
    ranks sums the same 500 keys (the cap falls inside a batch) as one process, to float64 rounding."""
    out = str(tmp_path / "result")
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tiny_gpt2_dir), out), nprocs=2,
                       start_method="spawn")
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    expected_owner = [i // 3 % 2 for i in range(11)]
    for result in ranks:
        assert result["squares"] == [(x * x, owner) for x, owner in zip(range(11), expected_owner)]
    model, tokenizer = load_model(str(tiny_gpt2_dir)), load_tokenizer(str(tiny_gpt2_dir))
    single = collect_second_moments(model, architecture_of(model), [0, 1],
                                    token_batches(tokenizer, TEXTS, 16, tokens_per_batch=64), max_tokens=500,
                                    progress=False)
    assert len(list(token_batches(tokenizer, TEXTS, 16, tokens_per_batch=64))) >= 4   # both ranks had batches
    for layer, moment in single.items():
        assert moment.count == 500
        for result in ranks:
            assert result["counts"][layer] == 500
            torch.testing.assert_close(result["sums"][layer], moment.sum_kkt, rtol=1e-12, atol=1e-12)
        assert torch.equal(ranks[0]["sums"][layer], ranks[1]["sums"][layer])   # one all-reduce: the same bits


def test_map_chunks_in_one_process_keeps_order_and_checks_lengths():
    assert [len(c) for c in chunks(list(range(7)), 3)] == [3, 3, 1]
    assert map_chunks(lambda part: [-x for x in part], list(range(7)), 3, SINGLE) == [-x for x in range(7)]
    with pytest.raises(ValueError, match="chunk 0: 3 items gave 1 results"):
        map_chunks(lambda part: [0], list(range(7)), 3)
    with pytest.raises(ValueError, match="chunk size must be >= 1"):
        chunks([1], 0)
    with pytest.raises(ValueError, match="rank 2 is not in"):
        Ranks(2, 2)


def _eval(tmp_path, devices: int) -> dict:
    folder = tmp_path / f"devices{devices}"
    command = [sys.executable, "main.py", "test", "--config", "configs/eval/tasks.yaml", "--trainer.accelerator", "cpu",
               "--trainer.devices", str(devices), "--trainer.logger", "false", "--trainer.default_root_dir",
               str(folder), "--model.init_args.results_dir", str(folder), "--data.init_args.subset", "31",
               "--data.init_args.batch_size", "6", "--trainer.enable_progress_bar", "false"]
    if devices > 1:
        command += ["--trainer.strategy", "ddp"]
    # one thread per process in both runs (ONE_THREAD, below): greedy generation compares logits that another
    # thread count may round differently
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=600, env=ONE_THREAD)
    return json.loads((folder / "downstream.json").read_text())


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-12 * max(1.0, abs(a))


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}   # the same threads per process in every run: CPU kernels
#                                                      may block (and round) differently with another count


def edit_command(folder, devices: int, *extra: str, strategy: str | None = "ddp") -> list[str]:
    """A batch-sequential MEMIT run of 20 edits (4 batches), all-so-far scores every 2 batches, statistics computed
    by the run itself (by both processes together when there are two and they share the work); ``extra`` CLI
    arguments; ``strategy`` with two devices."""
    command = [sys.executable, "main.py", "test", *method_config("memit"),
               "--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.logger", "false",
               "--trainer.default_root_dir", str(folder), "--trainer.enable_progress_bar", "false",
               "--trainer.eval_every_n_batches", "2", "--data.init_args.n", "20", "--data.init_args.batch_size", "5",
               "--model.init_args.results_dir", str(folder / "run"), "--model.init_args.cache_dir",
               str(folder / "cache"), "--model.init_args.statistics.cache_dir", str(folder / "stats"),
               "--model.init_args.eval_batch_size", "8"]   # 20 requests: chunks of 8, 8, 4 → rank 0 scores two
    if devices > 1 and strategy:
        command += ["--trainer.strategy", strategy]
    return command + list(extra)


def edit_results(folder) -> tuple[dict, dict]:
    """``metrics.json`` of a run of :func:`edit_command`, and its statistics files and ``edits.safetensors``."""
    stats = {p.name: load_file(str(p)) for p in (folder / "stats").rglob("*.safetensors")}
    return json.loads((folder / "run" / "metrics.json").read_text()), stats | {
        "edits": load_file(str(folder / "run" / "edits.safetensors"))}


def edit_cli(tmp_path, devices: int, *extra: str, name: str = "", strategy: str | None = "ddp",
             statistics: Path | None = None) -> tuple[dict, dict]:
    """Run :func:`edit_command` to the end; its :func:`edit_results`. With ``statistics``, the run starts from a copy
    of that statistics folder (another run's C) instead of computing its own."""
    folder = tmp_path / f"edit{devices}{name}"
    if statistics is not None:
        shutil.copytree(statistics, folder / "stats")
    subprocess.run(edit_command(folder, devices, *extra, strategy=strategy), cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=900, env=ONE_THREAD)
    return edit_results(folder)


def _steps_without_seconds(folder) -> list[dict]:
    import csv

    with open(folder / "run" / "steps.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]
