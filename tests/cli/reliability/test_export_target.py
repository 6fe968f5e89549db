"""An export never deletes what lit-edit did not write: `apply_edits --out` and `model.export_model_dir` refuse the
current folder, a folder with other files, the results folder, the base model and symbolic links, naming the option;
a previous lit-edit export (its marker file) is replaced only with the overwrite option. Exported files get the
permissions a plain write gives."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import torch

from lit_edit import tools
from lit_edit.export import save_edits
from lit_edit.models.loading import load_model
from lit_edit.stats import weights_sha256
from tests.cli.reliability.runs import edit_run, snapshot

MARKER = "lit-edit-export.json"     # lit_edit.export_folder.MARKER: every export holds it
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions and links")


@pytest.fixture(scope="module")
def edits_file(tiny_gpt2_dir, tmp_path_factory) -> Path:
    """An edits file of the tiny GPT-2 (one changed FFN weight), in a run folder of its own."""
    model = load_model(str(tiny_gpt2_dir))
    name = "transformer.h.1.mlp.c_proj.weight"
    weight = model.get_parameter(name).detach() + 0.01
    return save_edits(tmp_path_factory.mktemp("run") / "edits.safetensors", base_model=str(tiny_gpt2_dir),
                      base_sha256=weights_sha256(model), method="test", n_edits=1, weights={name: weight})


@pytest.fixture(autouse=True)
def _raise_known_errors(monkeypatch):
    """``tools.main`` turns a known error into one line and exit 2; with ``LIT_EDIT_DEBUG`` it raises the error
    itself, whose message and type these tests check (the one-line form: ``test_cli_errors.py``)."""
    monkeypatch.setenv("LIT_EDIT_DEBUG", "1")


def _apply(base: Path, edits: Path, out: str, *extra: str) -> None:
    tools.main(["apply_edits", "--base", str(base), "--edits", str(edits), "--out", out, *extra])


def _user_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("a week of notes\n")
    (folder / "data").mkdir()
    (folder / "data" / "table.csv").write_text("a,b\n1,2\n")
    return folder


def test_the_current_folder_is_refused_and_kept(tiny_gpt2_dir, edits_file, tmp_path, monkeypatch):
    here = _user_files(tmp_path / "work")
    monkeypatch.chdir(here)
    before = snapshot(here)
    with pytest.raises(Exception, match=r"--out=\. is the current folder"):
        _apply(tiny_gpt2_dir, edits_file, ".")
    assert snapshot(here) == before


def test_a_folder_with_other_files_is_refused_and_kept(tiny_gpt2_dir, edits_file, tmp_path):
    folder = _user_files(tmp_path / "mine")
    before = snapshot(folder)
    with pytest.raises(Exception, match=r"--out=.*mine holds files lit-edit did not write \(data, notes.txt\)"):
        _apply(tiny_gpt2_dir, edits_file, str(folder))
    with pytest.raises(Exception, match="holds files lit-edit did not write"):
        _apply(tiny_gpt2_dir, edits_file, str(folder), "--overwrite", "true")     # not even with --overwrite
    assert snapshot(folder) == before


def test_the_base_model_and_the_run_folder_are_refused_and_kept(tiny_gpt2_dir, edits_file, tmp_path):
    base_before, run_before = snapshot(tiny_gpt2_dir), snapshot(edits_file.parent)
    with pytest.raises(Exception, match=r"--out=.* is the base model \(--base\)"):
        _apply(tiny_gpt2_dir, edits_file, str(tiny_gpt2_dir), "--overwrite", "true")
    with pytest.raises(Exception, match=r"--out=.* is the run folder of --edits"):
        _apply(tiny_gpt2_dir, edits_file, str(edits_file.parent), "--overwrite", "true")
    with pytest.raises(Exception, match=r"--out=.* holds the base model \(--base\)"):
        _apply(tiny_gpt2_dir, edits_file, str(tiny_gpt2_dir.parent), "--overwrite", "true")
    assert snapshot(tiny_gpt2_dir) == base_before and snapshot(edits_file.parent) == run_before


@POSIX
def test_a_symbolic_link_is_refused_and_its_target_kept(tiny_gpt2_dir, edits_file, tmp_path):
    target = _user_files(tmp_path / "real")
    (tmp_path / "link").symlink_to(target)
    before = snapshot(target)
    with pytest.raises(Exception, match=r"--out=.*link is a symbolic link"):
        _apply(tiny_gpt2_dir, edits_file, str(tmp_path / "link"))
    assert (tmp_path / "link").is_symlink() and snapshot(target) == before


def test_a_previous_export_is_replaced_only_with_overwrite(tiny_gpt2_dir, edits_file, tmp_path):
    out = tmp_path / "edited"
    _apply(tiny_gpt2_dir, edits_file, str(out))
    assert (out / MARKER).is_file() and (out / "model.safetensors").is_file()
    before = snapshot(out)
    with pytest.raises(Exception, match=r"--out=.*edited holds a previous lit-edit export \(edited model, written "
                                        r".*\); pass --overwrite true to replace it"):
        _apply(tiny_gpt2_dir, edits_file, str(out))
    assert snapshot(out) == before
    _apply(tiny_gpt2_dir, edits_file, str(out), "--overwrite", "true")
    assert sorted(snapshot(out)) == sorted(before)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # no temporary folder left behind


@POSIX
def test_exported_files_get_the_permissions_of_a_plain_write(tiny_gpt2_dir, edits_file, tmp_path):
    previous = os.umask(0o022)
    try:
        _apply(tiny_gpt2_dir, edits_file, str(tmp_path / "edited"))
    finally:
        os.umask(previous)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "edited").iterdir()}
    assert modes and set(modes.values()) == {"0o644"}, modes


def test_an_export_model_dir_that_is_the_results_folder_is_refused_before_any_work(tiny_gpt2_dir, tmp_path):
    folder = _user_files(tmp_path / "run")
    before = snapshot(folder)
    with pytest.raises(Exception, match=r"model.export_model_dir=.*run is the results folder"):
        edit_run(tiny_gpt2_dir, tmp_path, folder, module_args={"export_model_dir": str(folder)})
    assert snapshot(folder) == before          # no run file either: refused before the first edit


def test_an_export_model_dir_holding_other_files_is_refused_before_any_work(tiny_gpt2_dir, tmp_path):
    other = _user_files(tmp_path / "other")
    before = snapshot(other)
    with pytest.raises(Exception, match=r"model.export_model_dir=.*other holds files lit-edit did not write"):
        edit_run(tiny_gpt2_dir, tmp_path, tmp_path / "run", module_args={"export_model_dir": str(other)})
    assert snapshot(other) == before
    assert not (tmp_path / "run" / "metrics.json").exists() and not (tmp_path / "run" / "steps.csv").exists()


def test_a_run_replaces_its_previous_export_with_overwrite_export(tiny_gpt2_dir, tmp_path):
    edit_run(tiny_gpt2_dir, tmp_path, tmp_path / "first", module_args={"export_model_dir": str(tmp_path / "hf")})
    first = load_model(str(tmp_path / "hf")).state_dict()
    with pytest.raises(Exception, match=r"holds a previous lit-edit export .*pass model.overwrite_export true"):
        edit_run(tiny_gpt2_dir, tmp_path, tmp_path / "second", module_args={"export_model_dir": str(tmp_path / "hf")})
    assert all(torch.equal(first[k], v) for k, v in load_model(str(tmp_path / "hf")).state_dict().items())
    edit_run(tiny_gpt2_dir, tmp_path, tmp_path / "third", n=1,
             module_args={"export_model_dir": str(tmp_path / "hf"), "overwrite_export": True})
    third = load_model(str(tmp_path / "hf")).state_dict()
    assert not all(torch.equal(first[k], v) for k, v in third.items())     # one edit instead of two


def test_export_edits_writes_over_nothing_but_its_own_edits_file(tiny_gpt2_dir, tmp_path):
    folder = tmp_path / "run"
    edit_run(tiny_gpt2_dir, tmp_path, folder, checkpoint_every_n_batches=1, module_args={"export_edits": False})
    notes = _user_files(tmp_path / "mine") / "notes.txt"
    before = notes.read_bytes()
    for overwrite in ([], ["--overwrite", "true"]):
        with pytest.raises(Exception) as raised:
            tools.main(["export_edits", "--run", str(folder), "--out", str(notes), *overwrite])
        assert notes.read_bytes() == before
        assert f"--out={notes} is a file lit-edit did not write; name a new file" in str(raised.value)
    tools.main(["export_edits", "--run", str(folder)])
    before = snapshot(folder)
    with pytest.raises(Exception, match=r"--out=.*edits.safetensors holds an edits file already; pass --overwrite "
                                        r"true to replace it"):
        tools.main(["export_edits", "--run", str(folder)])
    assert snapshot(folder) == before
    tools.main(["export_edits", "--run", str(folder), "--overwrite", "true"])
    assert sorted(snapshot(folder)) == sorted(before)
