"""A LightningDataModule over a text corpus (JSONL ``{"text": ...}``) for causal-LM pretraining.

Every document is one example starting at position 0 (no packing), because edit prompts are scored
that way. Batches group documents of similar length, so little compute goes to padding.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lit_edit.models.loading import load_tokenizer
from lit_edit.scoring import pad_right


def read_texts(path: Path) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    texts.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError) as e:
                    raise ValueError(f"{path}:{number}: expected a JSON object with a 'text' field ({e})") from e
    return texts


class LengthGroupedBatches(Dataset):
    """Pre-formed batches of token-id lists, grouped by length; each item is one padded batch."""

    def __init__(self, sequences: list[list[int]], batch_size: int, pad_id: int, seed: int):
        order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
        self.batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        random.Random(seed).shuffle(self.batches)
        self.sequences, self.pad_id = sequences, pad_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        input_ids, mask = pad_right([self.sequences[i] for i in self.batches[index]], self.pad_id)
        return {"input_ids": input_ids, "attention_mask": mask, "labels": input_ids.masked_fill(mask == 0, -100)}


class TextCorpusDataModule(L.LightningDataModule):
    """Train / validation / test batches from ``{root}/corpus/{train,heldout}.jsonl``.

    Args:
        root: a folder with ``corpus/train.jsonl`` and ``corpus/heldout.jsonl``; for the fact world
            it is generated when missing (``python -m lit_edit.tools build-world``).
        tokenizer_path: a tokenizer folder or hub name (named apart from the module's ``tokenizer`` so that
            the two hyperparameter sets merge in the logger).
        batch_size: documents per batch.
        max_length: documents are truncated to this many tokens (EOS included).
        batch_seed: seed of the batch order.
        generate_factworld: build the fact world into ``root`` if its corpus is missing.
    """

    def __init__(self, root: str = "data/factworld", tokenizer_path: str = "data/factworld/tokenizer-gpt2",
                 batch_size: int = 64, max_length: int = 256, batch_seed: int = 0, generate_factworld: bool = True):
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)

    def prepare_data(self) -> None:
        if not (self.root / "corpus" / "train.jsonl").exists():
            if not self.hparams.generate_factworld:
                raise FileNotFoundError(f"{self.root}/corpus/train.jsonl does not exist")
            from lit_edit.factworld.build import build

            build(self.root)

    def _encode(self, split: str) -> list[list[int]]:
        tokenizer = load_tokenizer(self.hparams.tokenizer_path)
        texts = read_texts(self.root / "corpus" / f"{split}.jsonl")
        encoded = tokenizer(texts, add_special_tokens=True)["input_ids"]
        limit = self.hparams.max_length - 1
        return [ids[:limit] + [tokenizer.eos_token_id] for ids in encoded]

    def setup(self, stage: str) -> None:
        pad_id = load_tokenizer(self.hparams.tokenizer_path).pad_token_id
        if stage == "fit":
            self.train_set = LengthGroupedBatches(self._encode("train"), self.hparams.batch_size, pad_id,
                                                  self.hparams.batch_seed)
        self.heldout_set = LengthGroupedBatches(self._encode("heldout"), self.hparams.batch_size, pad_id, 0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=None, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.heldout_set, batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.heldout_set, batch_size=None)
