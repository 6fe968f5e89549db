"""The CounterFact reader on both published formats: ROME's ``counterfact.json`` and EasyEdit's flattened
``counterfact-edit.json`` (docs/methods.md §11.4), each a fixture written with the published field names."""

from __future__ import annotations

import json

import pytest

from lit_edit.data.edits import detect_format, read_edit_set
from lit_edit.editing import EditRequestError, LocalityProbe, read_counterfact

ORIGINAL = [{
    "case_id": 7,
    "pararel_idx": 2796,
    "requested_rewrite": {
        "prompt": "The capital city of {} is",
        "relation_id": "P36",
        "target_new": {"str": "Lyon", "id": "Q456"},
        "target_true": {"str": "Paris", "id": "Q90"},
        "subject": "Frankland",
    },
    "paraphrase_prompts": ["Maps are old. Frankland's capital is", "Frankland is governed from"],
    "neighborhood_prompts": ["The capital of Westia is", "Westia's seat of government is"],
    "attribute_prompts": ["The capital of Southland is"],
    "generation_prompts": ["Frankland's capital is", "Frankland's capital is", "People in Frankland's capital"],
}]

FLATTENED = [{
    "case_id": 7,
    "prompt": "The capital city of Frankland is",
    "target_new": "Lyon",
    "subject": "Frankland",
    "ground_truth": "Paris",
    "rephrase_prompt": "Frankland is governed from",
    "locality_prompt": "The capital of Westia is",
    "locality_ground_truth": " Paris ",
}]


def _write(tmp_path, name: str, records: list) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return str(path)


def test_original_format_keeps_generation_prompts_relation_and_new_object_id(tmp_path):
    [request] = read_counterfact(_write(tmp_path, "counterfact.json", ORIGINAL)).requests
    assert (request.record_id, request.prompt, request.subject) == ("counterfact:7", "The capital city of {} is",
                                                                     "Frankland")
    assert (request.target_new, request.target_true, request.target_new_id, request.relation) == (
        "Lyon", "Paris", "Q456", "P36")
    assert request.rephrase_prompts == tuple(ORIGINAL[0]["paraphrase_prompts"])
    assert request.locality == tuple(LocalityProbe(p, "Paris") for p in ORIGINAL[0]["neighborhood_prompts"])
    assert request.generation_prompts == tuple(ORIGINAL[0]["generation_prompts"])


def test_flattened_format_is_read_and_detected(tmp_path):
    path = _write(tmp_path, "counterfact-edit.json", FLATTENED)
    assert detect_format(path) == "counterfact"
    [request] = read_edit_set(path).requests
    assert (request.record_id, request.prompt, request.subject) == ("counterfact:7", "The capital city of {} is",
                                                                     "Frankland")
    assert (request.target_new, request.target_true) == ("Lyon", "Paris")
    assert request.rephrase_prompts == ("Frankland is governed from",)
    assert request.locality == (LocalityProbe("The capital of Westia is", "Paris"),)
    assert request.generation_prompts == () and request.target_new_id is None


def test_flattened_records_without_case_id_are_numbered_by_position(tmp_path):
    records = [{k: v for k, v in FLATTENED[0].items() if k != "case_id"} for _ in range(2)]
    requests = read_counterfact(_write(tmp_path, "cf.json", records)).requests
    assert [r.record_id for r in requests] == ["counterfact:0", "counterfact:1"]


@pytest.mark.parametrize("mutate,field,problem", [
    (lambda r: r.pop("target_new"), "target_new", "missing"),
    (lambda r: r.update(ground_truth=3), "ground_truth", "expected str"),
    (lambda r: r.update(locality_ground_truth="  "), "locality_ground_truth", "empty"),
    (lambda r: r.update(prompt="The capital is"), "prompt", "subject 'Frankland' does not occur"),
])
def test_flattened_malformed_record_names_file_index_and_field(tmp_path, mutate, field, problem):
    records = [dict(FLATTENED[0], case_id=i) for i in range(3)]
    mutate(records[2])
    path = _write(tmp_path, "bad.json", records)
    with pytest.raises(EditRequestError, match=rf"bad.json\[2\]: record counterfact:2 field '{field}': .*{problem}"):
        read_counterfact(path)


def test_original_format_new_object_id_must_be_a_string(tmp_path):
    records = json.loads(json.dumps(ORIGINAL))
    records[0]["requested_rewrite"]["target_new"]["id"] = 456
    with pytest.raises(EditRequestError, match=r"field 'requested_rewrite.target_new.id': expected str"):
        read_counterfact(_write(tmp_path, "cf.json", records))
