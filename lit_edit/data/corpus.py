"""A LightningDataModule over a text corpus (JSONL ``{"text": ...}``) for causal-LM pretraining.

Every document is one example starting at position 0 (no packing), because edit prompts are scored
that way. Batches group documents of similar length, so little compute goes to padding.

**Subject routing** (optional, training only). A record may list the character spans of the entities it
names (``"entities": [[start, end], ...]``). A small model trained on plain text looks a subject up at the
answer position, reading the raw name tokens with its first attention layer, so nothing computed at the
subject matters and locate-and-edit methods have nothing to edit; large models instead gather what they know
about a subject at its last token in early-to-middle FFN layers and later positions read it from there
(causal tracing, docs/methods.md §2). With ``subject_routing`` on, each training batch carries the
routing targets (:func:`routing_targets`): keys that queries after a name must not read (the whole name in the
first layer, all but its last token in the others) and, at the name's last token, its earlier tokens, which the
first layer should read there. The LM module adds the attention mass on forbidden keys and the first layer's
shortfall in composing the name to its loss (``lit_edit.modules.subject_routing``), so the model *learns* to
know a name at its last token and to reach it only through that token's residual stream, and it stays an
ordinary causal LM with plain attention (docs/factworld.md: what was measured with it and with weaker
variants).
"""

from __future__ import annotations

import random
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lit_edit.corpus_records import read_records, read_texts
from lit_edit.factworld.build import build
from lit_edit.models.loading import load_tokenizer
from lit_edit.scoring import pad_right

__all__ = ["LengthGroupedBatches", "TextCorpusDataModule", "answer_tokens", "hidden_name_tokens", "read_records",
           "read_texts", "routing_targets"]


def hidden_name_tokens(offsets: list[tuple[int, int]], spans: list[list[int]]) -> list[tuple[int, list[int]]]:
    """For each entity span, ``(last token index, indices of its earlier tokens)``, from token offsets."""
    blocked = []
    for start, end in spans:
        tokens = [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]
        if len(tokens) > 1:
            blocked.append((tokens[-1], tokens[:-1]))
    return blocked


def answer_tokens(offsets: list[tuple[int, int]], span: list[int] | None) -> list[int]:
    """Indices of the tokens that overlap the character span ``[start, end)`` of a marked answer (none: [])."""
    if span is None:
        return []
    start, end = span
    return [i for i, (a, b) in enumerate(offsets) if b > a and a < end and b > start]


