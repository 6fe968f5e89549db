"""One data root (``--data_root`` / ``$LIT_EDIT_DATA``, default the project's ``data/``) for the CLI, the configs and
the readers; the shipped models, fact world and configs found from any working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lit_edit.cli import LitEditCLI
from lit_edit.data import EditDataModule, MendDataModule
from lit_edit.models import load_model
from lit_edit.paths import DATA_ROOT_ENV, PROJECT_ROOT, data_root, resolve_config_args, resolve_path
from lit_edit.stats import load_corpus_texts
from lit_edit.tasks.registry import read_task
from tests.conftest import FACTWORLD, ROOT


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """Run from a directory that is not the project, with a data root of our own."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "my-data"
    root.mkdir()
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    return root


def write_zsre(path: Path) -> None:
    source = json.loads((FACTWORLD / "zsre" / "zsre_factworld.json").read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(source[:5]))


def test_the_data_root_is_the_environment_variable_else_the_project_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    assert data_root() == PROJECT_ROOT / "data" == ROOT / "data"
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert data_root() == tmp_path


def test_a_config_data_path_is_read_from_the_data_root_not_the_working_directory(elsewhere, tmp_path):
    write_zsre(elsewhere / "zsre" / "edits.json")
    write_zsre(tmp_path / "data" / "zsre" / "edits.json")   # the working directory's copy is not the one read
    data = EditDataModule(root="data", path="zsre/edits.json", batch_size=1)
    assert data.file == elsewhere / "zsre" / "edits.json"
    data.setup("test")
    assert len(data.requests) == 5
    mend = MendDataModule(root="data", train_path="zsre/edits.json", train_start=0, train_stop=3, val_start=3)
    mend.setup("fit")
    assert len(mend.train_requests) == 3 and len(mend.val_requests) == 2


def test_a_missing_data_path_names_the_data_root(elsewhere):
    assert resolve_path("data/zsre/absent.json") == elsewhere / "zsre" / "absent.json"
    with pytest.raises(FileNotFoundError, match=str(elsewhere / "zsre" / "absent.json")):
        EditDataModule(root="data", path="zsre/absent.json").setup("test")
    with pytest.raises(FileNotFoundError, match=str(elsewhere / "tasks")):
        read_task("data/tasks", "sentiment")


def test_the_shipped_fact_world_and_model_are_found_from_anywhere(elsewhere):
    data = EditDataModule(n=3)   # root data/factworld: not under this data root, so the project's
    data.setup("test")
    assert data.file == FACTWORLD / "zsre" / "zsre_factworld.json" and len(data.requests) == 3
    assert len(read_task("data/factworld/tasks", "sentiment")) > 0
    assert len(load_corpus_texts("data/factworld/corpus/heldout.jsonl")) > 0
    assert load_model("checkpoints/factworld-gpt2").config.model_type == "gpt2"


def test_a_relative_config_path_is_taken_from_the_project_when_it_is_not_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["test", "--config", "configs/edit/default.yaml", "--config=configs/edit/modes/single.yaml"]
    assert resolve_config_args(args) == ["test", "--config", str(ROOT / "configs/edit/default.yaml"),
                                         f"--config={ROOT / 'configs/edit/modes/single.yaml'}"]
    (tmp_path / "mine.yaml").write_text("seed_everything: 1\n")
    assert resolve_config_args(["--config", "mine.yaml"]) == ["--config", "mine.yaml"]


def test_the_cli_data_root_option_sets_the_data_root(elsewhere, tmp_path):
    other = tmp_path / "other-root"
    (other / "tasks").mkdir(parents=True)
    cli = LitEditCLI(args=["--config", str(ROOT / "configs/eval/tasks.yaml"), "--data_root", str(other),
                           "--data.init_args.root", "data/tasks"], run=False)
    assert os.environ[DATA_ROOT_ENV] == str(other)
    assert cli.datamodule.root == other / "tasks"


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_task_evaluation_command_runs_from_another_directory(tmp_path):
    """``python main.py test --config configs/...`` from outside the repository, as the README writes it."""
    command = [sys.executable, str(ROOT / "main.py"), "test", "--config", "configs/eval/tasks.yaml",
               "--data.init_args.tasks", "[sentiment]", "--data.init_args.subset", "4",
               "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop(DATA_ROOT_ENV, None)
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    written = list((tmp_path / "lightning_logs").rglob("downstream.json"))
    assert written, f"no downstream.json under {tmp_path}: {result.stdout[-2000:]}"
    assert json.loads(written[0].read_text())["scored"] == {"sentiment": 4}
