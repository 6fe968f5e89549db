"""Two processes (gloo) give the numbers of one process: evaluation, an editing run, and a two-process run
killed mid-way and resumed (the slow tier of tests/unit/run/test_distributed.py)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import torch

from tests.conftest import ROOT
from tests.unit.run.test_distributed import (
    ONE_THREAD,
    _close,
    _eval,
    _steps_without_seconds,
    edit_cli,
    edit_command,
    edit_results,
)


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(tmp_path):
    """31 examples per task: uneven shards (16 + 15); sums and the NQ scan replay must not care."""
    one, two = _eval(tmp_path, 1), _eval(tmp_path, 2)
    assert one["data"]["examples"] == two["data"]["examples"] == {task: 31 for task in one["scores"]}
    assert _close(one["scores"], two["scores"]), (one["scores"], two["scores"])
    # every example counted once: padding shards to equal size (DistributedSampler) would count one twice
    assert one["scored"] == two["scored"]
    assert all(n == 31 for task, n in two["scored"].items() if task != "ner")   # NER does not count DOCSTART


@pytest.mark.slow
def test_two_process_editing_run_equals_one_process(tmp_path):
    """The edit stream is not sharded (every rank makes all 20 edits), the scoring is: from the same statistics,
    every score, monitor and edited weight equals the one-process run's. The statistics pass shared by the two
    processes sums C in another order, equal to float64 rounding (below, and in the default suite); a rounding
    difference in C can move an edited weight by one float32 ulp, so the runs that compare bits share one C."""
    one, one_tensors = edit_cli(tmp_path, 1)
    shared = tmp_path / "stats-by-two"
    subprocess.run(edit_command(shared, 2, "--data.init_args.n", "5", "--data.init_args.batch_size", "5"), cwd=ROOT,
                   check=True, capture_output=True, text=True, timeout=900, env=ONE_THREAD)
    two, two_tensors = edit_cli(tmp_path, 2, statistics=tmp_path / "edit1" / "stats")
    assert two["processes"]["world_size"] == 2 and two["processes"]["identical_weights"]
    assert len(set(two["processes"]["edited_weights_sha256"] + one["processes"]["edited_weights_sha256"])) == 1
    assert one["n_edits"] == two["n_edits"] == 20
    for key in ("pre", "immediate", "final", "periodic", "retention", "monitors"):
        assert one[key] == two[key], key
    assert len(one["periodic"]) == 2
    assert one_tensors["edits"].keys() == two_tensors["edits"].keys()
    assert all(torch.equal(t, two_tensors["edits"][k]) for k, t in one_tensors["edits"].items())
    # C computed by two processes (a short run of its own): float64 rounding (relative to C's scale: entries near
    # zero differ more)
    by_two = edit_results(shared)[1]
    for name, tensors in one_tensors.items():
        if name != "edits":
            assert tensors["count"] == by_two[name]["count"]
            scale = float(tensors["sum_kkt"].abs().max())
            torch.testing.assert_close(tensors["sum_kkt"], by_two[name]["sum_kkt"], rtol=0, atol=1e-12 * scale)


@pytest.mark.slow
def test_a_two_process_run_killed_mid_way_resumes_to_the_one_process_result(tmp_path):
    """Both ranks of a DDP run are killed (SIGKILL to the process group) after a run state was written; resumed
    with two processes, the run ends with the scores, steps and edited weights of an uninterrupted one-process run."""
    import signal
    import time

    from lit_edit.run_state import STATE_FILE, load_run_state

    checkpoint = ("--trainer.checkpoint_every_n_batches", "1")
    one, one_tensors = edit_cli(tmp_path, 1, *checkpoint)
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "edit1" / "stats", killed / "stats")    # the same C (see the test above)
    log = open(tmp_path / "killed.log", "w")
    process = subprocess.Popen(edit_command(killed, 2, *checkpoint), cwd=ROOT, env=ONE_THREAD, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)   # rank 1 is rank 0's child
    deadline = time.monotonic() + 600
    while not (killed / "run" / STATE_FILE).exists():
        assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "no run state appeared"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "run" / "metrics.json").exists()
    assert 1 <= load_run_state(killed / "run")["batches_done"] < 4

    resumed = subprocess.run(edit_command(killed, 2, *checkpoint, "--trainer.resume_from", str(killed / "run")),
                             cwd=ROOT, env=ONE_THREAD, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "[lit-edit] resumed from" in resumed.stdout + resumed.stderr
    two, two_tensors = edit_results(killed)
    assert two["processes"]["world_size"] == 2 and two["processes"]["identical_weights"]
    assert two["processes"]["edited_weights_sha256"][0] == one["processes"]["edited_weights_sha256"][0]
    for key in ("pre", "immediate", "final", "periodic", "retention", "monitors"):
        assert one[key] == two[key], key
    assert _steps_without_seconds(tmp_path / "edit1") == _steps_without_seconds(killed)
    assert all(torch.equal(t, two_tensors["edits"][k]) for k, t in one_tensors["edits"].items())
