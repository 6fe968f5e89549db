"""A LightningDataModule that streams edit requests (ZsRE, CounterFact, fact-world sets) in batches.

The batch size is the editing mode's batch size (1 = one request per edit step). The stream is never sharded
across processes: every rank applies every edit (the trainer turns the distributed sampler off).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
from torch.utils.data import DataLoader

from lit_edit.editing.requests import (
    EditRequest,
    EditSet,
    EditSetFileError,
    SelectionError,
    is_counterfact_edit_record,
    load_records,
    read_counterfact,
    read_zsre,
    select,
    shared_subject_count,
)
from lit_edit.paths import resolve_path

FORMATS = ("auto", "zsre", "counterfact")


def detect_format(path: Path | str) -> str:
    """``zsre`` or ``counterfact`` (original or EasyEdit's flattened ``counterfact-edit.json``) from the first
    record's fields."""
    first = load_records(path)[0][0]
    if isinstance(first, dict) and "requested_rewrite" in first or is_counterfact_edit_record(first):
        return "counterfact"
    if isinstance(first, dict) and "src" in first:
        return "zsre"
    raise EditSetFileError(f"{path}: cannot tell the edit-set format from its first record; set format to 'zsre' or "
                           "'counterfact'")


def read_edit_set(path: Path | str, format: str = "auto", target_true_from: str = "answers") -> EditSet:
    if format not in FORMATS:
        raise EditSetFileError(f"format {format!r} is not one of {FORMATS}")
    if not Path(path).exists():
        raise FileNotFoundError(f"edit set {path} does not exist")
    format = detect_format(path) if format == "auto" else format
    if format == "zsre":
        return read_zsre(path, target_true=target_true_from)
    if target_true_from != "answers":
        raise ValueError(f"target_true_from {target_true_from!r} names a ZsRE field, but {path} is a CounterFact file "
                         "(its old answer is requested_rewrite.target_true): leave target_true_from at 'answers'")
    return read_counterfact(path)


class EditDataModule(L.LightningDataModule):
    """Edit requests from one file, selected and ordered reproducibly.

    Args:
        path: a ZsRE (EasyEdit/MEND JSON) or CounterFact JSON file; relative paths are resolved against ``root``.
        root: folder that relative ``path`` values live in; a relative ``root`` is found under the data root
            (``data`` is the data root itself: ``--data_root`` / ``$LIT_EDIT_DATA``), else the working directory
            or the project (``lit_edit.paths``).
        format: ``auto`` (from the first record), ``zsre`` or ``counterfact``.
        start, stop, step: the slice of the file to use.
        n: the number of edits (after shuffling); None for the whole slice.
        shuffle / seed: shuffle the slice with ``random.Random(seed)``.
        batch_size: requests per edit step.
        distinct_subjects: reorder the requests (before taking ``n``) so that no batch names a subject twice
            (``lit_edit.editing.requests.separate_shared_subjects``): MEMIT and the methods built on it read one key
            per subject, so two requests about one subject in a batch conflict. Off: a warning counts such requests.
        target_true_from: the old answer of a ZsRE record: ``answers`` (``answers[0]``, default) or ``pred`` (the
            record's ``pred``, what the side-effects study's scripts give KN as its ground truth; docs/fidelity.md).
    """

    def __init__(self, path: str = "zsre/zsre_factworld.json", root: str = "data/factworld", format: str = "auto",
                 start: int = 0, stop: int | None = None, step: int = 1, n: int | None = None, shuffle: bool = False,
                 seed: int = 0, batch_size: int = 1, distinct_subjects: bool = False,
                 target_true_from: str = "answers"):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.save_hyperparameters()
        self.edit_set: EditSet | None = None
        self.requests: list[EditRequest] = []
        self.order: list[str] = []

    @property
    def file(self) -> Path:
        return resolve_path(Path(self.hparams.root) / self.hparams.path)

    def setup(self, stage: str) -> None:
        if self.edit_set is None:
            self.edit_set = read_edit_set(self.file, self.hparams.format, self.hparams.target_true_from)
            h = self.hparams
            self.requests, self.order = select(self.edit_set.requests, h.start, h.stop, h.step, h.n, h.shuffle, h.seed,
                                               h.batch_size if h.distinct_subjects else None)
            if not self.requests:
                raise SelectionError(f"{self.file}: the selection start={h.start} stop={h.stop} step={h.step} n={h.n} "
                                 "holds no edit requests")
            self._warn_shared_subjects()

    def location(self, record_id: str) -> str:
        """``file[index]`` of a record read by :meth:`setup` (how errors name it)."""
        indices = dict(zip((r.record_id for r in self.edit_set.requests), self.edit_set.indices))
        return f"{self.file}[{indices[record_id]}]" if record_id in indices else str(self.file)

    def _warn_shared_subjects(self) -> None:
        size = self.hparams.batch_size
        batches = [self.requests[i:i + size] for i in range(0, len(self.requests), size)]
        shared = [shared_subject_count(b) for b in batches]
        if sum(shared):
            hint = ("" if self.hparams.distinct_subjects else
                    "; data.init_args.distinct_subjects true reorders the requests so that no batch does")
            warnings.warn(f"{self.file}: {sum(shared)} requests in {sum(map(bool, shared))} of {len(batches)} batches "
                          "name a subject another request of their batch names (MEMIT and the methods built on it "
                          f"read one key per subject, so such requests conflict){hint}", stacklevel=2)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.requests, batch_size=self.hparams.batch_size, shuffle=False, collate_fn=list)

    def describe(self) -> dict:
        """What a run records about its edits: the file, its hash, the selection, the order and skipped records."""
        return {"file": str(self.file), "sha256": self.edit_set.sha256, "selection": dict(self.hparams),
                "n_requests": len(self.requests), "order": self.order, "skipped": [list(s) for s in self.edit_set.skipped]}
