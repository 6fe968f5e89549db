"""The old answer of a ZsRE record: ``answers[0]`` by default, or the record's ``pred`` (what the side-effects study's
scripts hand to KN as its ground truth) with ``target_true_from: pred``; bad settings are named."""

from __future__ import annotations

import copy
import json

import pytest

from lit_edit.data import EditDataModule
from lit_edit.editing import read_zsre
from lit_edit.editing.requests import EditRequestError
from tests.conftest import FACTWORLD, SHARED_DATA

ZSRE_REAL = SHARED_DATA / "zsre" / "zsre_mend_eval_portability_gpt4.json"


def _records() -> list[dict]:
    """Three fact-world records whose ``pred`` differs from ``answers[0]``."""
    records = copy.deepcopy(json.loads((FACTWORLD / "zsre" / "zsre_factworld.json").read_text())[:3])
    for i, record in enumerate(records):
        record["pred"] = f"predicted {i}"
    return records


def _write(tmp_path, records, name="z.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return str(path)


def test_the_old_answer_is_answers_0_or_pred(tmp_path):
    records = _records()
    path = _write(tmp_path, records)
    assert [r.target_true for r in read_zsre(path).requests] == [r["answers"][0] for r in records]
    assert [r.target_true for r in read_zsre(path, target_true="pred").requests] == [r["pred"] for r in records]
    module = EditDataModule(path=path, root=str(tmp_path), target_true_from="pred")
    module.setup("test")
    assert [r.target_true for r in module.requests] == ["predicted 0", "predicted 1", "predicted 2"]


def test_a_missing_or_empty_pred_names_the_record_and_field(tmp_path):
    records = _records()
    del records[1]["pred"]
    with pytest.raises(EditRequestError, match=r"record zsre:1 field 'pred': missing"):
        read_zsre(_write(tmp_path, records), target_true="pred")
    records[1]["pred"] = " "
    with pytest.raises(EditRequestError, match=r"record zsre:1 field 'pred': target is empty"):
        read_zsre(_write(tmp_path, records), target_true="pred")


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"target_true must be one of \('answers', 'pred'\).*got 'gold'"):
        read_zsre(_write(tmp_path, _records()), target_true="gold")
    counterfact = FACTWORLD / "counterfact" / "counterfact_factworld.json"
    module = EditDataModule(path=str(counterfact), root=".", target_true_from="pred")
    with pytest.raises(ValueError, match="target_true_from 'pred' names a ZsRE field, but .* is a CounterFact file"):
        module.setup("test")


@pytest.mark.skipif(not ZSRE_REAL.exists(), reason=f"real ZsRE data not found at {ZSRE_REAL}")
def test_pred_on_the_real_edit_set():
    raw = json.loads(ZSRE_REAL.read_text())
    requests = read_zsre(ZSRE_REAL, target_true="pred").requests
    assert [r.target_true for r in requests] == [record["pred"].strip() for record in raw]
    assert sum(record["pred"] != record["answers"][0] for record in raw) == 849
