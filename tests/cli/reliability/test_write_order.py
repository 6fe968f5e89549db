"""The scores are written before the exports: an export that fails (a full disk) is reported after them, with
metrics.json, steps.csv and requests.csv intact, and says what was kept. A full disk during any atomic write, the run
state's included, names the file and what was kept."""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from pathlib import Path

import pytest
from transformers import PreTrainedModel

import lit_edit.io
from lit_edit.io import atomic_write_text
from lit_edit.run_state import load_run_state
from tests.cli.reliability.runs import edit_run, snapshot

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names open files through /proc")


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, file):
        self.file = file

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, attribute):
        return getattr(self.file, attribute)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


class _OsWithAFullDisk:
    """``os`` as ``lit_edit.io`` sees it, except that files opened for the temporary file of ``name`` (its ``nth``
    atomic write only, counting from 1, or all) find the disk full."""

    def __init__(self, name: str, nth: int | None):
        self.name, self.nth, self.count = name, nth, 0

    def __getattr__(self, attribute):
        return getattr(os, attribute)

    def fdopen(self, fd, *args, **kwargs):
        file = os.fdopen(fd, *args, **kwargs)
        if f".{self.name}." in Path(os.readlink(f"/proc/self/fd/{fd}")).name:
            self.count += 1
            if self.nth is None or self.count == self.nth:
                return _FullDisk(file)
        return file


def _full_disk_for(monkeypatch, name: str, nth: int | None = None) -> None:
    monkeypatch.setattr(lit_edit.io, "os", _OsWithAFullDisk(name, nth))


def _final_scores_kept(folder, n_edits: int = 2) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["n_edits"] == n_edits and metrics["final"]["token"]["reliability"] is not None
    assert (folder / "steps.csv").read_text().count("\n") == n_edits + 1
    assert (folder / "requests.csv").read_text().count("\n") == n_edits + 1
    return metrics


def test_a_full_disk_keeps_the_previous_file_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "the previous scores")
    _full_disk_for(monkeypatch, "metrics.json")
    with pytest.raises(Exception, match=rf"no space left on the device writing {path} \(No space left on device\); "
                                        rf"{path} keeps its previous content"):
        atomic_write_text(path, "new scores")
    assert path.read_text() == "the previous scores" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_model_export_on_a_full_disk_keeps_the_scores_and_the_edits(tiny_gpt2_dir, tmp_path, monkeypatch):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(args[0]))

    monkeypatch.setattr(PreTrainedModel, "save_pretrained", full)
    folder, hf = tmp_path / "run", tmp_path / "hf"
    with pytest.raises(Exception) as raised:
        edit_run(tiny_gpt2_dir, tmp_path, folder, module_args={"export_model_dir": str(hf)})
    metrics = _final_scores_kept(folder)                       # first what was kept, then what the user is told
    assert re.search(rf"the run finished, but its export failed: no space left on the device writing {hf} .*nothing "
                     rf"was written there; kept: the scores in {folder / 'metrics.json'}.*"
                     rf"{folder / 'edits.safetensors'} was written: make the model folder from it with python -m "
                     r"lit_edit.tools apply_edits", str(raised.value))
    assert metrics["exports"]["edits"] == "edits.safetensors" and "No space left" in metrics["exports"]["failed"]
    assert not hf.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".hf")]


def test_an_edits_file_on_a_full_disk_keeps_the_scores_and_the_run_state(tiny_gpt2_dir, tmp_path, monkeypatch):
    _full_disk_for(monkeypatch, "edits.safetensors")
    folder = tmp_path / "run"
    with pytest.raises(Exception) as raised:
        edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1)
    _final_scores_kept(folder)
    assert re.search(rf"export failed: no space left on the device writing {folder / 'edits.safetensors'} .*was not "
                     rf"written; kept: the scores in {folder / 'metrics.json'}.*the run state "
                     rf"{folder / 'run_state.pt'} holds the edits: write them again with python -m lit_edit.tools "
                     rf"export_edits --run {folder}", str(raised.value))
    assert not (folder / "edits.safetensors").exists()
    assert load_run_state(folder)["batches_done"] == 2


def test_a_run_state_on_a_full_disk_stops_the_run_and_keeps_the_previous_state(tiny_gpt2_dir, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    _full_disk_for(monkeypatch, "run_state.pt", nth=2)        # the state after batch 2 of 2
    with pytest.raises(Exception, match=rf"no space left on the device writing {folder / 'run_state.pt'} .*keeps its "
                                        r"previous content. The run stops after 2 batches; kept in .*: the run state "
                                        rf"after 1 batch, which --trainer.resume_from {folder} continues"):
        edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1)
    assert load_run_state(folder)["batches_done"] == 1
    assert (folder / "steps.csv").read_text().count("\n") == 3             # both steps
    kept = snapshot(folder)["run_state.pt"]
    monkeypatch.undo()
    edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1, resume_from=str(folder))
    _final_scores_kept(folder)
    assert load_run_state(folder)["batches_done"] == 2 and snapshot(folder)["run_state.pt"] != kept
