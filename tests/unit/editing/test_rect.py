"""RECT's mask against a direct computation, and the wrapper's exact count on a real edit."""

import pytest
import torch

from lit_edit.editing.rect import kept_count, rect_mask, rect_update, relative_change


def test_mask_keeps_exactly_the_top_k_relative_changes():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 9, generator=g)
    delta = torch.randn(7, 9, generator=g) * 0.1
    mask = rect_mask(delta, w, 0.4)
    n = kept_count(63, 0.4)
    assert n == 25 and int(mask.sum()) == n
    ratio = (delta / w).abs()
    assert ratio[mask].min() >= ratio[~mask].max()         # every kept entry changes more (relatively) than any dropped
    kept = rect_update(delta, w, 0.4)
    torch.testing.assert_close(kept[mask], delta[mask])     # kept entries are not rescaled
    assert (kept[~mask] == 0).all()


def test_zero_weights_are_guarded():
    w = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    delta = torch.tensor([[1e-6, 0.5], [0.0, 0.1]])
    ratio = relative_change(delta, w)
    assert ratio[0, 0] == float("inf") and ratio[1, 0] == 0
    mask = rect_mask(delta, w, 0.5)
    assert mask[0, 0] and mask[0, 1] and not mask[1, 0]


def test_random_selection_keeps_the_same_count_and_depends_on_the_seed():
    w, delta = torch.ones(10, 10), torch.arange(100.0).view(10, 10)
    first = rect_mask(delta, w, 0.3, "random", torch.Generator().manual_seed(1))
    again = rect_mask(delta, w, 0.3, "random", torch.Generator().manual_seed(1))
    other = rect_mask(delta, w, 0.3, "random", torch.Generator().manual_seed(2))
    assert int(first.sum()) == 30 and torch.equal(first, again) and not torch.equal(first, other)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="keep_fraction"):
        rect_mask(torch.ones(2), torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="unknown RECT selection 'pca'"):
        rect_mask(torch.ones(2), torch.ones(2), 0.4, "pca")