def routing_targets(attention_mask: torch.Tensor, blocked: list[list[tuple[int, list[int]]]]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The subject-routing targets of a batch, booleans over (query, key):

    - ``forbidden`` ``[batch, 2, T, T]``: keys a query after an entity must not read — ``[:, 0]`` in the first
      layer, every token of the entity; ``[:, 1]`` in the other layers, all but its last token;
    - ``compose`` ``[batch, T, T]``: at an entity's last token, its earlier tokens (the first layer should read
      them there, so the name is known at its last token).

    Causal order and padding are left to the attention mask.
    """
    batch, width = attention_mask.shape
    forbidden = torch.zeros(batch, 2, width, width, dtype=torch.bool)
    compose = torch.zeros(batch, width, width, dtype=torch.bool)
    for row, entities in enumerate(blocked):
        for last, earlier in entities:
            forbidden[row, 0, last + 1:, earlier + [last]] = True
            forbidden[row, 1, last + 1:, earlier] = True
            compose[row, last, earlier] = True
    keys = attention_mask.bool()
    return forbidden & keys[:, None, None, :], compose & keys[:, None, :]


class LengthGroupedBatches(Dataset):
    """Pre-formed batches of token-id lists, grouped by length; each item is one padded batch."""

    def __init__(self, sequences: list[list[int]], batch_size: int, pad_id: int, seed: int,
                 blocked: list[list[tuple[int, list[int]]]] | None = None, answers: list[list[int]] | None = None):
        order = sorted(range(len(sequences)), key=lambda i: (len(sequences[i]), i))
        self.batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        random.Random(seed).shuffle(self.batches)
        self.sequences, self.pad_id, self.blocked, self.answers = sequences, pad_id, blocked, answers

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rows = self.batches[index]
        input_ids, mask = pad_right([self.sequences[i] for i in rows], self.pad_id)
        labels = input_ids.masked_fill(mask == 0, -100)
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        if self.blocked is not None:
            blocked = [self.blocked[i] for i in rows]
            batch["routing_forbidden"], batch["routing_compose"] = routing_targets(mask, blocked)
        if self.answers is not None:
            batch["answer_mask"] = torch.zeros_like(mask, dtype=torch.bool)
            for row, i in enumerate(rows):
                batch["answer_mask"][row, self.answers[i]] = True
        return batch


class TextCorpusDataModule(L.LightningDataModule):
    """Train / validation / test batches from ``{root}/corpus/{train,heldout}.jsonl``.

    Training batches also carry ``answer_mask`` (the tokens of each record's marked ``answer`` span, e.g. the
    skills corpus's gold continuations; ``CausalLMModule(answer_weight=...)`` weights them) when some training
    record marks one.

    Args:
        root: a folder with ``corpus/train.jsonl`` and ``corpus/heldout.jsonl``; for the fact world
            it is generated when missing (``python -m lit_edit.tools build_world``).
        tokenizer_path: a tokenizer folder or hub name (named apart from the module's ``tokenizer`` so that
            the two hyperparameter sets merge in the logger).
        batch_size: documents per batch.
        max_length: documents are truncated to this many tokens (EOS included).
        batch_seed: seed of the batch order.
        generate_factworld: build the fact world into ``root`` if its corpus is missing.
        subject_routing: give training batches the subject-routing targets (module docstring); needs ``entities``.
        train_files: the corpus files (``{root}/corpus/{name}.jsonl``) whose documents make up the training set,
            e.g. ``[train, skills]`` for a stage on the skills corpus (``python -m lit_edit.tools build_skills``).
    """

    def __init__(self, root: str = "data/factworld", tokenizer_path: str = "data/factworld/tokenizer-gpt2",
                 batch_size: int = 64, max_length: int = 256, batch_seed: int = 0, generate_factworld: bool = True,
                 subject_routing: bool = False, train_files: list[str] | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.root = Path(root)
        self.train_files = list(train_files or ["train"])
        if not self.train_files or len(set(self.train_files)) != len(self.train_files):
            raise ValueError(f"data.init_args.train_files must name distinct corpus files, got {train_files}")

    def prepare_data(self) -> None:
        if not (self.root / "corpus" / "train.jsonl").exists():
            if not self.hparams.generate_factworld:
                raise FileNotFoundError(f"{self.root}/corpus/train.jsonl does not exist")
            build(self.root)
        for name in self.train_files:
            if not (self.root / "corpus" / f"{name}.jsonl").exists():
                hint = "" if name == "train" else f" (a skills file? write it with: python -m lit_edit.tools " \
                                                   f"build_skills --name {name})"
                raise FileNotFoundError(f"data.init_args.train_files names {name!r}, but "
                                        f"{self.root}/corpus/{name}.jsonl does not exist{hint}")

    def _encode(self, names: list[str]
                ) -> tuple[list[list[int]], list[list[tuple[int, list[int]]]], list[list[int]] | None]:
        """Token ids (truncated, EOS appended), per document its entities' hidden tokens and (when some record marks
        an answer) its answer tokens, of the documents of ``corpus/{name}.jsonl`` for each name in turn."""
        tokenizer = load_tokenizer(self.hparams.tokenizer_path)
        limit = self.hparams.max_length - 1
        sequences, blocked, answers = [], [], []
        for name in names:
            path = self.root / "corpus" / f"{name}.jsonl"
            records = read_records(path)
            encoded = tokenizer([r["text"] for r in records], add_special_tokens=True, return_offsets_mapping=True)
            sequences += [ids[:limit] + [tokenizer.eos_token_id] for ids in encoded["input_ids"]]
            for number, (record, offsets) in enumerate(zip(records, encoded["offset_mapping"]), 1):
                if self.hparams.subject_routing:
                    if "entities" not in record:
                        raise ValueError(f"{path}:{number}: subject_routing needs an 'entities' field on every "
                                         "record (regenerate the fact world, or turn subject_routing off)")
                    blocked.append(hidden_name_tokens(offsets[:limit], record["entities"]))
                answers.append(answer_tokens(offsets[:limit], record.get("answer")))
        return sequences, blocked, answers if any(answers) else None

    def setup(self, stage: str) -> None:
        pad_id = load_tokenizer(self.hparams.tokenizer_path).pad_token_id
        if stage == "fit":
            sequences, blocked, answers = self._encode(self.train_files)
            self.train_set = LengthGroupedBatches(sequences, self.hparams.batch_size, pad_id, self.hparams.batch_seed,
                                                  blocked if self.hparams.subject_routing else None, answers)
        self.heldout_set = LengthGroupedBatches(self._encode(["heldout"])[0], self.hparams.batch_size, pad_id, 0)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=None, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.heldout_set, batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.heldout_set, batch_size=None)
