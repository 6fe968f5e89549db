"""What the corrected parsers share (``docs/tasks.md`` §11): one rule before and after editing, a continuation is
the *new* text only, and ``None`` means "could not parse" (counted as wrong). Each task's own parser is in its
module."""

from __future__ import annotations

import string


def first_word(continuation: str) -> str:
    """The continuation's first word, lower-cased, without surrounding punctuation ("" when there is none)."""
    words = continuation.strip().lower().split()
    return words[0].strip(string.punctuation) if words else ""

