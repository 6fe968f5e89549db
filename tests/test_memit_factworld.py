"""MEMIT on the shipped fact-world model through the editing loop: 100 edits in one batch (batch-single).

The numbers this test measures are the README's "Editing the fact-world model" table (configs/edit/factworld/
memit.yaml with configs/edit/modes/batch_single.yaml and 100 edits in one batch).
"""

import json

import pytest
import yaml

from lit_edit.data import EditDataModule
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import MEMIT
from lit_edit.loops import EditTrainer
from lit_edit.modules import EditingModule
from lit_edit.stats import StatisticsConfig
from tests.conftest import FACTWORLD, ROOT


@pytest.mark.xfail(strict=True, reason="the shipped fact-world model recalls facts at the last prompt token, not at "
                   "the subject (README, Known limitations); measured reliability 0.00, locality 1.00")
def test_batch_single_memit_on_100_edits_flips_them_and_keeps_locality(tmp_path):
    config = yaml.safe_load((ROOT / "configs/edit/factworld/memit.yaml").read_text())["model"]["init_args"]
    editor_args = config["editor"]["init_args"]
    editor = MEMIT(layers=editor_args["layers"], preservation_weight=editor_args["preservation_weight"],
                   values=ValueHyperparams(**editor_args["values"]))
    module = EditingModule(str(ROOT / config["name_or_path"]), editor, rollback=True, families=("token",),
                           results_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), monitor_docs=16,
                           statistics=StatisticsConfig(corpus=str(FACTWORLD / "corpus" / "train.jsonl"),
                                                       cache_dir=str(tmp_path / "stats")))
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(root=str(FACTWORLD), n=100, batch_size=100), verbose=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["mode"]["name"] == "batch-single" and metrics["n_edits"] == 100
    token = metrics["final"]["token"]
    assert token["reliability"] >= 0.9, token
    assert token["locality"] >= 0.9, token
    assert token["generality"] is not None and token["portability"] is not None   # measured (held-out wording)
    assert metrics["pre"]["token"]["reliability"] < 0.5
