"""Edit requests, the ZsRE and CounterFact readers (docs/methods.md §0.1, §11.4) and the edit-order selection."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from lit_edit.editing import (
    EditRequest,
    EditRequestError,
    LocalityProbe,
    PortabilityProbe,
    read_counterfact,
    read_zsre,
    select,
    separate_shared_subjects,
    shared_subject_count,
)
from tests.conftest import FACTWORLD, SHARED_DATA

ZSRE_REAL = SHARED_DATA / "zsre" / "zsre_mend_eval_portability_gpt4.json"
ZSRE_FACTWORLD = FACTWORLD / "zsre" / "zsre_factworld.json"
COUNTERFACT_FACTWORLD = FACTWORLD / "counterfact" / "counterfact_factworld.json"

needs_real = pytest.mark.skipif(not ZSRE_REAL.exists(), reason=f"real ZsRE data not found at {ZSRE_REAL}")


def _write(tmp_path, name: str, records: list) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return str(path)


def _zsre_records(n: int = 3) -> list[dict]:
    return copy.deepcopy(json.loads(ZSRE_FACTWORLD.read_text(encoding="utf-8"))[:n])


def _counterfact_records(n: int = 3) -> list[dict]:
    return copy.deepcopy(json.loads(COUNTERFACT_FACTWORLD.read_text(encoding="utf-8"))[:n])


# ------------------------------------------------------------------------------------------ real data


@needs_real
def test_real_zsre_is_read_completely():
    edits = read_zsre(ZSRE_REAL)
    assert len(edits) == 1037 and edits.skipped == ()
    assert edits.sha256 == hashlib.sha256(ZSRE_REAL.read_bytes()).hexdigest()
    first = edits.requests[0]
    assert (first.prompt, first.subject) == ("When was the inception of {}?", "IAAF Combined Events Challenge")
    assert (first.target_new, first.target_true, first.record_id) == ("2006", "1998", "zsre:0")
    assert first.text == "When was the inception of IAAF Combined Events Challenge?"
    assert first.rephrase_prompts == ("When was the IAAF Combined Events Challenge launched?",)
    assert first.locality == (LocalityProbe("what is the name of the last episode of spongebob", "The String"),)
    assert first.portability[0].answer == "Athletics"
    assert all(len(r.portability) == 1 and not r.locality[0].prompt.startswith("nq question") for r in edits.requests)
    # 15 'alt' values start with a space in the file; targets are stored without it
    assert edits.requests[26].target_new == "MAT-49"
    assert all(r.target_new == r.target_new.strip() for r in edits.requests)
    assert len({r.record_id for r in edits.requests}) == 1037


def test_factworld_sets_are_read_completely():
    zsre, counterfact = read_zsre(ZSRE_FACTWORLD), read_counterfact(COUNTERFACT_FACTWORLD)
    assert len(zsre) == 1000 and len(counterfact) == 1000 and zsre.skipped == counterfact.skipped == ()
    assert sum(bool(r.portability) for r in zsre.requests) == 241
    assert all(r.relation for r in zsre.requests + counterfact.requests)
    request = counterfact.requests[0]
    assert (request.prompt, request.subject) == ("{} was born in", "Giodes Heatilios")
    assert request.record_id == "counterfact:0"
    assert (request.target_new, request.target_true, request.relation) == ("Marrowfield", "Cobrin", "birth_city")
    assert len(request.rephrase_prompts) == 2 and len(request.generation_prompts) == 3
    assert len(request.locality) == 6 and all(p.answer == "Cobrin" for p in request.locality)


# --------------------------------------------------------------------------------------- EditRequest


def test_missing_slot_replaces_first_occurrence_of_subject():
    request = EditRequest("Where was Bob Smith born? Ask Bob Smith.", "Bob Smith", "Paris", record_id="x:1")
    assert request.prompt == "Where was {} born? Ask Bob Smith."
    assert request.text == "Where was Bob Smith born? Ask Bob Smith."
    assert EditRequest("Where was {} born?", "Bob", "Paris").prompt == "Where was {} born?"


def test_targets_lose_surrounding_whitespace_and_lists_become_tuples():
    request = EditRequest("{} lives in", "Bob", " Paris ", " Rome", rephrase_prompts=["Bob resides in"],
                          locality=[LocalityProbe("Ann lives in", "Oslo")])
    assert (request.target_new, request.target_true) == ("Paris", "Rome")
    assert request.rephrase_prompts == ("Bob resides in",) and isinstance(request.locality, tuple)
    hash(request)  # frozen and made of tuples: usable as a key


@pytest.mark.parametrize("kwargs,field,problem", [
    (dict(target_new="  "), "target_new", "target is empty"),
    (dict(target_true=""), "target_true", "target is empty"),
    (dict(prompt="Where was Ann born?"), "prompt", "the subject 'Bob' does not occur"),
    (dict(prompt="{} met {}"), "prompt", "exactly one"),
    (dict(prompt="{} lives in {city}"), "prompt", "no other braces"),
    (dict(subject=""), "subject", "subject is empty"),
    (dict(target_new=3), "target_new", "expected a string"),
    (dict(rephrase_prompts="Bob resides in"), "rephrase_prompts", "expected a sequence"),
    (dict(locality=[("Ann lives in", "Oslo")]), "locality", "LocalityProbe"),
    (dict(portability=[LocalityProbe("q", "a")]), "portability", "PortabilityProbe"),
])
def test_request_errors_name_record_and_field(kwargs, field, problem):
    fields = dict(prompt="{} lives in", subject="Bob", target_new="Paris", record_id="zsre:17") | kwargs
    with pytest.raises(EditRequestError, match=f"record zsre:17 field '{field}': .*{problem}") as info:
        EditRequest(**fields)
    assert (info.value.record_id, info.value.field) == ("zsre:17", field)


# ------------------------------------------------------------------------------------------- readers


def test_zsre_empty_alt_is_skipped_and_reported(tmp_path):
    records = _zsre_records(3)
    records[1]["alt"] = " "
    edits = read_zsre(_write(tmp_path, "z.json", records))
    assert [r.record_id for r in edits.requests] == ["zsre:0", "zsre:2"]
    assert len(edits.skipped) == 1 and edits.skipped[0][0] == "zsre:1" and "alt" in edits.skipped[0][1]
    assert edits.source.endswith("z.json")


def test_zsre_nq_prefix_is_stripped_and_portability_is_optional(tmp_path):
    records = _zsre_records(2)
    records[0]["loc"] = "nq question: who wrote hamlet"
    records[0]["portability"] = {"New Question": "q?", "New Answer": " a "}
    records[1].pop("portability", None)
    requests = read_zsre(_write(tmp_path, "z.json", records)).requests
    assert requests[0].locality[0].prompt == "who wrote hamlet"
    assert requests[0].portability == (PortabilityProbe("q?", "a"),) and requests[1].portability == ()


@pytest.mark.parametrize("mutate,field,problem", [
    (lambda r: r.pop("rephrase"), "rephrase", "missing"),
    (lambda r: r.update(alt=5), "alt", "expected str, found int"),
    (lambda r: r.update(answers=[]), "answers", "empty list"),
    (lambda r: r.update(answers=[""]), r"answers\[0\]", "target is empty"),
    (lambda r: r.update(answers=[1]), "answers", "list of strings"),
    (lambda r: r.update(src="What is it?"), "src", "does not occur"),
    (lambda r: r.update(loc_ans=""), "loc_ans", "empty"),
    (lambda r: r.update(portability={"New Question": "q"}), "portability", "New Answer"),
])
def test_zsre_malformed_record_names_file_index_and_field(tmp_path, mutate, field, problem):
    records = _zsre_records(3)
    mutate(records[1])
    path = _write(tmp_path, "bad_zsre.json", records)
    with pytest.raises(EditRequestError, match=rf"bad_zsre.json\[1\]: record zsre:1 field '{field}': .*{problem}"):
        read_zsre(path)


@pytest.mark.parametrize("mutate,field,problem", [
    (lambda r: r["requested_rewrite"]["target_new"].pop("str"), "requested_rewrite.target_new.str", "missing"),
    (lambda r: r["requested_rewrite"].update(subject=["x"]), "requested_rewrite.subject", "expected str"),
    (lambda r: r["requested_rewrite"]["target_true"].update(str=""), "requested_rewrite.target_true.str", "empty"),
    (lambda r: r.update(paraphrase_prompts=[None]), "paraphrase_prompts", "list of strings"),
    (lambda r: r.pop("neighborhood_prompts"), "neighborhood_prompts", "missing"),
])
def test_counterfact_malformed_record_names_file_index_and_field(tmp_path, mutate, field, problem):
    records = _counterfact_records(3)
    mutate(records[2])
    path = _write(tmp_path, "bad_cf.json", records)
    with pytest.raises(EditRequestError, match=rf"bad_cf.json\[2\]: record counterfact:2 field '{field}': .*{problem}"):
        read_counterfact(path)


def test_file_level_errors(tmp_path):
    with pytest.raises(EditRequestError, match=r"x.json\[1\]: record zsre:1 field '<record>': expected a JSON object"):
        read_zsre(_write(tmp_path, "x.json", _zsre_records(1) + [["not", "a", "dict"]]))
    with pytest.raises(EditRequestError, match=r"c.json\[0\]: record #0 field 'case_id': missing"):
        read_counterfact(_write(tmp_path, "c.json", [{"requested_rewrite": {}}]))
    records = _counterfact_records(2)
    records[1]["case_id"] = records[0]["case_id"]
    with pytest.raises(ValueError, match="record id counterfact:0 occurs twice"):
        read_counterfact(_write(tmp_path, "dup.json", records))
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_zsre(_write(tmp_path, "d.json", {"records": []}))


# ------------------------------------------------------------------------------------------ select


@pytest.fixture(scope="module")
def requests():
    return read_counterfact(COUNTERFACT_FACTWORLD).requests


def test_select_slices_and_records_the_order(requests):
    chosen, ids = select(requests, start=10, stop=20, step=3)
    assert chosen == list(requests[10:20:3]) and ids == ["counterfact:10", "counterfact:13", "counterfact:16",
                                                         "counterfact:19"]
    assert select(requests, n=5)[1] == [f"counterfact:{i}" for i in range(5)]


def test_select_shuffle_is_deterministic_in_the_seed(requests):
    a, ids_a = select(requests, shuffle=True, seed=3)
    b, ids_b = select(requests, shuffle=True, seed=3)
    _, ids_c = select(requests, shuffle=True, seed=4)
    assert a == b and ids_a == ids_b and ids_a != ids_c
    assert sorted(ids_a) == sorted(r.record_id for r in requests) and ids_a != [r.record_id for r in requests]
    assert ids_a == [r.record_id for r in a]
    # a subsample is the prefix of the full shuffled order: asking for more edits keeps the earlier ones
    assert select(requests, n=50, shuffle=True, seed=3)[1] == ids_a[:50]


def test_select_refuses_impossible_requests(requests):
    with pytest.raises(ValueError, match="n=11 edits asked, but the slice \\[0:10:1\\] holds 10"):
        select(requests, stop=10, n=11)
    with pytest.raises(ValueError, match="step must be >= 1"):
        select(requests, step=0)


def _request(subject: str, index: int) -> EditRequest:
    return EditRequest("{} lives in", subject, f"City {index}", record_id=f"r{index}")


def test_separate_shared_subjects_keeps_each_batch_free_of_repeats_and_the_order_otherwise():
    subjects = ["A", "A", "B", "A", "C", "B", "D", "E"]
    requests = [_request(s, i) for i, s in enumerate(subjects)]
    ordered = separate_shared_subjects(requests, batch_size=3)
    # r1 (A) waits for the second batch and goes first there; r3 (A) waits again for the third
    assert [r.record_id for r in ordered] == ["r0", "r2", "r4", "r1", "r5", "r6", "r3", "r7"]
    assert [shared_subject_count(ordered[i:i + 3]) for i in range(0, 8, 3)] == [0, 0, 0]
    assert shared_subject_count(requests[:3]) == 1 and shared_subject_count(requests[3:6]) == 0
    # only when nothing else is left does a batch take a repeat
    tail = separate_shared_subjects([_request("A", i) for i in range(3)] + [_request("B", 3)], batch_size=2)
    assert [r.record_id for r in tail] == ["r0", "r3", "r1", "r2"]
    with pytest.raises(ValueError, match="distinct_subjects_per_batch must be >= 1"):
        separate_shared_subjects(requests, 0)


def test_select_separates_shared_subjects_before_taking_n():
    requests = read_zsre(ZSRE_FACTWORLD).requests
    plain = select(requests, n=300, shuffle=True, seed=1)[0]
    chosen, ids = select(requests, n=300, shuffle=True, seed=1, distinct_subjects_per_batch=100)
    assert sum(shared_subject_count(plain[i:i + 100]) for i in range(0, 300, 100)) > 0
    assert [shared_subject_count(chosen[i:i + 100]) for i in range(0, 300, 100)] == [0, 0, 0]
    assert len(set(ids)) == 300 and ids == [r.record_id for r in chosen]
    # the same requests as the full reordered stream's prefix; without the option nothing moves
    everything = select(requests, shuffle=True, seed=1, distinct_subjects_per_batch=100)[1]
    assert ids == everything[:300]
    assert select(requests, n=300)[1] == [r.record_id for r in requests[:300]]
