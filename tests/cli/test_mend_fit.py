"""MEND training through the CLI (`main.py fit`): the export, the TensorBoard curve, and a 2-process DDP run whose
running moments count every token of both ranks."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from lit_edit.editing.mend import gradient_factors
from lit_edit.editing.mend_checkpoint import load_mend_checkpoint
from lit_edit.models import load_model_and_tokenizer
from lit_edit.scoring import labelled_batch
from tests.conftest import ROOT, run_edit_cli
from tests.edit_configs import method_config


def _fit(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "main.py", "fit", "--config", "configs/fit/mend_factworld.yaml",
               "--trainer.logger.init_args.save_dir", str(tmp_path / "logs"), "--trainer.default_root_dir",
               str(tmp_path), "--model.init_args.export_dir", str(tmp_path / "mend"), "--model.init_args.rank", "16",
               "--trainer.enable_progress_bar", "false", "--data.init_args.val_start", "950",
               "--data.init_args.val_stop", "960", *extra]
    return subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)


def test_fit_exports_the_best_editor_and_logs_its_training_curve(tmp_path):
    _fit(tmp_path, "--trainer.max_steps", "3", "--data.init_args.train_stop", "330", "--trainer.log_every_n_steps",
         "1", "--trainer.val_check_interval", "3")
    network, meta = load_mend_checkpoint(tmp_path / "mend")
    assert meta["training"]["global_step"] == 3 and meta["training"]["monitor"] == "val/loss"
    assert meta["layers"] == [1, 2, 3] and meta["architecture"] == "gpt2"
    assert any(float(layer.up.abs().sum()) > 0 for t in network.transforms.values() for layer in t.layers)  # learned
    events = list((tmp_path / "logs").rglob("events.out.tfevents.*"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/edit_success", "val/loss", "val/locality", "val/rephrase_success"} <= tags


def _edit_rows(requests) -> dict[str, int]:
    """How many token rows each edited module contributes over ``requests`` (each request its own edit)."""
    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints" / "factworld-gpt2"))
    model.requires_grad_(False)
    ids, mask, labels = labelled_batch(tokenizer, [r.prompt.format(r.subject) for r in requests],
                                       [r.target_new for r in requests], max_length=40)
    names = [f"transformer.h.{layer}.mlp.{m}" for layer in (1, 2, 3) for m in ("c_fc", "c_proj")]
    factors, _ = gradient_factors(model, names, ids, mask, labels, torch.arange(len(requests)))
    return {name: len(f.inputs) for name, f in factors.items()}


MODES = {"single": (1, True), "instance_sequential": (1, False), "batch_single": (10, True),
         "batch_sequential": (10, False)}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_the_mend_config_runs_in_every_mode_with_the_committed_editor(tmp_path, mode):
    """8 held-out edits per mode; rollback modes restore the base, accumulating ones keep every step's change."""
    from lit_edit.models.loading import load_model

    batch_size, rollback = MODES[mode]
    cli = run_edit_cli(tmp_path, *method_config("mend"), "--config",
                       str(ROOT / f"configs/edit/modes/{mode}.yaml"), "--data.init_args.n", "8",
                       "--data.init_args.batch_size", str(min(batch_size, 4)), "--trainer.eval_every_n_batches", "0",
                       "--model.init_args.families", "[token]", "--model.init_args.monitor_docs", "4")
    assert cli.model.hparams.rollback is rollback
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == "mend" and metrics["n_edits"] == 8
    assert metrics["immediate"]["token"]["reliability"] >= 0.75
    fresh = dict(load_model(str(ROOT / "checkpoints/factworld-gpt2")).named_parameters())
    edited = dict(cli.model.model.named_parameters())
    changed = [name for name, p in edited.items() if not torch.equal(p, fresh[name])]
    assert changed == ([] if rollback else [f"transformer.h.{layer}.mlp.{m}.weight" for layer in (1, 2, 3)
                                            for m in ("c_fc", "c_proj")])
