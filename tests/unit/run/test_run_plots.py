"""A run's downstream plot (lit_edit/plots.py): the headline scores against the number of edits and the post-edit
scores' bootstrap intervals, read back from the Figure matplotlib drew."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

import lit_edit.plots
from lit_edit.plots import plot_downstream, post_edit_intervals


def nli(accuracy: float) -> dict:
    return {"corrected": {"acc_all": accuracy, "parse_rate": 1.0}, "paper": {"total_accuracy": accuracy}}


DOWNSTREAM = {"nli": {"pre": nli(0.7), "post": nli(0.5), "delta": nli(-0.2),
                      "delta_ci95": {"corrected": {"acc_all": [-0.3, -0.1], "parse_rate": [0.0, 0.0]},
                                     "paper": {"total_accuracy": [-0.25, None]}}}}


def test_the_post_edit_interval_is_the_change_interval_moved_by_the_pre_edit_score():
    intervals = post_edit_intervals(DOWNSTREAM)
    assert intervals.keys() == {("nli", "corrected", "acc_all"), ("nli", "corrected", "parse_rate")}
    assert intervals[("nli", "corrected", "acc_all")] == pytest.approx((0.4, 0.6))
    assert intervals[("nli", "corrected", "parse_rate")] == pytest.approx((1.0, 1.0))
    assert post_edit_intervals({"nli": {"pre": nli(0.7), "delta_ci95": None}}) == {}
    assert post_edit_intervals(None) == {}


def test_the_downstream_plot_draws_each_headline_score_and_its_interval_at_the_last_point(tmp_path, monkeypatch):
    drawn = {}

    def keep(figure, path, title=""):
        drawn["figure"] = figure
        plt.close(figure)
        return path

    monkeypatch.setattr(lit_edit.plots, "_save", keep)
    curve = [{"n_edits": 0, "scores": {"nli": nli(0.7)}}, {"n_edits": 20, "scores": {"nli": nli(0.6)}},
             {"n_edits": 40, "scores": {"nli": nli(0.5)}}]
    plot_downstream(curve, tmp_path / "d.png", "t", post_edit_intervals(DOWNSTREAM), at=40)
    ax = drawn["figure"].axes[0]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.lines
             if not line.get_label().startswith("_")}
    assert lines == {"corrected: acc_all": ([0, 20, 40], [0.7, 0.6, 0.5]),
                     "paper: total_accuracy": ([0, 20, 40], [0.7, 0.6, 0.5])}
    bars = [collection for collection in ax.collections if len(collection.get_segments())]
    assert len(bars) == 1                 # the paper metric's interval has no upper end: no bar
    ((x0, low), (x1, high)), = [segment.tolist() for segment in bars[0].get_segments()]
    assert (x0, x1) == (40, 40) and (low, high) == pytest.approx((0.4, 0.6))
