"""A multi-GPU-shaped run on CPU: two processes (DDP, gloo), the CLI in a subprocess, the same numbers as one."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _eval(tmp_path, devices: int) -> dict:
    folder = tmp_path / f"devices{devices}"
    command = [sys.executable, "main.py", "test", "--config", "configs/eval/tasks.yaml", "--trainer.accelerator", "cpu",
               "--trainer.devices", str(devices), "--trainer.logger", "false", "--trainer.default_root_dir",
               str(folder), "--model.init_args.results_dir", str(folder), "--data.init_args.subset", "31",
               "--data.init_args.batch_size", "6", "--trainer.enable_progress_bar", "false"]
    if devices > 1:
        command += ["--trainer.strategy", "ddp"]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
    return json.loads((folder / "downstream.json").read_text())


def _close(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-12 * max(1.0, abs(a))


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    """31 examples per task: uneven shards (16 + 15); sums and the NQ scan replay must not care."""
    one, two = _eval(tmp_path, 1), _eval(tmp_path, 2)
    assert one["data"]["examples"] == two["data"]["examples"] == {task: 31 for task in one["scores"]}
    assert _close(one["scores"], two["scores"]), (one["scores"], two["scores"])
    # every example counted once: padding shards to equal size (DistributedSampler) would count one twice
    assert one["scored"] == two["scored"]
    assert all(n == 31 for task, n in two["scored"].items() if task != "ner")   # NER does not count DOCSTART
