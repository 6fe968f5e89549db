"""Training never replaces a shipped model unasked: `main.py fit --config configs/fit/mend_factworld.yaml` writes the
editor into a new folder and prints it; an existing editor is replaced only with `model.overwrite_export` (refused
before training otherwise); the exported files get the permissions of a plain write."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from lightning import Trainer

from lit_edit.data.mend import MendDataModule
from lit_edit.editing.mend_checkpoint import load_mend_checkpoint, save_mend_checkpoint
from lit_edit.modules import MendModule
from tests.cli.reliability.runs import snapshot
from tests.conftest import ROOT

SHIPPED = ROOT / "checkpoints" / "mend-factworld-gpt2"


def test_the_mend_config_writes_a_new_folder_and_keeps_the_shipped_editor(tmp_path):
    before = snapshot(SHIPPED)
    result = subprocess.run([sys.executable, "main.py", "fit", "--config", "configs/fit/mend_factworld.yaml",
                             "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), "--trainer.max_steps", "1",
                             "--trainer.default_root_dir", str(tmp_path), "--model.init_args.rank", "8",
                             "--data.init_args.train_stop", "302", "--data.init_args.val_start", "950",
                             "--data.init_args.val_stop", "952", "--trainer.val_check_interval", "1",
                             "--trainer.enable_progress_bar", "false"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert snapshot(SHIPPED) == before
    folder = tmp_path / "logs" / "mend-factworld" / "version_0" / "mend"
    assert f"[lit-edit] MEND editor written to {folder}" in result.stdout
    network, meta = load_mend_checkpoint(folder)
    assert meta["training"]["global_step"] == 1


def _train(tmp_path: Path, export_dir: Path, **options) -> None:
    module = MendModule(rank=4, layers=[3], export_dir=str(export_dir), **options)
    trainer = Trainer(accelerator="cpu", max_steps=1, logger=False, default_root_dir=str(tmp_path),
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0)
    trainer.fit(module, datamodule=MendDataModule(train_stop=302, val_start=950, val_stop=952, batch_size=2))


def test_an_existing_editor_is_replaced_only_with_overwrite_export(tmp_path):
    shipped = tmp_path / "mend-factworld-gpt2"
    shutil.copytree(SHIPPED, shipped)
    before = snapshot(shipped)
    with pytest.raises(Exception, match=rf"model.export_dir={shipped} holds a previous lit-edit export \(MEND editor, "
                                        r"written .*\); pass model.overwrite_export true to replace it"):
        _train(tmp_path, shipped)
    assert snapshot(shipped) == before
    _train(tmp_path, shipped, overwrite_export=True)
    assert load_mend_checkpoint(shipped)[1]["layers"] == [3]


def test_training_refuses_to_export_into_the_base_model_before_training(tmp_path):
    base = tmp_path / "base"
    shutil.copytree(ROOT / "checkpoints" / "factworld-gpt2", base)
    before = snapshot(base)
    with pytest.raises(Exception, match=rf"model.export_dir={base} is the base model \(model.name_or_path\)"):
        _train(tmp_path, base, name_or_path=str(base), overwrite_export=True)
    assert snapshot(base) == before


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_saved_editor_has_the_permissions_of_a_plain_write(tmp_path):
    network, meta = load_mend_checkpoint(SHIPPED)
    previous = os.umask(0o022)
    try:
        save_mend_checkpoint(tmp_path / "mend", network, {k: v for k, v in meta.items() if k not in ("format",
                                                                                                     "modules")})
    finally:
        os.umask(previous)
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in (tmp_path / "mend").iterdir()}
    assert {modes["mend.safetensors"], modes["mend.json"]} == {"0o644"}, modes
