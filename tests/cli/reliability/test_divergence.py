"""Edits that go wrong without failing: a value optimisation whose loss rises (ROME on a random tiny model), one
whose loss does not fall (a learning rate of 1e-9), and FT at a learning rate of 1e10, whose loss falls while the
model's perplexity explodes. Each is warned about with the edit step, the record and the loss or perplexity, and
counted in metrics.json (``optimisation``); ``stop_on_divergence`` ends the run after the step, keeping its results."""

from __future__ import annotations

import csv
import json

import pytest

from lit_edit.data import EditDataModule
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import FT, ROME
from lit_edit.loops import EditTrainer
from lit_edit.modules import EditingModule
from tests.conftest import FACTWORLD, ROOT

SHIPPED = ROOT / "checkpoints" / "factworld-gpt2"


def _run(folder, tmp_path, editor, n: int = 2, **options) -> tuple[dict, list[dict], list[str]]:
    (tmp_path / "edits.json").write_text(json.dumps(json.loads((FACTWORLD / "zsre" / "zsre_factworld.json")
                                                               .read_text())[:n]))
    module = EditingModule(str(folder), editor, families=("token",), monitor_docs=4, results_dir=str(tmp_path / "run"),
                           cache_dir=str(tmp_path / "cache"), **options)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning) as caught:
        trainer.test(module, datamodule=EditDataModule(path=str(tmp_path / "edits.json")), verbose=False)
    with open(tmp_path / "run" / "steps.csv") as f:
        steps = list(csv.DictReader(f))
    return json.loads((tmp_path / "run" / "metrics.json").read_text()), steps, [str(w.message) for w in caught]


def _rome(lr: float = 0.5) -> ROME:
    return ROME(layer=1, mom2_adjustment=False, values=ValueHyperparams(steps=6, lr=lr, clamp_norm_factor=4.0))


def test_a_rising_value_loss_is_warned_and_counted(tiny_gpt2_dir, tmp_path):
    metrics, steps, warned = _run(tiny_gpt2_dir, tmp_path, _rome())
    tally = metrics["optimisation"]
    assert tally["diverged"] == 2 and tally["stalled"] == 0 and metrics["n_edits"] == 2
    for step, (problem, row) in enumerate(zip(tally["problems"], steps)):
        first, last = float(row["value_loss_first"]), float(row["value_loss_last"])   # one request per step
        assert last > first
        assert problem == {"step": step, "records": f"zsre:{step}", "stage": "value optimisation",
                           "verdict": "diverged", "first_loss": pytest.approx(first), "last_loss": pytest.approx(last),
                           "steps": None}
        assert any(m.startswith(f"edit step {step}, record(s) zsre:{step}: the value optimisation loss rose "
                                f"(diverged): {first:.4g} at its first step, {last:.4g} at its last;") for m in warned)


def test_stop_on_divergence_ends_the_run_after_the_step_and_keeps_its_results(tiny_gpt2_dir, tmp_path):
    metrics, steps, _ = _run(tiny_gpt2_dir, tmp_path, _rome(), n=3, stop_on_divergence=True)
    assert metrics["n_edits"] == 1 and len(steps) == 1
    assert metrics["stopped_early"] == ("the optimisation loss of record(s) zsre:0 diverged at edit step 0 and "
                                        "model.stop_on_divergence is true")
    assert metrics["final"] is not None and (tmp_path / "run" / "requests.csv").exists()


def test_a_value_loss_that_does_not_fall_is_warned_and_counted(tiny_gpt2_dir, tmp_path):
    metrics, steps, warned = _run(tiny_gpt2_dir, tmp_path, _rome(lr=1e-9), stop_on_divergence=True)
    assert metrics["optimisation"]["stalled"] == 2 and metrics["optimisation"]["diverged"] == 0
    assert metrics["stopped_early"] is None and metrics["n_edits"] == 2     # a stalled loss does not stop the run
    assert sum("the value optimisation loss did not fall (the edit may not have taken)" in m for m in warned) == 2


def test_ft_at_a_huge_learning_rate_is_reported_by_its_perplexity(tmp_path):
    ft = FT(layers=[1], loss="target_new", lr=1e10, steps=5, norm_constraint=None)
    metrics, steps, warned = _run(SHIPPED, tmp_path, ft, n=2)
    pre, after = metrics["monitors"]["pre"]["perplexity"], float(steps[0]["perplexity"])
    assert after > 10 * pre
    assert metrics["optimisation"]["perplexity_diverged"] == {"step": 0, "records": ["zsre:0"],
                                                              "perplexity": pytest.approx(after),
                                                              "pre_edit": pytest.approx(pre)}
    assert any(m.startswith(f"edit step 0, record(s) zsre:0: the monitor perplexity is {after:.4g}, more than 10 × "
                            f"its pre-edit {pre:.4g}") for m in warned)
