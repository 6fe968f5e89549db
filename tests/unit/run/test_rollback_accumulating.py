"""Rollback (single, batch-single) with the methods that carry edits in their own state (D4S, COMEBA-HK, AlphaEdit):
every step edits the unedited model with the state setup built, so the k-th step equals a fresh run that edits
only the k-th request, and the run leaves the model as it found it."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from lit_edit.data import EditDataModule
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import COMEBA, D4S, AlphaEdit
from lit_edit.loops import EditTrainer
from lit_edit.modules import EditingModule
from lit_edit.stats import StatisticsConfig
from tests.conftest import FACTWORLD, ROOT

MODEL = str(ROOT / "checkpoints" / "factworld-gpt2")
SMALL = {"values": ValueHyperparams(steps=3), "template_tokens": 3, "layers": [0, 1]}
EDITORS = {"d4s": (D4S, {"preservation_weight": 300.0}),
           "comeba": (COMEBA, {"preservation_weight": 300.0, "hooks": True, "alpha": 2.2}),
           "alphaedit": (AlphaEdit, {"nullspace_threshold": 0.02})}


def recording(kind: str):
    """The method ``kind`` whose every step's weight update (``EditOutcome.deltas``) is kept in ``_updates``."""
    cls, options = EDITORS[kind]

    class Recording(cls):
        def edit(self, *args):
            outcome = super().edit(*args)
            self._updates.append({name: delta.clone() for name, delta in outcome.deltas.items()})
            return outcome

    editor = Recording(**SMALL, **options)
    editor._updates = []
    return editor


def run(tmp_path, kind: str, folder: str, rollback: bool, start: int, n: int):
    module = EditingModule(MODEL, recording(kind), rollback=rollback, families=("token",),
                           results_dir=str(tmp_path / folder), cache_dir=str(tmp_path / "cache"), monitor_docs=4,
                           statistics=StatisticsConfig(corpus=str(FACTWORLD / "corpus" / "train.jsonl"),
                                                       cache_dir=str(tmp_path / "stats"), max_tokens=4000))
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(root=str(FACTWORLD), start=start, n=n, batch_size=1),
                 verbose=False)
    with open(tmp_path / folder / "requests.csv") as f:
        rows = list(csv.DictReader(f))
    return module, before, rows, json.loads((tmp_path / folder / "metrics.json").read_text())


@pytest.mark.parametrize("kind", list(EDITORS))
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_each_rolled_back_step_equals_a_fresh_run_of_its_request_alone(tmp_path, kind):
    module, before, rows, metrics = run(tmp_path, kind, "single", rollback=True, start=0, n=3)
    assert metrics["mode"]["name"] == "single" and metrics["n_edits"] == 3
    alone, _, alone_rows, alone_metrics = run(tmp_path, kind, "alone", rollback=False, start=2, n=1)
    assert rows[2]["record_id"] == alone_rows[0]["record_id"]
    third, fresh = module.editor._updates[2], alone.editor._updates[0]
    assert set(third) == set(fresh) and any(bool(d.abs().sum() > 0) for d in fresh.values())   # a real edit
    for name in fresh:
        assert torch.equal(third[name], fresh[name]), name
    immediate = [c for c in alone_rows[0] if c.startswith("immediate/")]
    assert immediate and all(rows[2][c] == alone_rows[0][c] != "" for c in immediate), (rows[2], alone_rows[0])
    # the editor's report (COMEBA-HK: where the gate fires) is the last step's, taken before its rollback
    assert metrics["editor_report"] == alone_metrics["editor_report"]
    if kind == "comeba":
        assert metrics["editor_report"]["gate"]["0"]["edited"]["prompts"] == 1
    # the run leaves the model, the effective weights (COMEBA-HK's hook layers) and the editor's state as set up
    after = module.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(torch.equal(w, module.originals[n]) for n, w in module.editor.effective_weights(
        module.model, module.arch).items())
    state, setup = module.editor.state_dict(), module.setup_state
    assert set(state) == set(setup) and all(torch.equal(torch.as_tensor(state[k]), torch.as_tensor(setup[k]))
                                            for k in setup)
