"""Small editing runs and folder snapshots shared by the reliability tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from lit_edit.data import EditDataModule
from lit_edit.editors import FT
from lit_edit.loops import EditTrainer
from lit_edit.modules import EditingModule
from tests.conftest import FACTWORLD


def edit_run(model_dir: Path, tmp_path: Path, results_dir: Path | None, callbacks=(), n: int = 2,
             module_args: dict | None = None, **trainer_args) -> EditingModule:
    """Two FT edits of ``model_dir`` (one per batch) into ``results_dir``, caches under ``tmp_path``."""
    module = EditingModule(str(model_dir), FT(layers=[1], lr=1e-2, steps=1, norm_constraint=None),
                           families=("token",), results_dir=str(results_dir) if results_dir else None,
                           cache_dir=str(tmp_path / "cache"), monitor_docs=2, **(module_args or {}))
    trainer_args = {"logger": False, "default_root_dir": str(tmp_path), **trainer_args}
    trainer = EditTrainer(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                          callbacks=list(callbacks), **trainer_args)
    trainer.test(module, datamodule=EditDataModule(root=str(FACTWORLD), n=n, batch_size=1), verbose=False)
    return module


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path → sha256 of its bytes), links not followed."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}
