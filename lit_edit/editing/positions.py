"""The fact-token position rule (``fact_token``, docs/methods.md §0.3), from a fast tokenizer's character offsets.

The memit repo tokenises prefix, subject and suffix separately, which is only right for BPE without BOS;
EasyEdit tokenises incrementally and its ``subject_first`` is a negative index (quirk, §0.3). Here the
prompt is tokenised once, with special tokens, exactly as the model sees it, and the subject's token
range is the set of tokens whose character span overlaps the subject's character span (the
"Recommended" rule of §0.3). Special tokens such as a BOS have an empty span and never overlap.
Indices are absolute positions in the unpadded prompt, valid under right padding.
"""

from __future__ import annotations

from collections.abc import Sequence

from transformers import PreTrainedTokenizerBase

RULES = ("subject_first", "subject_last", "subject_first_after_last", "last")


def fill_subject(prompt_template: str, subject: str) -> tuple[str, int, int]:
    """The prompt with the subject filled in, and the subject's character span ``[start, end)``.

    The text equals ``prompt_template.format(subject)`` for a template with one ``{}`` and no other braces.
    A template without ``{}`` is taken as the filled prompt, with the subject at its first occurrence
    (docs/methods.md §0.1).
    """
    if not subject:
        raise ValueError(f"the subject is empty (prompt {prompt_template!r})")
    slots = prompt_template.count("{}")
    if slots > 1:
        raise ValueError(f"prompt {prompt_template!r} has {slots} '{{}}' slots; expected one")
    if slots == 1:
        prefix, suffix = prompt_template.split("{}")
        return prefix + subject + suffix, len(prefix), len(prefix) + len(subject)
    start = prompt_template.find(subject)
    if start < 0:
        raise ValueError(f"subject {subject!r} does not occur in prompt {prompt_template!r}")
    return prompt_template, start, start + len(subject)


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"unknown fact-token rule {rule!r}; known: {list(RULES)}")


def _index(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], offsets: Sequence[tuple[int, int]], start: int,
           end: int, rule: str, text: str) -> int:
    covering = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
    # A bare space token is never a subject token: a normaliser that prepends "▁" (LLaMA-2's tokenizer.json)
    # maps that "▁" onto the first character, so it "overlaps" a subject at the very start of the prompt.
    while len(covering) > 1 and not tokenizer.decode([ids[covering[0]]]).strip():
        covering.pop(0)
    while len(covering) > 1 and not tokenizer.decode([ids[covering[-1]]]).strip():
        covering.pop()
    if not covering:
        raise ValueError(f"no token covers the subject span [{start}, {end}) of {text!r}")
    first, last = covering[0], covering[-1]
    if rule == "subject_first":
        return first
    if rule == "subject_last":
        return last
    if rule == "subject_first_after_last":
        return last + 1 if last + 1 < len(offsets) else last
    return len(offsets) - 1


def subject_token_indices(tokenizer: PreTrainedTokenizerBase, prompt_templates: Sequence[str],
                          subjects: Sequence[str], rule: str = "subject_last") -> list[int]:
    """:func:`subject_token_index` for many (template, subject) pairs, tokenised in one batch."""
    _check_rule(rule)
    if len(prompt_templates) != len(subjects):
        raise ValueError(f"{len(prompt_templates)} prompt templates but {len(subjects)} subjects")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; the fact-token rule needs "
                        "return_offsets_mapping (load it with use_fast=True)")
    filled = [fill_subject(t, s) for t, s in zip(prompt_templates, subjects, strict=True)]
    if not filled:
        return []
    encoded = tokenizer([text for text, _, _ in filled], add_special_tokens=True, return_offsets_mapping=True)
    rows = zip(encoded["input_ids"], encoded["offset_mapping"], filled, strict=True)
    return [_index(tokenizer, ids, offsets, start, end, rule, text) for ids, offsets, (text, start, end) in rows]


def subject_token_index(tokenizer: PreTrainedTokenizerBase, prompt_template: str, subject: str,
                        rule: str = "subject_last") -> int:
    """Index into ``tokenizer(prompt_template.format(subject), add_special_tokens=True)["input_ids"]``.

    Rules (docs/methods.md §0.3): ``subject_last`` the last token overlapping the subject (the default
    everywhere); ``subject_first`` the first one; ``subject_first_after_last`` the token after the last
    subject token, or the last subject token when the subject ends the prompt; ``last`` the last token
    of the prompt (not for MEMIT, §0.3). A token that straddles the subject boundary (``{}ian`` with
    subject "Paris" giving "Parisian") counts as a subject token.
    """
    return subject_token_indices(tokenizer, [prompt_template], [subject], rule)[0]
