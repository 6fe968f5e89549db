"""How an edit's value optimisation went (``loss_trend``), on losses chosen by hand around its 10 % bands."""

from __future__ import annotations

import math

import pytest

from lit_edit.editing.values import loss_trend


@pytest.mark.parametrize(("first", "last", "stop_loss", "expected"), [
    (2.0, math.nan, 0.05, "diverged"), (math.inf, 1.0, 0.05, "diverged"), (2.0, -math.inf, 0.05, "diverged"),
    (2.0, 0.04, 0.05, None),            # below stop_loss: fine however little it fell
    (0.045, 0.049, 0.05, None),         # rose by 9 %, but below stop_loss
    (2.0, 2.3, 0.05, "diverged"),       # rose by 15 %
    (2.0, 2.19, 0.05, "stalled"),       # rose by 9.5 %
    (2.0, 2.0, 0.05, "stalled"),
    (2.0, 1.81, 0.05, "stalled"),       # fell by 9.5 %
    (2.0, 1.79, 0.05, None),            # fell by 10.5 %
    (2.0, 0.05, 0.05, None),            # at stop_loss: fell far enough
    (0.5, 0.5, 0.5, "stalled"),         # stop_loss is a strict bound
    (1.0, 1.1, 0.05, "stalled"),        # exactly 10 % up: not yet a divergence
    (1.0, 0.9, 0.05, None),             # exactly 10 % down: enough
])
def test_loss_trend_against_its_bands(first, last, stop_loss, expected):
    assert loss_trend(first, last, stop_loss) == expected
