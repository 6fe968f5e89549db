"""A MEND checkpoint on disk (``lit_edit/editing/mend_checkpoint.py``) against files and messages written by hand:
the export marker, the layout of ``mend.json``, each missing or broken file refused with its whole message, and
the weights' digest warning only when both digests are given and differ, attributed outside the module."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
from torch import nn

from lit_edit.editing import mend_checkpoint
from lit_edit.editing.mend_checkpoint import (
    MendCheckpointError,
    check_checkpoint_fits,
    load_mend_checkpoint,
    read_mend_description,
    save_mend_checkpoint,
)
from lit_edit.editing.mend_network import MendNetwork
from lit_edit.export_folder import MARKER, ExportFolderError

NETWORK = {"rank": 2, "n_hidden": 1, "edit_lr": 0.5, "shared": True}
NOT_A_CHECKPOINT = ("{folder} is not a MEND checkpoint: it needs mend.json and mend.safetensors (written by "
                    "`python main.py fit --config configs/fit/mend_*.yaml`)")


def _save(folder, base_weights_sha256=None):
    description = {"base_model": "base", "architecture": "gpt2", "layers": [0], "network": NETWORK}
    if base_weights_sha256 is not None:
        description["base_weights_sha256"] = base_weights_sha256
    return save_mend_checkpoint(folder, MendNetwork({"fc": (3, 2)}, **NETWORK), description)


def test_the_export_marker_names_a_mend_editor_and_a_second_save_is_refused_naming_it(tmp_path):
    folder = _save(tmp_path / "mend")
    assert json.loads((folder / MARKER).read_text())["what"] == "MEND editor"
    with pytest.raises(ExportFolderError, match=r"holds a previous lit-edit export \(MEND editor, written "):
        _save(folder)


def test_mend_json_is_indented_by_two_spaces_and_ends_with_a_newline(tmp_path):
    folder = save_mend_checkpoint(tmp_path / "mend", MendNetwork({"fc": (3, 2)}, **NETWORK), {"base_model": "b"})
    assert (folder / "mend.json").read_text() == (
        '{\n  "format": "lit-edit-mend/1",\n  "modules": {\n    "fc": [\n      3,\n      2\n    ]\n  },\n'
        '  "base_model": "b"\n}\n')


@pytest.mark.parametrize("missing", ["mend.json", "mend.safetensors"])
def test_a_folder_without_either_file_is_not_a_checkpoint(tmp_path, missing):
    folder = _save(tmp_path / "mend")
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError) as caught:
        read_mend_description(folder)
    assert str(caught.value) == NOT_A_CHECKPOINT.format(folder=folder)


def test_a_mend_json_that_is_not_json_or_of_another_format_is_refused_naming_the_file(tmp_path):
    folder = _save(tmp_path / "mend")
    (folder / "mend.json").write_text("{")
    with pytest.raises(MendCheckpointError) as caught:
        read_mend_description(folder)
    assert str(caught.value).startswith(f"{folder}/mend.json is not valid JSON (Expecting property name")
    for written, shown in (({"format": "lit-edit-mend/0"}, "'lit-edit-mend/0'"), ({}, "None")):
        (folder / "mend.json").write_text(json.dumps(written))
        with pytest.raises(MendCheckpointError) as caught:
            read_mend_description(folder)
        assert str(caught.value) == f"{folder}/mend.json has format {shown}, expected 'lit-edit-mend/1'"


def test_a_broken_or_mismatched_network_file_is_refused_naming_the_file(tmp_path):
    folder = _save(tmp_path / "mend")
    meta = json.loads((folder / "mend.json").read_text())
    (folder / "mend.json").write_text(json.dumps({**meta, "network": {**NETWORK, "rank": 1}}))
    with pytest.raises(MendCheckpointError) as caught:
        load_mend_checkpoint(folder)
    assert str(caught.value).startswith(f"{folder}: mend.safetensors does not hold the network mend.json describes: "
                                        "Error(s) in loading state_dict for MendNetwork")
    (folder / "mend.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(MendCheckpointError) as caught:
        load_mend_checkpoint(folder)
    assert str(caught.value).startswith(f"{folder}/mend.safetensors is not a readable safetensors file (")


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 2)


def _fits(meta, digest):
    check_checkpoint_fits("ckpt", meta, _Model(), SimpleNamespace(name="gpt2"), "mine", None, digest)


META = {"base_model": "base", "architecture": "gpt2", "layers": [0], "modules": {"fc": [3, 2]}}


def test_a_module_the_model_lacks_is_refused_naming_it_and_the_model():
    with pytest.raises(MendCheckpointError) as caught:
        _fits({**META, "modules": {"fc": [3, 2], "blocks.fc": [3, 2]}}, "d")
    assert str(caught.value) == ("MEND checkpoint ckpt was trained for 'base' (gpt2, layers [0]): module blocks.fc "
                                 "does not exist in 'mine'")


@pytest.mark.parametrize("meta", [META, {**META, "base_weights_sha256": ""}, {**META, "base_weights_sha256": "d"}],
                         ids=["no digest", "empty digest", "same digest"])
def test_no_warning_without_a_digest_or_with_the_same_one(meta):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _fits(meta, "d")


def test_other_weights_warn_with_both_sides_named_outside_the_module():
    with pytest.warns(UserWarning) as caught:
        _fits({**META, "base_weights_sha256": "e"}, "d")
    assert [str(w.message) for w in caught] == [
        "MEND checkpoint ckpt was trained for 'base' (gpt2, layers [0]); 'mine' has the same shapes but other "
        "weights (a fine-tuned or edited base?): its edits may be weaker"]
    assert caught[0].filename != mend_checkpoint.__file__
