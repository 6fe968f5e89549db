"""A run interrupted by Ctrl-C (SIGINT) or SIGTERM writes its partial results and says where; its run state resumes.

Real signals to ``main.py test`` in a subprocess (the fact-world model, MEMIT, 5 batches of 2 with three value
steps): the interrupted run exits with code 1 after writing ``metrics.json`` with ``interrupted`` (the scores of the
batches it finished, no final scores) and printing the folder; resumed from its run state, it ends with the
uninterrupted run's numbers. About 1 min 30 s on 2 cores (four processes, two at a time).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_edit.data import EditDataModule
from lit_edit.loops.consecutive import ConsecutiveEditingLoop
from lit_edit.models import load_model_and_tokenizer
from lit_edit.run_state import STATE_FILE, load_run_state
from lit_edit.scoring import score_answers
from lit_edit.signals import interrupts_deferred
from tests.conftest import ROOT
from tests.edit_configs import method_config


def _cli(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.Popen, Path]:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    args = [*method_config("memit"), "--data.init_args.n", "10",
            "--data.init_args.batch_size", "2", "--trainer.eval_every_n_batches", "2",
            "--model.init_args.editor.init_args.values.steps", "3", "--model.init_args.monitor_docs", "4",
            "--model.init_args.families", "[token]", "--trainer.logger", "false",
            "--trainer.default_root_dir", str(folder), "--model.init_args.cache_dir", str(tmp_path / "cache"),
            "--model.init_args.results_dir", str(folder / "run"), "--trainer.enable_progress_bar", "false", *extra]
    log = tmp_path / f"{name}-{len(extra)}.log"
    # SIGINT at its default in the child: a shell's background job (CI may run the suite as one) ignores SIGINT,
    # the ignored disposition survives exec, and Python then installs no KeyboardInterrupt handler
    process = subprocess.Popen([sys.executable, "main.py", "test", *args], cwd=ROOT, stdout=log.open("w"),
                               stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    return process, log


def _rows(folder: Path) -> int:
    path = folder / "steps.csv"
    return len(list(csv.DictReader(path.open()))) if path.exists() else 0


def _saved_batches(folder: Path) -> int:
    """Batches done in the run state saved so far (written atomically: a reader sees the old file or the new)."""
    return load_run_state(folder)["batches_done"] if (folder / STATE_FILE).exists() else 0


def _without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "seconds"}


def _interrupt(tmp_path: Path, sig: signal.Signals) -> tuple[dict, str]:
    """Start a run with a state after every batch, send ``sig`` once its second step is done (its run state
    written: a step's row in steps.csv comes before its end, and on a loaded machine a signal sent on seeing the row
    lands inside the step); check the partial results."""
    cut, cut_log = _cli(tmp_path, "cut", "--trainer.checkpoint_every_n_batches", "1")
    deadline = time.monotonic() + 500
    while _saved_batches(tmp_path / "cut" / "run") < 2:           # two edit steps done
        assert cut.poll() is None, cut_log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    cut.send_signal(sig)
    assert cut.wait(timeout=120) == 1, cut_log.read_text()[-3000:]

    output = cut_log.read_text()
    metrics_path = tmp_path / "cut" / "run" / "metrics.json"
    assert f"partial results in {metrics_path}" in output
    partial = json.loads(metrics_path.read_text())
    interrupted = partial["interrupted"]
    done, during = interrupted["batches_done"], interrupted["during_batch"]
    assert 2 <= done < 5 and partial["final"] is None
    assert partial["pre"]["token"]["reliability"] == pytest.approx(_pre_edit_reliability(), abs=1e-6)
    # n_edits: the edits the weights received, a step cut after its edit included; every finished step in steps.csv
    assert partial["n_edits"] == interrupted["n_edits"] in ({2 * done} if during is None else {2 * done, 2 * done + 2})
    assert _rows(tmp_path / "cut" / "run") in ({done} if during is None else {done, done + 1})
    with open(tmp_path / "cut" / "run" / "requests.csv") as f:   # each request scored so far, by stage
        scored = [row for row in csv.DictReader(f) if row["immediate/token/reliability"]]
    assert len(scored) == partial["n_edits"] or (during is not None and len(scored) == 2 * done)
    # the partial immediate scores are the mean over the requests scored so far
    assert partial["immediate"]["token"]["reliability"] == pytest.approx(
        sum(float(row["immediate/token/reliability"]) for row in scored) / len(scored), abs=1e-6)
    assert interrupted["run_state"] == str(tmp_path / "cut" / "run" / STATE_FILE)
    # between two steps the interrupt saves the state where it stopped; inside a step (the edit of batch `during`,
    # its scores or its run state) it keeps the last one, which with a state after every batch is at `during`
    # (or, if the signal lands between a step's state and the step's end, at `during + 1`)
    assert interrupted["run_state_batches"] in ({done} if during is None else {during, during + 1})
    assert during is None or done in (during, during + 1)
    assert f"--trainer.resume_from {tmp_path / 'cut' / 'run'}" in output
    return interrupted, output, scored


def _pre_edit_reliability() -> float:
    """The unedited model's mean token reliability on the run's 10 requests, scored here directly."""
    data = EditDataModule(root=str(ROOT / "data" / "factworld"), n=10, batch_size=2)
    data.setup("test")
    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints" / "factworld-gpt2"))
    scores = score_answers(model, tokenizer, [r.text for r in data.requests], [r.target_new for r in data.requests])
    return sum(s.token_accuracy for s in scores) / len(scores)


def test_sigterm_writes_partial_results_and_says_where(tmp_path):
    interrupted, output, _ = _interrupt(tmp_path, signal.SIGTERM)
    assert "[lit-edit] interrupted" in output and interrupted["batches_done"] >= 2


def test_ctrl_c_writes_partial_results_and_the_run_resumes_to_the_uninterrupted_result(tmp_path):
    full, full_log = _cli(tmp_path, "full", "--trainer.checkpoint_every_n_batches", "1")
    interrupted, _, scored = _interrupt(tmp_path, signal.SIGINT)
    metrics_path = tmp_path / "cut" / "run" / "metrics.json"
    resumed, resumed_log = _cli(tmp_path, "cut", "--trainer.checkpoint_every_n_batches", "1",
                                "--trainer.resume_from", str(tmp_path / "cut" / "run"))
    for process, log in ((full, full_log), (resumed, resumed_log)):
        assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    restored = interrupted["run_state_batches"]
    assert f"resumed from {tmp_path / 'cut' / 'run' / STATE_FILE}: {restored} batches" in resumed_log.read_text()
    a = json.loads((tmp_path / "full" / "run" / "metrics.json").read_text())
    with open(tmp_path / "full" / "run" / "requests.csv") as f:     # the interrupted steps scored as the full run's
        full_rows = {row["record_id"]: row for row in csv.DictReader(f)}
    assert [row["immediate/token/reliability"] for row in scored] == [
        full_rows[row["record_id"]]["immediate/token/reliability"] for row in scored]
    b = json.loads(metrics_path.read_text())
    assert "interrupted" not in b and b["n_edits"] == 10
    assert _without_time(a) == _without_time(b)


@pytest.fixture
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt in this process (a background job starts with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_an_interrupt_inside_the_deferred_block_arrives_after_it(ctrl_c_raises):
    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)            # a handler would run here, at the next bytecode
            done.append("the whole block")
    assert done == ["the whole block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # the previous handler is back


def test_an_interrupt_right_after_the_run_state_is_written_reports_that_state(tmp_path, monkeypatch, ctrl_c_raises):
    """The race a loaded CI machine hit: the signal lands after the file's rename, before ``_saved_at`` moves;
    the interrupt then named the previous state (1 batch) while the file held 2, and the resume said 2."""
    def save_then_interrupt(path, state):
        torch.save(dict(state), path)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr("lit_edit.loops.consecutive.save_run_state", save_then_interrupt)
    monkeypatch.setattr("lit_edit.loops.consecutive.new_run_state",
                        lambda batches, fingerprint, module_state: {"batches_done": batches})
    loop = ConsecutiveEditingLoop.__new__(ConsecutiveEditingLoop)   # only what _save_state reads
    loop.trainer = SimpleNamespace(is_global_zero=True)
    loop.steps_done, loop._saved_at, loop._fingerprint, loop.save_seconds = 2, 1, {}, []
    module = SimpleNamespace(run_state=dict, run_folder=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        loop._save_state(module)
    assert torch.load(tmp_path / STATE_FILE)["batches_done"] == 2
    assert loop._saved_at == 2 and len(loop.save_seconds) == 1
