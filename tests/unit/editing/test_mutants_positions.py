"""The fact-token rule refuses a tokenizer without character offsets, naming it and the fix."""

from __future__ import annotations

import pytest

from lit_edit.editing.positions import subject_token_indices


class SlowTokenizer:
    is_fast = False


class BareTokenizer:
    """Says nothing about being fast."""


@pytest.mark.parametrize("tokenizer", [SlowTokenizer(), BareTokenizer()])
def test_a_tokenizer_without_offsets_is_refused_with_the_fix(tokenizer):
    with pytest.raises(TypeError) as error:
        subject_token_indices(tokenizer, ["{} is"], ["Paris"])
    assert str(error.value) == (f"{type(tokenizer).__name__} is not a fast tokenizer; the fact-token rule needs "
                                "return_offsets_mapping (load it with use_fast=True)")
