"""The pre-edit reference of an editing run (the unedited model's locality outputs, ``lit_edit.metrics``), cached
per (model, edit set, requests, families, generation length, dtype) under ``<cache_dir>/references``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from lit_edit.caches import model_fingerprint, read_cached
from lit_edit.distributed import Ranks, map_chunks
from lit_edit.editing.requests import EditRequest
from lit_edit.io import atomic_write_text
from lit_edit.metrics import PreEditReference, pre_edit_reference


def reference_path(cache_dir: str | Path, name_or_path: str, edit_sha: str, requests: Sequence[EditRequest],
                   families: Sequence[str], max_new_tokens: int, dtype: str) -> Path:
    """The cache file of one reference: named by a digest of everything the reference depends on."""
    key = hashlib.sha256(json.dumps([model_fingerprint(name_or_path), edit_sha, [r.record_id for r in requests],
                                     list(families), max_new_tokens, dtype]).encode()).hexdigest()[:20]
    return Path(cache_dir) / "references" / f"{key}.json"


def cached_reference(model, tokenizer, requests: Sequence[EditRequest], families: Sequence[str], path: Path,
                     max_new_tokens: int, batch_size: int, ranks: Ranks) -> PreEditReference:
    """The reference read from ``path`` when every rank finds it there (and it reads), else computed on the model
    as it is now (the ranks share the requests in chunks of ``batch_size``) and written there by rank zero."""
    read = lambda file: PreEditReference.from_dict(json.loads(file.read_text()))
    cached = read_cached(path, read, "cached pre-edit reference") if all(ranks.gather(path.exists())) else None
    if cached is not None:
        return cached

    def outputs(chunk):
        part = pre_edit_reference(model, tokenizer, chunk, families, max_new_tokens, batch_size)
        return [(part.locality_tokens[r.record_id], part.locality_generations[r.record_id]) for r in chunk]

    per_request = map_chunks(outputs, requests, batch_size, ranks)
    reference = PreEditReference({r.record_id: tokens for r, (tokens, _) in zip(requests, per_request)},
                                 {r.record_id: texts for r, (_, texts) in zip(requests, per_request)})
    if ranks.is_zero:
        atomic_write_text(path, json.dumps(reference.to_dict()))
    return reference
