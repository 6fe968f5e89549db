"""Results folders never mix runs: a folder another run is using is refused (its lock names the run), a folder
holding another run's files is refused unless this run resumes the state saved there, a lock left by a run that
ended is taken over, and a run without a results folder gets a new one. Nothing in the folder is changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from tests.cli.reliability.runs import edit_run, snapshot
from tests.conftest import ROOT
from tests.edit_configs import method_config

LOCK = "lit-edit.lock"       # lit_edit.run_folder.LOCK_FILE


@pytest.fixture
def other_run(tmp_path):
    """Another process that holds the folder ``tmp_path / "shared"`` (as a run does) until the test ends."""
    folder = tmp_path / "shared"
    code = ("import sys, time; from lit_edit.run_folder import claim_run_folder; "
            "claim_run_folder(sys.argv[1], 'model.results_dir'); print('held', flush=True); time.sleep(600)")
    process = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                               env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert process.stdout.readline().strip() == "held"
    yield folder, process.pid
    process.kill()
    process.wait()


def test_a_folder_in_use_by_another_run_is_refused_naming_it(tiny_gpt2_dir, tmp_path, other_run):
    folder, pid = other_run
    (folder / "metrics.json").write_text('{"the other run": 1}\n')      # what the other run has written so far
    before = snapshot(folder)
    with pytest.raises(Exception, match=rf"model.results_dir={folder} is in use by another run \(pid {pid} on "):
        edit_run(tiny_gpt2_dir, tmp_path, folder)
    assert snapshot(folder) == before


def test_two_cli_runs_in_one_folder_the_second_is_refused(tmp_path, other_run):
    folder, pid = other_run
    before = snapshot(folder)
    result = subprocess.run([sys.executable, "main.py", "test", *method_config("ft"),
                             "--data.init_args.n", "2", "--trainer.logger", "false", "--trainer.default_root_dir",
                             str(tmp_path), "--model.init_args.results_dir", str(folder), "--model.init_args.cache_dir",
                             str(tmp_path / "cache"), "--trainer.enable_progress_bar", "false"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert f"model.results_dir={folder} is in use by another run (pid {pid} on" in result.stdout + result.stderr
    assert snapshot(folder) == before


def test_a_lock_left_by_a_run_that_ended_is_taken_over(tiny_gpt2_dir, tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK).write_text(json.dumps({"pid": int(ended.stdout), "host": "this", "command": "killed"}))
    edit_run(tiny_gpt2_dir, tmp_path, folder)
    assert json.loads((folder / "metrics.json").read_text())["n_edits"] == 2
    assert not (folder / LOCK).exists()           # given back at the end


def _previous_run(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    for name in ("run.json", "metrics.json", "steps.csv", "requests.csv", "edits.safetensors", "run_state.pt"):
        (folder / name).write_bytes(f"{name} of the previous run".encode())
    return snapshot(folder)


def test_a_folder_holding_another_runs_files_is_refused(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "run"
    before = _previous_run(folder)
    with pytest.raises(Exception, match=rf"model.results_dir={folder} already holds the files of another run "
                                        r"\(run.json, metrics.json, steps.csv, requests.csv, run_state.pt, "
                                        r"edits.safetensors\).*or continue that run with --trainer.resume_from"):
        edit_run(tiny_gpt2_dir, tmp_path, folder)
    assert snapshot(folder) == before


class _StopAt(Callback):
    def __init__(self, index: int):
        self.index = index

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if batch_idx == self.index:
            raise RuntimeError(f"stopped at batch {batch_idx}")


def test_only_the_run_that_resumes_a_folder_may_write_there(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "run"
    with pytest.raises(RuntimeError, match="stopped at batch 1"):
        edit_run(tiny_gpt2_dir, tmp_path, folder, callbacks=[_StopAt(1)], checkpoint_every_n_batches=1)
    state = snapshot(folder)["run_state.pt"]
    with pytest.raises(Exception, match="already holds the files of another run"):
        edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1)        # a new run: refused
    with pytest.raises(Exception, match="already holds the files of another run"):     # a state from elsewhere too
        edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1,
                 resume_from=str(_copy_state(folder, tmp_path / "elsewhere")))
    assert snapshot(folder)["run_state.pt"] == state
    edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1, resume_from=str(folder))
    assert json.loads((folder / "metrics.json").read_text())["n_edits"] == 2


def _copy_state(folder: Path, to: Path) -> Path:
    to.mkdir()
    (to / "run_state.pt").write_bytes((folder / "run_state.pt").read_bytes())
    return to


def test_without_a_results_folder_each_run_gets_its_own(tiny_gpt2_dir, tmp_path):
    first = edit_run(tiny_gpt2_dir, tmp_path, None).recorder.directory
    # folders are named by the second: a second run within it gets a suffix
    second = edit_run(tiny_gpt2_dir, tmp_path, None).recorder.directory
    assert first != second and first.parent == second.parent == tmp_path / "results"
    for folder in (first, second):
        assert json.loads((folder / "metrics.json").read_text())["n_edits"] == 2
    assert not (tmp_path / "metrics.json").exists()


def test_a_downstream_evaluation_into_a_folder_with_earlier_scores_is_refused(tmp_path):
    from lit_edit.cli import LitEditCLI
    from lit_edit.run_folder import RunFolderError

    folder = tmp_path / "scores"
    folder.mkdir()
    (folder / "downstream.json").write_text('{"scores": "an earlier evaluation"}\n')
    before = snapshot(folder)
    cli = LitEditCLI(args=["--config", str(ROOT / "configs/eval/tasks.yaml"),
                           "--model.init_args.name_or_path", str(ROOT / "checkpoints/factworld-gpt2"),
                           "--data.init_args.root", str(ROOT / "data/factworld/tasks"),
                           "--data.init_args.tasks", "[sentiment]", "--data.init_args.subset", "4",
                           "--model.init_args.results_dir", str(folder), "--trainer.logger", "false",
                           "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_progress_bar", "false"],
                     run=False)
    with pytest.raises(RunFolderError, match=rf"model.results_dir={folder} already holds the files of another run "
                                             r"\(downstream.json\)"):
        cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    assert snapshot(folder) == before
