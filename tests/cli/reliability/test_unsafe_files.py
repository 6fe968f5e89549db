"""Files that are damaged or that carry code: a truncated run state is refused naming it, and no file lit-edit reads
(a run state, a model's ``pytorch_model.bin``) runs the code a pickle carries. Each file is left as it was."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from lit_edit.models.loading import ModelLoadError, load_model
from lit_edit.run_state import FORMAT, STATE_FILE, VERSION, ResumeError, load_run_state, save_run_state


class _Payload:
    """Unpickling this object creates the file ``marker``: evidence that code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_truncated_run_state_is_refused_naming_the_file_and_kept(tmp_path):
    save_run_state(tmp_path / STATE_FILE, {"format": FORMAT, "version": VERSION, "weights": torch.arange(4096.0)})
    state = tmp_path / STATE_FILE
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    before = _digest(state)
    with pytest.raises(ResumeError, match=rf"{state} is not a readable run state"):
        load_run_state(tmp_path)
    assert _digest(state) == before


def test_a_run_state_carrying_code_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"format": FORMAT, "version": VERSION, "payload": _Payload(marker)}, tmp_path / STATE_FILE)
    with pytest.raises(ResumeError, match=rf"{tmp_path / STATE_FILE} is not a readable run state"):
        load_run_state(tmp_path)
    assert not marker.exists()


def test_a_model_whose_weights_file_carries_code_runs_nothing(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2_dir, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    torch.save({"payload": _Payload(marker)}, folder / "pytorch_model.bin")
    before = _digest(folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match=r"holds objects other than tensors, which lit-edit does not unpickle"):
        load_model(str(folder))
    assert not marker.exists()
    assert _digest(folder / "pytorch_model.bin") == before
