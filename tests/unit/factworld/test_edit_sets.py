"""Fact-world edit sets of varying diversity and length (``lit_edit.factworld.edit_sets``, ``build_edit_sets``)."""

import json
import re
from collections import Counter

import pytest

from lit_edit import tools
from lit_edit.factworld.edits import zsre_records
from lit_edit.factworld.schema import RELATIONS
from lit_edit.factworld.world import build_world
from tests.conftest import FACTWORLD

SHIPPED_SETS = FACTWORLD / "zsre" / "sets"
LENGTHS = (10, 20, 50, 100, 200)
# (relations, subjects, mean requests per subject) counted by hand from each level's rule: request j edits relation
# j mod R of subject j // k, with R = 1 or 12 relations and k = 1, 1, 2 or 12 requests per subject
EXPECTED = {
    ("one_relation", 10): (1, 10, 1.0), ("one_relation", 200): (1, 200, 1.0),
    ("all_relations", 10): (10, 10, 1.0), ("all_relations", 50): (12, 50, 1.0), ("all_relations", 200): (12, 200, 1.0),
    ("subject_pairs", 10): (10, 5, 2.0), ("subject_pairs", 50): (12, 25, 2.0), ("subject_pairs", 200): (12, 100, 2.0),
    ("shared_subjects", 10): (10, 1, 10.0), ("shared_subjects", 50): (12, 5, 10.0),
    ("shared_subjects", 100): (12, 9, 100 / 9), ("shared_subjects", 200): (12, 17, 200 / 17),
}


def build(out, *args):
    tools.main(["build_edit_sets", "--world", str(FACTWORLD), "--out", str(out), *args])


