"""Evaluate a causal LM on the downstream tasks without editing (``python main.py test --config
configs/eval/tasks.yaml``): both modes from one generation per prompt, results written as JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import torch

from lit_edit.io import atomic_write_text
from lit_edit.lengths import context_length
from lit_edit.models.loading import load_model_and_tokenizer
from lit_edit.run_folder import RunFolderLock, claim_run_folder
from lit_edit.tasks.evaluate import score_records
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import get_task
from lit_edit.tasks.suite import drop_too_long, too_long_note


def flatten_scores(results: dict[str, dict]) -> dict[str, float]:
    """``{task: {mode: {name: value}}}`` -> ``{"task/mode/name": value}`` without the missing values."""
    return {f"{task}/{mode}/{name}": value for task, modes in results.items() for mode, values in modes.items()
            for name, value in values.items() if value is not None}


class DownstreamEvalModule(L.LightningModule):
    """Score ``name_or_path`` on the tasks of the DataModule (``lit_edit.tasks.DownstreamDataModule``).

    Args:
        name_or_path: a Hugging Face causal LM folder (or hub name when online).
        dtype: ``float32``, ``float16`` or ``bfloat16``.
        generation_batch_size: the most prompts in one generation batch (``lit_edit.generation.plan_batches``).
        after_edit: score with the reference's post-edit parsers in ``paper`` mode (BoolQ substring, MuTual
            ``Chi`` rule); the corrected numbers do not depend on it.
        results_dir: where ``downstream.json`` is written; default: the logger's version folder.
    """

    def __init__(self, name_or_path: str = "checkpoints/factworld-gpt2", dtype: str = "float32",
                 generation_batch_size: int = 32, after_edit: bool = False, results_dir: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model, self.tokenizer = load_model_and_tokenizer(name_or_path, dtype)
        self.model.eval()
        self.scores = torch.nn.ModuleDict()
        self._started = 0.0
        self._folder_lock: RunFolderLock | None = None

    @property
    def results_folder(self) -> Path:
        """Where ``downstream.json`` goes: ``results_dir``, else the logger's version folder, else ``results``."""
        return Path(self.hparams.results_dir or self.trainer.log_dir or "results")

    def setup(self, stage: str) -> None:
        """Before any scoring: claim the results folder (one run per folder, ``lit_edit.run_folder``) and leave out
        the examples longer than the model's context (counted in the results)."""
        if stage == "test" and self.trainer.is_global_zero and self._folder_lock is None:
            option = "model.results_dir" if self.hparams.results_dir else "the logger's folder"
            self._folder_lock = claim_run_folder(self.results_folder, option)
        data = self.trainer.datamodule
        if stage == "test" and not data.too_long:
            data.too_long = drop_too_long(data.datasets, data.root, self.tokenizer, context_length(self.model),
                                          strict=data.strict_length)
            note = too_long_note(data.too_long, data.datasets, context_length(self.model))
            if note and self.trainer.is_global_zero:
                print(note)

    def on_test_start(self) -> None:
        self.tasks = list(self.trainer.datamodule.tasks)
        self.scores = torch.nn.ModuleDict({task: DownstreamMetric(task) for task in self.tasks}).to(self.device)
        self._started = time.perf_counter()

    def test_step(self, batch: list[tuple[int, dict]], batch_idx: int, dataloader_idx: int = 0) -> None:
        task = self.tasks[dataloader_idx]
        indices, records = [i for i, _ in batch], [r for _, r in batch]
        scores = score_records(self.model, self.tokenizer, get_task(task), records, self.hparams.after_edit,
                               self.hparams.generation_batch_size)
        self.scores[task].update(scores, indices)

    def on_test_epoch_end(self) -> None:
        results = {task: self.scores[task].compute() for task in self.tasks}
        scored = {task: self.scores[task].scored() for task in self.tasks}
        for name, value in flatten_scores(results).items():
            self.log(f"downstream/{name}", float(value), add_dataloader_idx=False, sync_dist=False)
        if self.trainer.is_global_zero:
            directory = self.results_folder
            payload = {"model": str(self.hparams.name_or_path), "after_edit": self.hparams.after_edit,
                       "data": self.trainer.datamodule.describe(), "scores": results, "scored": scored,
                       "seconds": time.perf_counter() - self._started}
            atomic_write_text(directory / "downstream.json", json.dumps(payload, indent=1))
            print(f"[lit-edit] downstream tasks {self.tasks}; results in {directory / 'downstream.json'}")
            if self._folder_lock is not None:
                self._folder_lock.release()
                self._folder_lock = None
