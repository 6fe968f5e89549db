"""RECT's selection at its edges, against counts and permutations computed here (docs/methods.md §6)."""

from __future__ import annotations

import pytest
import torch

from lit_edit.editing.rect import kept_count, rect_mask, rect_update


def test_keep_fraction_one_keeps_everything_and_above_one_is_refused():
    assert kept_count(10, 1.0) == 10
    for fraction in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=f"keep_fraction must be in \\(0, 1\\], got {fraction}"):
            kept_count(10, fraction)


def test_the_default_keeps_forty_percent():
    delta, weight = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)), torch.ones(4, 5)
    assert int(rect_mask(delta, weight).sum()) == 8
    assert int((rect_update(delta, weight) != 0).sum()) == 8


def test_shapes_that_differ_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"ΔW \(2, 3\) and W \(3, 2\) differ in shape"):
        rect_mask(torch.ones(2, 3), torch.ones(3, 2))


def test_the_random_selection_follows_the_given_generator():
    """The kept entries are the first floor(k·n) of a seeded permutation of the flat positions."""
    delta, weight = torch.arange(1.0, 13.0).view(3, 4), torch.ones(3, 4)
    expected = torch.zeros(12, dtype=torch.bool)
    expected[torch.randperm(12, generator=torch.Generator().manual_seed(7))[:6]] = True
    kept = rect_update(delta, weight, 0.5, "random", torch.Generator().manual_seed(7))
    assert torch.equal(kept != 0, expected.view(3, 4))
    assert torch.equal(kept[kept != 0], delta[expected.view(3, 4)])
