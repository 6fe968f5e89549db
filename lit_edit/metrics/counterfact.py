"""CounterFact's generation metrics and the readers of their published reference files (docs/evaluation.md §13).

- **fluency**: the weighted bi- and tri-gram entropy of a generated text, averaged over texts;
- **consistency**: the TF-IDF cosine between all generations about an edited subject and the reference texts
  about the new object (``attribute_snippets.json``, weighted by ``idf.npy`` over ``tfidf_vocab.json``).

Everything here is a plain function of strings and arrays; ``lit_edit.metrics.counterfact_generation`` samples the
texts and calls these.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FLUENCY_WEIGHTS = {2: 2 / 3, 3: 4 / 3}
"""n-gram order → weight; fluency is the mean of the weighted entropies (docs/evaluation.md §13)."""

TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")
"""A TF-IDF term: two or more word characters, matched in the lower-cased text (scikit-learn's default analyser,
with which the published vocabulary was built)."""


# ----------------------------------------------------------------------------------------------- fluency


@lru_cache(maxsize=1)
def _sentence_splitter():
    """nltk's trained English Punkt model when installed, else an untrained Punkt splitter (one warning)."""
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    try:
        nltk.sent_tokenize("A b.")
        return nltk.sent_tokenize
    except LookupError:
        warnings.warn("nltk's English Punkt model is not installed, so fluency splits sentences with an untrained "
                      "Punkt splitter (it differs only around abbreviations such as 'Dr.'); "
                      "`python -m nltk.downloader punkt_tab` installs the model", stacklevel=3)
        return PunktSentenceTokenizer().tokenize


def word_tokens(text: str) -> list[str]:
    """The words of ``text`` as ``nltk.word_tokenize`` gives them: Punkt sentences, then nltk's Treebank-style word
    tokenizer on each sentence (docs/evaluation.md §13)."""
    import nltk

    return [token for sentence in _sentence_splitter()(text)
            for token in nltk.word_tokenize(sentence, preserve_line=True)]


def ngram_entropy(tokens: Sequence[str], n: int) -> float:
    """H_n = −Σ_g f_g log₂ f_g over the relative frequencies f_g of the n-grams g of ``tokens``
    (docs/evaluation.md §13); 0 when ``tokens`` holds no n-gram."""
    counts = np.array(list(Counter(zip(*(tokens[i:] for i in range(n)))).values()), dtype=np.float64)
    if counts.size == 0:
        return 0.0
    freqs = counts / counts.sum()
    return float(-(freqs * np.log2(freqs)).sum())


def text_fluency(tokens: Sequence[str]) -> float:
    """(Σ_n w_n H_n) / |{n}| with w₂ = 2/3, w₃ = 4/3 (:data:`FLUENCY_WEIGHTS`; docs/evaluation.md §13)."""
    return sum(w * ngram_entropy(tokens, n) for n, w in FLUENCY_WEIGHTS.items()) / len(FLUENCY_WEIGHTS)


def fluency(texts: Sequence[str]) -> float | None:
    """The arithmetic mean of :func:`text_fluency` over ``texts`` (docs/evaluation.md §13); None without texts."""
    return float(np.mean([text_fluency(word_tokens(t)) for t in texts])) if texts else None


# ------------------------------------------------------------------------------------------- consistency


@dataclass(frozen=True)
class TfidfStatistics:
    """The published TF-IDF statistics: term → column (``tfidf_vocab.json``) and each column's IDF (``idf.npy``)."""

    vocabulary: dict[str, int]
    idf: np.ndarray


