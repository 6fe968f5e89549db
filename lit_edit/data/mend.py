"""A LightningDataModule of ZsRE-format edits for training the MEND editor network (docs/methods.md §5, "Data").

Batches are lists of :class:`~lit_edit.editing.requests.EditRequest`; the training module tokenises them. The
default splits the fact-world edit set so that MEND never trains on the records the editing configs edit
(records 0–299): it trains on records 300–949 and validates on 950–999. For the real data, point ``root`` at
the folder holding ``zsre_mend_train.json`` / ``zsre_mend_eval.json`` and clear the slices.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lit_edit.data.edits import read_edit_set
from lit_edit.editing.requests import EditRequest
from lit_edit.paths import resolve_path


class MendDataModule(L.LightningDataModule):
    """Training and validation edits for MEND.

    Args:
        root: folder that relative paths live in (found as ``lit_edit.paths`` says: ``data`` is the data root).
        train_path / val_path: ZsRE-format files (``val_path`` None: the training file).
        train_start / train_stop, val_start / val_stop: the record slices used from each file.
        batch_size: edit examples per training step, each its own edit (gradients summed; the reference
            accumulates 10 single-example steps).
        val_batch_size: edit examples per validation step.
        shuffle_seed: the training order is reshuffled every epoch from this seed (via the sampler generator).
    """

    def __init__(self, root: str = "data/factworld", train_path: str = "zsre/zsre_factworld.json",
                 val_path: str | None = None, train_start: int = 300, train_stop: int | None = 950,
                 val_start: int = 950, val_stop: int | None = None, batch_size: int = 10, val_batch_size: int = 25,
                 shuffle_seed: int = 0):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("val_batch_size", val_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.save_hyperparameters()
        self.train_requests: list[EditRequest] = []
        self.val_requests: list[EditRequest] = []

    def _file(self, path: str) -> Path:
        return resolve_path(Path(self.hparams.root) / path)

    def _read(self, path: str) -> list[EditRequest]:
        return list(read_edit_set(self._file(path), "zsre").requests)

    def setup(self, stage: str) -> None:
        h = self.hparams
        if self.train_requests:
            return
        train_file = self._read(h.train_path)
        val_file = train_file if h.val_path is None else self._read(h.val_path)
        slices = {"training": (train_file, h.train_start, h.train_stop, h.train_path),
                  "validation": (val_file, h.val_start, h.val_stop, h.val_path or h.train_path)}
        for role, (requests, start, stop, path) in slices.items():
            if not requests[start:stop]:
                raise ValueError(f"{self._file(path)}: the {role} slice [{start}:{stop}] holds no edit requests")
        if h.val_path is None:
            indices = range(len(train_file))
            if set(indices[h.train_start:h.train_stop]) & set(indices[h.val_start:h.val_stop]):
                raise ValueError(f"the training slice [{h.train_start}:{h.train_stop}] and the validation slice "
                                 f"[{h.val_start}:{h.val_stop}] of {h.train_path} overlap")
        self.train_requests = train_file[h.train_start:h.train_stop]
        self.val_requests = val_file[h.val_start:h.val_stop]

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.hparams.shuffle_seed)
        return DataLoader(self.train_requests, batch_size=self.hparams.batch_size, shuffle=True, collate_fn=list,
                          generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_requests, batch_size=self.hparams.val_batch_size, shuffle=False, collate_fn=list)

