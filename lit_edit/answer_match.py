"""Text normalisation shared by exact-match metrics."""

from __future__ import annotations

import re
import string

_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: str | list[str]) -> bool:
    refs = [references] if isinstance(references, str) else references
    return any(normalize_answer(prediction) == normalize_answer(r) for r in refs)