def tfidf_vector(text: str, stats: TfidfStatistics) -> np.ndarray:
    """v_t = count of term t in ``text`` × idf_t over the vocabulary (terms: :data:`TFIDF_TOKEN` on the lower-cased
    text; terms outside the vocabulary are dropped; docs/evaluation.md §13)."""
    vector = np.zeros(len(stats.idf), dtype=np.float64)
    for term in TFIDF_TOKEN.findall(text.lower()):
        column = stats.vocabulary.get(term)
        if column is not None:
            vector[column] += 1.0
    return vector * stats.idf


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """a·b / (‖a‖ ‖b‖); 0 when either vector is 0 (docs/evaluation.md §13)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm > 0 else 0.0


def consistency(generations: Sequence[str], references: Sequence[str], stats: TfidfStatistics) -> float | None:
    """cos(tfidf(generations joined by spaces), tfidf(references joined by spaces)) (docs/evaluation.md §13);
    None without generations or references."""
    if not generations or not references:
        return None
    return cosine(tfidf_vector(" ".join(generations), stats), tfidf_vector(" ".join(references), stats))


# ----------------------------------------------------------------------------------------------- readers


def read_tfidf_statistics(idf_path: Path | str, vocabulary_path: Path | str) -> TfidfStatistics:
    """Read ``idf.npy`` (one float per column) and ``tfidf_vocab.json`` ({term: column}) and check they agree."""
    try:
        idf = np.load(idf_path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{idf_path}: not a NumPy array file ({e}); fetch it again with "
                         "`lit-edit-tools fetch_data counterfact`") from e
    if idf.ndim != 1 or not np.issubdtype(idf.dtype, np.number) or not np.isfinite(idf).all():
        raise ValueError(f"{idf_path}: expected a 1-D array of finite IDF values, found shape {idf.shape} "
                         f"dtype {idf.dtype}")
    try:
        vocabulary = json.loads(Path(vocabulary_path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{vocabulary_path}: not valid JSON ({e})") from e
    if not isinstance(vocabulary, dict):
        raise ValueError(f"{vocabulary_path}: expected a JSON object {{term: column}}, found "
                         f"{type(vocabulary).__name__}")
    bad = [(t, c) for t, c in vocabulary.items()
           if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(idf)]
    if bad:
        raise ValueError(f"{vocabulary_path}: term {bad[0][0]!r} has column {bad[0][1]!r}, not an integer in "
                         f"[0, {len(idf)}) (the length of {idf_path})")
    if len(set(vocabulary.values())) != len(vocabulary):
        raise ValueError(f"{vocabulary_path}: two terms share a column")
    return TfidfStatistics(vocabulary, idf.astype(np.float64))


def read_attribute_snippets(path: Path | str) -> dict[tuple[str, str], tuple[str, ...]]:
    """Read ``attribute_snippets.json``: (relation id, object id) → the texts of every sample about a subject with
    that object (records ``{"relation_id", "target_id", "samples": [{"name", "text"}, ...]}``)."""
    try:
        records = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of records, found {type(records).__name__}")
    snippets: dict[tuple[str, str], list[str]] = {}
    for index, record in enumerate(records):
        where = f"{path}[{index}]"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, found {type(record).__name__}")
        for field in ("relation_id", "target_id"):
            if not isinstance(record.get(field), str):
                raise ValueError(f"{where}: field {field!r} missing or not a string (found {sorted(record)})")
        samples = record.get("samples")
        if not isinstance(samples, list):
            raise ValueError(f"{where}: field 'samples' missing or not a list")
        for j, sample in enumerate(samples):
            if not isinstance(sample, dict) or not isinstance(sample.get("text"), str):
                raise ValueError(f"{where}: field 'samples[{j}].text' missing or not a string")
        snippets.setdefault((record["relation_id"], record["target_id"]), []).extend(s["text"] for s in samples)
    return {key: tuple(texts) for key, texts in snippets.items()}


@dataclass(frozen=True)
class CounterFactReferences:
    """What consistency compares against: the snippets and the TF-IDF statistics."""

    snippets: dict[tuple[str, str], tuple[str, ...]]
    stats: TfidfStatistics


REFERENCE_FILES = ("attribute_snippets.json", "idf.npy", "tfidf_vocab.json")


def read_counterfact_references(folder: Path | str) -> CounterFactReferences | None:
    """The three reference files from ``folder`` (where ``fetch_data counterfact`` writes them); None when any is
    missing."""
    folder = Path(folder)
    if not all((folder / name).is_file() for name in REFERENCE_FILES):
        return None
    return CounterFactReferences(read_attribute_snippets(folder / "attribute_snippets.json"),
                                 read_tfidf_statistics(folder / "idf.npy", folder / "tfidf_vocab.json"))

