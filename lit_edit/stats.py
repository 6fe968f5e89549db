"""Second-moment statistics C = E[k kᵀ] of the keys at the input of each edited FFN output projection.

docs/methods.md §0.5: a per-token, uncentred second moment, ``C = Σ_t k_t k_tᵀ / N``, accumulated over a
text corpus with padded positions removed. Unlike the reference code (one full pass per layer), all
requested layers are collected in **one** forward pass that stops after the deepest of them (§12.2).

Cached files are safetensors with the unnormalised sum and the token count, and a provenance record
(model, layer, module, corpus id and hash, token count, dtype) in their metadata.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from lit_edit.caches import read_cached
from lit_edit.corpus_records import read_texts
from lit_edit.distributed import SINGLE, Ranks
from lit_edit.hooks import forward_until, record
from lit_edit.io import atomic_write
from lit_edit.models.architectures import Architecture
from lit_edit.paths import resolve_path
from lit_edit.scoring import pad_right
from lit_edit.sharded_tensors import full_value


@dataclass(frozen=True)
class Provenance:
    """Where a statistics file came from; two files are interchangeable iff their provenance matches."""

    model: str
    layer: int
    module: str
    corpus: str
    corpus_sha256: str
    tokens: int
    dtype: str
    weights_sha256: str = ""   # files written before this field existed never match, so they are recomputed


@dataclass
class SecondMoment:
    """The running sum Σ k kᵀ and the number of keys that went into it, for one layer."""

    sum_kkt: torch.Tensor
    count: int

    def mean(self) -> torch.Tensor:
        """C = Σ k kᵀ / N."""
        if self.count == 0:
            raise ValueError("no keys were accumulated: the corpus produced no tokens")
        return self.sum_kkt / self.count


def corpus_sha256(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def weights_sha256(model, samples_per_tensor: int = 4096) -> str:
    """A cheap identity of a model's weights: every parameter's name and shape and an evenly strided sample of
    its values. A model retrained or edited in place under the same name gets a different digest, so statistics
    computed on the old weights are not reused. A sharded model gets the digest of its whole weights (each
    parameter gathered in turn: a collective)."""
    digest = hashlib.sha256()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            flat = full_value(parameter.detach()).reshape(-1)
            step = max(flat.numel() // samples_per_tensor, 1)
            digest.update(f"{name}:{tuple(parameter.shape)}".encode())
            sample = flat[::step][:samples_per_tensor].float().cpu().clone()   # .numpy() pins a live tensor's storage
            digest.update(sample.numpy().tobytes())
    return digest.hexdigest()


def first_tokens(tokenizer, text: str, max_length: int, chars_per_token: int = 8, margin: int = 16) -> list[int]:
    """``tokenizer(text, truncation=True, max_length=max_length)``, without tokenizing all of a long document.

    A prefix that ends before a whitespace character tokenizes to the same leading tokens as the whole text (the
    pre-tokenizers split at whitespace; only the prefix's last few tokens may differ), so the prefix is grown
    (``chars_per_token × max_length`` characters, then doubled) until it holds ``margin`` tokens more than
    ``max_length``, or is the whole text. Memory then grows with ``max_length``, not with the document (tested
    equal to whole-text truncation on the shipped tokenizers; ``tests/cli/test_stats_memory.py`` measures it)."""
    budget = chars_per_token * max_length
    while len(text) > budget:
        cut = max(text.rfind(" ", 0, budget), text.rfind("\n", 0, budget))
        if cut <= 0:
            break                   # no whitespace in the prefix: it cannot be cut safely
        prefix = text[:cut]
        if len(tokenizer(prefix, truncation=True, max_length=max_length + margin)["input_ids"]) >= max_length + margin:
            return tokenizer(prefix, truncation=True, max_length=max_length)["input_ids"]
        budget *= 2
    return tokenizer(text, truncation=True, max_length=max_length)["input_ids"]


def token_batches(tokenizer, texts: Iterable[str], max_length: int, tokens_per_batch: int = 4096
                  ) -> Iterator[dict[str, torch.Tensor]]:
    """Right-padded batches of documents (each cut to its first ``max_length`` tokens, :func:`first_tokens`), about
    ``tokens_per_batch`` each."""
    pending: list[list[int]] = []
    width = 0

    def flush():
        input_ids, mask = pad_right(pending, tokenizer.pad_token_id)
        return {"input_ids": input_ids, "attention_mask": mask}

    for text in texts:
        ids = first_tokens(tokenizer, text, max_length)
        if not ids:
            continue
        if pending and (len(pending) + 1) * max(width, len(ids)) > tokens_per_batch:
            yield flush()
            pending, width = [], 0
        pending.append(ids)
        width = max(width, len(ids))
    if pending:
        yield flush()


@torch.no_grad()
def collect_second_moments(model, arch: Architecture, layers: Sequence[int],
                           batches: Iterable[dict[str, torch.Tensor]], dtype: torch.dtype = torch.float64,
                           max_tokens: int | None = None, progress: bool = True, ranks: Ranks = SINGLE
                           ) -> dict[int, SecondMoment]:
    """Accumulate Σ k kᵀ at the FFN output input of every layer in ``layers``, in one pass per batch.

    Args:
        batches: dicts with ``input_ids`` and ``attention_mask`` (padded positions are dropped).
        dtype: accumulation dtype (float64 by default; the reference uses float32 features).
        max_tokens: stop once this many keys have been accumulated (per layer).
        ranks: with several processes, batch ``i`` is run by rank ``i % world_size`` and the sums are added over
            ranks at the end, so every rank gets the moments of the same keys as one process would (summed in
            another order: equal to float64 rounding). Every rank must pass the same batches. With a sharded
            model (``ranks.shares_work`` false) every rank runs every batch.
    """
    if not layers:
        raise ValueError("no layers requested")
    for layer in layers:
        arch.check_layer(model, layer)
    device = next(model.parameters()).device
    names = {layer: arch.ffn_out_at(layer) for layer in layers}
    deepest = names[max(layers)]
    m = arch.inner_size(model)
    sums = {layer: torch.zeros(m, m, dtype=dtype, device=device) for layer in layers}
    seen = 0
    bar = tqdm(total=max_tokens, unit="tok", desc="second moments", disable=not progress or not ranks.is_zero)
    for i, batch in enumerate(batches):
        mask = batch["attention_mask"].bool()
        n = int(mask.sum())
        if max_tokens is not None:
            n = min(n, max_tokens - seen)    # the first n keys of the batch, in (row, position) order
        if ranks.handles(i):
            mask = mask.to(device)
            with record(model, names.values(), stop_after=deepest) as recordings:
                forward_until(model, input_ids=batch["input_ids"].to(device), attention_mask=mask.long())
            for layer, name in names.items():
                keys = recordings[name].input[mask][:n].to(dtype)
                sums[layer].addmm_(keys.T, keys)
        seen += n
        bar.update(n)
        if max_tokens is not None and seen >= max_tokens:
            break
    bar.close()
    return {layer: SecondMoment(ranks.add_shares_(total), seen) for layer, total in sums.items()}


def save_moment(path: Path | str, moment: SecondMoment, provenance: Provenance) -> None:
    """Write atomically: a temporary file renamed into place."""
    from safetensors.torch import save

    data = save({"sum_kkt": moment.sum_kkt.cpu().contiguous(), "count": torch.tensor(moment.count)},
                metadata={"provenance": json.dumps(asdict(provenance))})
    atomic_write(path, lambda f: f.write(data))


def load_moment(path: Path | str) -> tuple[SecondMoment, Provenance]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        provenance = Provenance(**json.loads(f.metadata()["provenance"]))
    tensors = load_file(str(path))
    return SecondMoment(tensors["sum_kkt"], int(tensors["count"])), provenance


class MissingStatisticsError(FileNotFoundError):
    """Statistics are not cached and computing them was not allowed."""


def cached_second_moments(cache_dir: Path | str, model, model_name: str, arch: Architecture, layers: Sequence[int],
                          tokenizer, texts: Sequence[str], corpus_name: str, max_length: int,
                          dtype: torch.dtype = torch.float64, max_tokens: int | None = None,
                          compute_missing: bool = True, progress: bool = True, ranks: Ranks = SINGLE
                          ) -> dict[int, SecondMoment]:
    """C for ``layers``, read from ``cache_dir`` where a file with the same provenance exists; the missing
    layers are computed together in one pass (or refused when ``compute_missing`` is False). With several
    processes, a layer missing on any rank is computed by all ranks together and rank zero writes the file.

    Files are ``{cache_dir}/{model_name}/{corpus_name}/layer{l}_{dtype}.safetensors``; a file whose
    provenance (weights, corpus hash, dtype, token cap, module) differs is recomputed, never silently reused.
    """
    corpus_hash = corpus_sha256(texts)
    weights_hash = weights_sha256(model)
    dtype_name = str(dtype).removeprefix("torch.")
    folder = Path(cache_dir) / model_name.replace("/", "_") / corpus_name
    found: dict[int, SecondMoment] = {}
    for layer in layers:
        path = folder / f"layer{layer}_{dtype_name}.safetensors"
        loaded = read_cached(path, load_moment, "cached statistics") if path.exists() else None
        if loaded is not None:
            moment, provenance = loaded
            if (provenance.corpus_sha256 == corpus_hash and provenance.weights_sha256 == weights_hash
                    and provenance.module == arch.ffn_out_at(layer)
                    and (max_tokens is None or provenance.tokens <= max_tokens)):
                found[layer] = moment
    missing = sorted(set().union(*ranks.gather([layer for layer in layers if layer not in found])))   # any rank's
    if missing and not compute_missing:
        raise MissingStatisticsError(f"no cached statistics for layers {missing} of {model_name!r} on corpus "
                                     f"{corpus_name!r} in {folder}; allow computing them or point to the cache")
    if missing:
        computed = collect_second_moments(model, arch, missing, token_batches(tokenizer, texts, max_length), dtype,
                                          max_tokens, progress, ranks)
        if computed[missing[0]].count == 0:
            raise ValueError(f"statistics corpus {corpus_name!r} ({len(texts)} documents) produced no tokens")
        for layer, moment in computed.items():
            if ranks.is_zero:
                save_moment(folder / f"layer{layer}_{dtype_name}.safetensors", moment,
                            Provenance(model_name, layer, arch.ffn_out_at(layer), corpus_name, corpus_hash,
                                       moment.count, dtype_name, weights_hash))
        ranks.barrier()
        found.update(computed)
    return {layer: found[layer] for layer in layers}


@dataclass
class StatisticsConfig:
    """Where C = E[k kᵀ] comes from, for the methods that need it.

    Attributes:
        corpus: a ``.jsonl`` file with a ``text`` field, a ``.txt`` file (one document per non-empty line), or a
            folder saved by ``datasets`` (``save_to_disk``) with a ``text`` column.
        cache_dir: where statistics files are stored per (model, corpus, layer).
        max_tokens: keys per layer (the reference uses 100,000 Wikipedia samples); None for the whole corpus.
        max_length: documents are cut to this many tokens (never the model's maximum context).
        dtype: accumulation dtype.
        compute_missing: compute statistics that are not cached (with a progress bar), else refuse.
    """

    corpus: str = "data/factworld/corpus/train.jsonl"
    cache_dir: str = "checkpoints/stats"
    max_tokens: int | None = 100_000
    max_length: int = 256
    dtype: str = "float64"
    compute_missing: bool = True

    def __post_init__(self):
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError("model.statistics.max_tokens must be >= 1 (null: the whole corpus), "
                             f"got {self.max_tokens}")
        if self.max_length < 1:
            raise ValueError(f"model.statistics.max_length must be >= 1, got {self.max_length}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"model.statistics.dtype must be float64 or float32 (the accumulation dtype), "
                             f"got {self.dtype!r}")


def load_corpus_texts(path: Path | str, what: str = "statistics corpus") -> list[str]:
    """The documents of a statistics corpus (see :class:`StatisticsConfig`); ``what`` names the file in errors. A
    relative path is found as ``lit_edit.paths`` says (``data/...`` under the data root)."""
    path = resolve_path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        if "text" not in dataset.column_names:
            raise ValueError(f"{what} {path} has no 'text' column (columns: {dataset.column_names})")
        return [t for t in dataset["text"] if t.strip()]
    if path.suffix == ".jsonl":
        return read_texts(path)
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def second_moments_for(model, tokenizer, arch: Architecture, model_name: str, layers: Sequence[int],
                       config: StatisticsConfig, progress: bool = True, ranks: Ranks = SINGLE
                       ) -> dict[int, torch.Tensor]:
    """C (the mean Σ k kᵀ / N, float32 on the model's device) for ``layers``, cached per :class:`StatisticsConfig`
    (computed by all ``ranks`` together where missing)."""
    texts = load_corpus_texts(config.corpus)
    dtype = getattr(torch, config.dtype)
    moments = cached_second_moments(config.cache_dir, model, model_name, arch, layers, tokenizer, texts,
                                    Path(config.corpus).stem, config.max_length, dtype, config.max_tokens,
                                    config.compute_missing, progress, ranks)
    device = next(model.parameters()).device   # a cached file loads on the CPU
    return {layer: moment.mean().float().to(device) for layer, moment in moments.items()}
