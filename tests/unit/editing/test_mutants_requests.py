"""Edit requests and their readers (``lit_edit/editing/requests.py``) on records and files written here: every
refusal with its whole message (field, type found, file, record), JSON Lines and its detection, the file's
sha256, source and positions, optional fields left out, portability as one entry or a list, the flattened
CounterFact test, and the edges of ``select`` and ``separate_shared_subjects``."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from lit_edit.editing.requests import (
    EditRequest,
    EditRequestError,
    EditSetFileError,
    LocalityProbe,
    PortabilityProbe,
    SelectionError,
    is_counterfact_edit_record,
    load_records,
    read_counterfact,
    read_zsre,
    select,
    separate_shared_subjects,
)

EXPECTED = "expected a JSON list of edit records (ZsRE or CounterFact) or JSON Lines (one record per line)"
ENTRY = 'expected {"New Question": str, "New Answer": str}'


def _zsre(**fields) -> dict:
    record = {"subject": "Dune", "src": "Who wrote Dune?", "alt": " Frank", "answers": ["Herbert"],
              "rephrase": ["Dune was written by whom?"], "loc": "nq question: who sang hello", "loc_ans": " Adele",
              "relation": "author"}
    return {**record, **fields}


def _counterfact(case_id=7, **rewrite) -> dict:
    return {"case_id": case_id,
            "requested_rewrite": {"prompt": "{} was born in", "subject": "Ada", "target_new": {"str": "Paris", "id": "Q90"},
                                  "target_true": {"str": "London", "id": "Q84"}, "relation_id": "P19", **rewrite},
            "paraphrase_prompts": ["Ada's birthplace is"], "neighborhood_prompts": ["Bob was born in"],
            "generation_prompts": ["Ada lived in"]}


def _flattened(**fields) -> dict:
    record = {"prompt": "Ada was born in", "subject": "Ada", "target_new": "Paris", "ground_truth": "London",
              "rephrase_prompt": "Ada's birthplace is", "locality_prompt": "Bob was born in",
              "locality_ground_truth": "London"}
    return {**record, **fields}


def _file(tmp_path, records, name="edits.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def _message(excinfo) -> str:
    return str(excinfo.value)


# --------------------------------------------------------------------------------------- EditRequest


def test_a_request_error_without_a_place_starts_with_the_record():
    assert str(EditRequestError("r:1", "prompt", "bad")) == "record r:1 field 'prompt': bad"


@pytest.mark.parametrize("fields, field, problem", [
    ({"record_id": 3}, "record_id", "expected a string, found int"),
    ({"prompt": b"{} wrote"}, "prompt", "expected a string, found bytes"),
    ({"target_true": 3}, "target_true", "expected a string or None, found int"),
    ({"relation": [1]}, "relation", "expected a string or None, found list"),
    ({"target_new_id": 2.5}, "target_new_id", "expected a string or None, found float"),
    ({"subject": "  "}, "subject", "subject is empty"),
    ({"rephrase_prompts": 5}, "rephrase_prompts", "expected a sequence of str, found int"),
    ({"locality": ["x"]}, "locality", "expected items of type LocalityProbe, found str"),
])
def test_a_field_of_the_wrong_type_is_refused_naming_it_and_the_type_found(fields, field, problem):
    with pytest.raises(EditRequestError) as caught:
        EditRequest(**{"prompt": "{} wrote", "subject": "Ada", "target_new": "Dune", "record_id": "r", **fields})
    record_id = fields.get("record_id", "r")
    assert (_message(caught), caught.value.field, caught.value.problem) == (
        f"record {record_id} field '{field}': {problem}", field, problem)


@pytest.mark.parametrize("prompt", ["{} {", "{} }", "{ {}", "}{} was"])
def test_one_stray_brace_on_either_side_is_refused(prompt):
    with pytest.raises(EditRequestError) as caught:
        EditRequest(prompt, "Ada", "Dune")
    assert _message(caught) == (f"record <unnamed> field 'prompt': needs exactly one '{{}}' subject slot and no "
                                f"other braces: {prompt!r}")


# ------------------------------------------------------------------------------------------ the file


def test_json_lines_are_read_by_suffix_in_any_case_or_when_a_json_file_holds_several_values(tmp_path):
    first, second = {"a": 1}, {"b": [2]}
    for name, text in (("edits.jsonl", '{"a": 1}\n\n{"b": [2]}\n'), ("EDITS.JSONL", '{"a": 1}\n'),
                       ("edits.json", '{"a": 1}\n{"b": [2]}\n')):
        path = tmp_path / name
        path.write_text(text)
        records, sha = load_records(path)
        assert records == ([first] if name == "EDITS.JSONL" else [first, second])
        assert sha == hashlib.sha256(text.encode()).hexdigest()


def test_a_broken_json_line_is_named_by_its_line_number_counting_blank_lines(tmp_path):
    path = tmp_path / "edits.jsonl"
    path.write_text('{"a": 1}\n\n{"a":\n')
    with pytest.raises(EditSetFileError) as caught:
        load_records(path)
    assert _message(caught).startswith(f"{path}:3: not valid JSON (Expecting value")
    assert _message(caught).endswith(f"; {EXPECTED}")


@pytest.mark.parametrize("data, message", [
    (b"[\xff]", "{path}: not UTF-8 text (byte 0xff at offset 1); save it as UTF-8 ({expected})"),
    (b" \n", "{path} is empty; {expected}"),
    (b"[" * 100000, "{path}: nested too deeply to be an edit set; {expected}"),
    (b'{"a": 1}', "{path}: expected a JSON list of records, found dict"),
    (b"[]", "{path} holds no records; {expected}"),
])
def test_a_file_that_is_not_a_list_of_records_is_refused_naming_it(tmp_path, data, message):
    path = tmp_path / "edits.json"
    path.write_bytes(data)
    with pytest.raises(EditSetFileError) as caught:
        load_records(path)
    assert _message(caught) == message.format(path=path, expected=EXPECTED)


def test_invalid_json_is_refused_naming_the_file_and_a_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "edits.json"
    path.write_text("[1,")
    with pytest.raises(EditSetFileError) as caught:
        load_records(path)
    assert _message(caught).startswith(f"{path}: not valid JSON (Expecting value")
    assert _message(caught).endswith(f"; {EXPECTED}")
    path.write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert load_records(path)[0] == [{"a": 1}]


# -------------------------------------------------------------------------------------------- ZsRE


def test_zsre_keeps_the_sha_the_source_and_the_position_of_each_request_after_a_skipped_record(tmp_path):
    without_relation = _zsre()
    del without_relation["relation"]
    path = _file(tmp_path, [_zsre(), _zsre(alt=" "), without_relation])
    edits = read_zsre(path)
    assert edits.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (edits.source, edits.indices) == (str(path), (0, 2))
    assert edits.skipped == (("zsre:1", "empty 'alt' (no new target)"),)
    assert [r.relation for r in edits.requests] == ["author", None]
    assert edits.requests[0].locality == (LocalityProbe("who sang hello", "Adele"),)


def test_a_locality_prompt_without_the_nq_prefix_is_kept_whole(tmp_path):
    edits = read_zsre(_file(tmp_path, [_zsre(loc="who sang hello")]))
    assert edits.requests[0].locality[0].prompt == "who sang hello"


@pytest.mark.parametrize("fields, field, problem", [
    ({"answers": []}, "answers", "is an empty list"),
    ({"loc_ans": "  "}, "loc_ans", "answer is empty"),
    ({"src": 3}, "src", "expected str, found int"),
    ({"rephrase": ["x", 1]}, "rephrase", "expected a list of strings"),
    ({"portability": {"New Question": 5, "New Answer": "x"}}, "portability", ENTRY),
    ({"portability": [{"New Question": "q", "New Answer": "x"}, {"New Question": "q"}]}, "portability[1]", ENTRY),
    ({"portability": {"New Question": "q", "New Answer": " "}}, "portability.New Answer", "answer is empty"),
    ({"portability": [{"New Question": "q", "New Answer": ""}]}, "portability[0].New Answer", "answer is empty"),
])
def test_a_broken_zsre_record_is_refused_naming_the_file_record_and_field(tmp_path, fields, field, problem):
    path = _file(tmp_path, [_zsre(**fields)])
    with pytest.raises(EditRequestError) as caught:
        read_zsre(path)
    assert _message(caught) == f"{path}[0]: record zsre:0 field '{field}': {problem}"


def test_portability_as_a_list_gives_one_probe_per_entry(tmp_path):
    entries = [{"New Question": "q1", "New Answer": " a1"}, {"New Question": "q2", "New Answer": "a2 "}]
    edits = read_zsre(_file(tmp_path, [_zsre(portability=entries)]))
    assert edits.requests[0].portability == (PortabilityProbe("q1", "a1"), PortabilityProbe("q2", "a2"))


def test_a_record_that_is_not_an_object_is_refused_naming_its_type(tmp_path):
    path = _file(tmp_path, [5])
    with pytest.raises(EditRequestError) as caught:
        read_zsre(path)
    assert _message(caught) == f"{path}[0]: record zsre:0 field '<record>': expected a JSON object, found int"


# -------------------------------------------------------------------------------------- CounterFact


def test_counterfact_keeps_the_sha_the_source_and_the_positions(tmp_path):
    path = _file(tmp_path, [_counterfact(7), _counterfact(8)])
    edits = read_counterfact(path)
    assert edits.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (edits.source, edits.indices) == (str(path), (0, 1))
    assert [r.record_id for r in edits.requests] == ["counterfact:7", "counterfact:8"]


def test_counterfact_without_generation_prompts_relation_or_new_object_id_reads_them_as_absent(tmp_path):
    record = _counterfact()
    del record["generation_prompts"], record["requested_rewrite"]["relation_id"]
    del record["requested_rewrite"]["target_new"]["id"]
    request = read_counterfact(_file(tmp_path, [record])).requests[0]
    assert (request.generation_prompts, request.relation, request.target_new_id) == ((), None, None)


def test_a_case_id_read_twice_is_refused_naming_the_file(tmp_path):
    path = _file(tmp_path, [_counterfact(7), _counterfact(7)])
    with pytest.raises(ValueError) as caught:
        read_counterfact(path)
    assert _message(caught) == f"{path}: record id counterfact:7 occurs twice"


def test_a_missing_field_lists_the_keys_found_or_the_type_in_its_place(tmp_path):
    record = _counterfact()
    del record["requested_rewrite"]["target_true"]
    path = _file(tmp_path, [record])
    with pytest.raises(EditRequestError) as caught:
        read_counterfact(path)
    assert _message(caught) == (f"{path}[0]: record counterfact:7 field 'requested_rewrite.target_true.str': missing "
                                "(found ['prompt', 'relation_id', 'subject', 'target_new'])")
    path = _file(tmp_path, [{**_counterfact(), "requested_rewrite": "Ada"}])
    with pytest.raises(EditRequestError) as caught:
        read_counterfact(path)
    assert _message(caught) == (f"{path}[0]: record counterfact:7 field 'requested_rewrite.target_true.str': missing "
                                "(found str)")


def test_a_case_id_of_another_type_names_both_allowed_types(tmp_path):
    path = _file(tmp_path, [_counterfact([7])])
    with pytest.raises(EditRequestError) as caught:
        read_counterfact(path)
    assert _message(caught) == f"{path}[0]: record #0 field 'case_id': expected int/str, found list"


def test_a_flattened_record_with_an_empty_locality_answer_is_refused(tmp_path):
    path = _file(tmp_path, [_flattened(locality_ground_truth=" ")])
    with pytest.raises(EditRequestError) as caught:
        read_counterfact(path)
    assert _message(caught) == f"{path}[0]: record counterfact:0 field 'locality_ground_truth': answer is empty"


def test_only_a_record_without_requested_rewrite_but_with_both_flattened_fields_is_flattened():
    assert is_counterfact_edit_record(_flattened())
    assert not is_counterfact_edit_record({**_flattened(), "requested_rewrite": {}})
    assert not is_counterfact_edit_record({"requested_rewrite": {}, "locality_prompt": "p"})
    assert not is_counterfact_edit_record({"ground_truth": "g"})
    assert not is_counterfact_edit_record({"locality_prompt": "p"})


# ---------------------------------------------------------------------------------------- selection


def _requests(subjects: str) -> list[EditRequest]:
    return [EditRequest("{} is", s, "x", record_id=f"r{i}") for i, s in enumerate(subjects)]


def test_shuffling_uses_seed_0_by_default():
    requests = _requests("ABCDEFGH")
    expected = list(requests)
    random.Random(0).shuffle(expected)
    assert select(requests, shuffle=True)[0] == expected


def test_n_may_be_anything_from_0_to_the_slice_length():
    requests = _requests("ABC")
    assert select(requests, n=0) == ([], [])
    assert select(requests, n=3)[1] == ["r0", "r1", "r2"]
    for n in (4, -1):
        with pytest.raises(SelectionError) as caught:
            select(requests, n=n)
        assert _message(caught) == f"n={n} edits asked, but the slice [0:None:1] holds 3"


def test_one_distinct_subject_per_batch_is_accepted_and_zero_refused():
    requests = _requests("AAB")
    assert [r.record_id for r in separate_shared_subjects(requests, 1)] == ["r0", "r1", "r2"]
    with pytest.raises(ValueError, match=r"^distinct_subjects_per_batch must be >= 1, got 0$"):
        separate_shared_subjects(requests, 0)
