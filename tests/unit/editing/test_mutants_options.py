"""``checked_layers``: every way a layer list can be wrong, each refused with the option named as a config names it
and the fix; a good list comes back as a tuple in the given order."""

from __future__ import annotations

import pytest

from lit_edit.editing.options import EditorOptionError, checked_layers


def test_a_good_list_comes_back_as_a_tuple_in_order_and_layer_zero_is_a_layer():
    assert checked_layers([3, 0, 1]) == (3, 0, 1)
    assert checked_layers(iter([2])) == (2,)


def test_an_empty_list_is_refused_naming_the_option():
    with pytest.raises(EditorOptionError, match=r"^model\.editor\.layers is empty; name at least one layer to edit$"):
        checked_layers([])
    with pytest.raises(EditorOptionError, match=r"^model\.editor\.layer is empty"):
        checked_layers((), "layer")


@pytest.mark.parametrize("bad", [-1, 1.0, "2", True, False, None])
def test_what_is_not_a_whole_number_at_least_zero_is_refused(bad):
    with pytest.raises(EditorOptionError) as refused:
        checked_layers([0, bad, 4], "fix_layers")
    assert str(refused.value) == f"model.editor.fix_layers: {[bad]} are not layer indices (whole numbers >= 0)"


def test_only_the_bad_entries_are_listed():
    with pytest.raises(EditorOptionError, match=r"^model\.editor\.layers: \[-2, -5\] are not layer indices"):
        checked_layers([1, -2, 3, -5])


def test_a_repeated_layer_is_refused_naming_each_repeat_once_sorted_and_the_whole_list():
    with pytest.raises(EditorOptionError) as refused:
        checked_layers([5, 2, 5, 1, 2, 2], "layer")
    assert str(refused.value) == ("model.editor.layer names layer(s) [2, 5] more than once: [5, 2, 5, 1, 2, 2]; "
                                  "name each layer once")


def test_the_refusal_is_a_value_error_for_callers_that_catch_those():
    with pytest.raises(ValueError):
        checked_layers([])
