"""A real sweep killed mid-way and run again ends like an uninterrupted one (the slow tier of
tests/unit/experiments/test_experiments_sweep.py)."""

from __future__ import annotations

import csv
import os
import signal
import time

import pytest
import yaml

from lit_edit.experiments import sweep
from tests.unit.experiments.test_experiments_sweep import GRID, POINTS, _metrics, _start, _wait, index_rows


@pytest.mark.slow
def test_a_sweep_killed_mid_way_and_run_again_ends_like_an_uninterrupted_one(tmp_path):
    experiment = tmp_path / "grid.yaml"
    experiment.write_text(yaml.safe_dump(GRID, sort_keys=False))
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = _start(experiment, whole)
    process = _start(experiment, killed)
    second = killed / POINTS[1]
    deadline = time.monotonic() + 800
    while not ((killed / POINTS[0] / "metrics.json").exists() and (second / "run_state.pt").exists()):
        assert process.poll() is None, killed.with_suffix(".log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the second point saved no run state"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)                   # the sweep and the point it runs
    process.wait()
    assert not (second / "metrics.json").exists()            # killed inside the second point, after a step
    assert [row["status"] for row in index_rows(killed).values()] == ["done", "running", "pending", "pending"]

    _wait(_start(experiment, killed), killed)                # the same command again
    _wait(reference, whole)
    rows = index_rows(killed)
    assert [(row["status"], row["attempts"]) for row in rows.values()] == [("done", "1"), ("done", "2"),
                                                                           ("done", "1"), ("done", "1")]
    log = (killed / rows[POINTS[1]]["log"]).read_text()
    headers = [line for line in log.splitlines() if line.startswith("[sweep] ")]
    assert len(headers) == 2 and "--trainer.resume_from" not in headers[0]
    assert headers[1].endswith(f"--trainer.resume_from {second}")
    assert "[lit-edit] resumed from" in log
    assert (killed / POINTS[0] / "logs").exists() and not (killed / sweep.ASIDE).exists()
    for point in POINTS:
        assert _metrics(killed / point) == _metrics(whole / point), point
        steps = [{k: v for k, v in row.items() if k != "seconds"}
                 for row in csv.DictReader(open(killed / point / "steps.csv"))]
        assert steps == [{k: v for k, v in row.items() if k != "seconds"}
                         for row in csv.DictReader(open(whole / point / "steps.csv"))], point
        assert [row["n_edits"] for row in steps] == [str(i + 1) for i in range(int(point[-1]))]   # each edit once