def read(folder, level, length):
    return json.loads((folder / f"{level}-{length:04d}.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("sets")
    build(out)
    return out


@pytest.fixture(scope="module")
def world():
    settings = json.loads((FACTWORLD / "world.json").read_text())["settings"]
    return build_world(settings["seed"], settings["n_people"])


def fact_of_question(world):
    """The (subject, relation) a locality question asks about, from every person fact's training question."""
    return {relation.train_questions[0].format(person): (person, relation.name)
            for relation in RELATIONS if relation.subject_kind == "person" for person in world.people}


@pytest.mark.parametrize(("level", "length"), sorted(EXPECTED))
def test_each_level_spans_the_relations_and_subjects_it_describes(built, world, level, length):
    records = read(built, level, length)
    assert len(records) == length
    per_subject = Counter(r["subject"] for r in records)
    relations, subjects, mean = EXPECTED[level, length]
    assert len({r["relation"] for r in records}) == relations
    assert len(per_subject) == subjects
    assert len(records) / len(per_subject) == pytest.approx(mean)
    assert len({(r["subject"], r["relation"]) for r in records}) == length     # no fact asked twice
    for r in records:                                                           # counterfactual requests
        assert r["answers"] == [world.object_of(r["subject"], r["relation"])] != [r["alt"]]
    row = next(row for row in json.loads((built / "index.json").read_text())["sets"]
               if row["file"] == f"{level}-{length:04d}.json")
    assert (row["relations"], row["subjects"]) == (relations, subjects)
    assert row["mean_requests_per_subject"] == pytest.approx(mean, abs=1e-3)
    assert row["requests_sharing_a_subject"] == length - subjects


def test_index_csv_lists_every_set_once(built):
    lines = (built / "index.csv").read_text().splitlines()
    assert lines[0].startswith("file,level,length,seed,relations,subjects,mean_requests_per_subject")
    assert sorted(line.split(",")[0] for line in lines[1:]) == sorted(p.name for p in built.glob("*-*.json"))
    assert len(lines) == 1 + 4 * len(LENGTHS)


@pytest.mark.parametrize("level", ["one_relation", "all_relations", "subject_pairs", "shared_subjects"])
def test_a_longer_set_extends_every_shorter_one(built, level):
    longest = read(built, level, max(LENGTHS))
    for length in LENGTHS:
        assert read(built, level, length) == longest[:length]


@pytest.mark.parametrize("level", ["one_relation", "all_relations", "subject_pairs", "shared_subjects"])
def test_locality_asks_about_facts_no_set_of_the_level_edits(built, world, level):
    questions = fact_of_question(world)
    edited = {(r["subject"], r["relation"]) for r in read(built, level, max(LENGTHS))}
    for length in LENGTHS:
        for r in read(built, level, length):
            fact = questions[r["loc"]]
            assert fact not in edited, (level, length, r["loc"])
            assert r["loc_ans"] == world.object_of(*fact)


def test_the_longest_set_a_level_allows_extends_the_shorter_ones_and_locality_avoids_it(built, world, tmp_path):
    build(tmp_path, "--lengths", "[1200]", "--levels", "[shared_subjects]")      # half the 2400 person facts
    longest = read(tmp_path, "shared_subjects", 1200)
    edited = {(r["subject"], r["relation"]) for r in longest}
    assert len(edited) == 1200 and len({r["subject"] for r in longest}) == 100
    shorter = read(built, "shared_subjects", 200)
    assert longest[:200] == shorter
    questions = fact_of_question(world)
    assert not [r["loc"] for r in shorter if questions[r["loc"]] in edited]


def test_the_same_seed_gives_the_same_files_and_another_seed_other_sets(built, tmp_path):
    build(tmp_path / "again", "--lengths", "[20]", "--levels", "[subject_pairs]")
    build(tmp_path / "other", "--lengths", "[20]", "--levels", "[subject_pairs]", "--seed", "1")
    name = "subject_pairs-0020.json"
    assert (tmp_path / "again" / name).read_bytes() == (built / name).read_bytes()
    first, other = json.loads((built / name).read_text()), json.loads((tmp_path / "other" / name).read_text())
    for field in ("subject", "relation", "alt", "loc"):     # the seed picks each of them
        assert [r[field] for r in first] != [r[field] for r in other], field


def test_the_shipped_sets_are_those_the_default_command_writes(built):
    shipped = sorted(p.name for p in SHIPPED_SETS.iterdir())
    assert shipped == sorted(p.name for p in built.iterdir())
    for name in shipped:
        assert (SHIPPED_SETS / name).read_bytes() == (built / name).read_bytes(), name


def test_the_shipped_zsre_file_is_regenerated_byte_for_byte(world):
    settings = json.loads((FACTWORLD / "world.json").read_text())["settings"]
    records = zsre_records(world, settings["n_edits"], settings["seed"] + 4)
    assert json.dumps(records, indent=1) == (FACTWORLD / "zsre" / "zsre_factworld.json").read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--lengths", "[10, 201]", "--levels", "[one_relation]"],
     r"^error: --lengths: 201 requests do not fit level one_relation in this world \(200 people; at most 200\)"),
    (["--lengths", "[0]"], r"^error: --lengths \[0\]: give one or more lengths of at least 1"),
    (["--levels", "[one_relation, many_relations]"],
     r"^error: --levels \['many_relations'\]: unknown level; choose among \['one_relation', 'all_relations'"),
])
def test_a_bad_option_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        build(tmp_path / "sets", *args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert re.search(message, err), err


def test_a_world_folder_without_world_json_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tools.main(["build_edit_sets", "--world", str(tmp_path), "--out", str(tmp_path / "sets")])
    assert f"--world {tmp_path}: no world.json there" in capsys.readouterr().err


def test_the_data_module_reads_a_shipped_set_and_warns_of_its_shared_subjects():
    from lit_edit.data import EditDataModule

    data = EditDataModule(path="zsre/sets/shared_subjects-0020.json", root=str(FACTWORLD), batch_size=10)
    # subject A holds requests 0-11, B 12-19: batch 1 is ten of A (9 repeats), batch 2 two of A and eight of B (8)
    with pytest.warns(UserWarning, match=r"shared_subjects-0020.json: 17 requests in 2 of 2 batches name a subject"):
        data.setup("test")
    assert [(r.subject, r.target_new) for r in data.requests] == [
        (r["subject"], r["alt"]) for r in read(SHIPPED_SETS, "shared_subjects", 20)]
