import json
import random

import pytest

from lit_edit.factworld.build import WorldSettings, build
from lit_edit.factworld.edits import counterfact_records, fact_questions, zsre_records
from lit_edit.factworld.render import fact_lines
from lit_edit.factworld.schema import RELATIONS
from lit_edit.factworld.tasks import GENERATORS, training_texts
from lit_edit.factworld.world import build_world
from lit_edit.models import load_tokenizer
from lit_edit.tasks import registry
from lit_edit.tasks.ner import entities
from tests.conftest import FACTWORLD


@pytest.fixture(scope="module")
def world():
    return build_world(seed=0, n_people=200)


def test_world_is_deterministic_and_seed_dependent():
    assert build_world(3, 50).facts == build_world(3, 50).facts
    assert build_world(3, 50).facts != build_world(4, 50).facts


def test_at_least_twelve_relations_with_heldout_templates():
    assert len(RELATIONS) >= 12
    for relation in RELATIONS:
        assert relation.train_statements and relation.train_questions
        assert relation.heldout_statement not in relation.train_statements
        assert relation.heldout_question not in relation.train_questions


def test_names_are_multi_token(world):
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-gpt2"))
    lengths = [len(tokenizer(" " + p, add_special_tokens=False)["input_ids"]) for p in world.people]
    assert min(lengths) >= 2


def test_heldout_templates_never_appear_in_the_training_corpus(world):
    corpus = "\n".join(fact_lines(world))
    for relation in RELATIONS:
        for subject in world.subjects_of_kind(relation.subject_kind):
            assert relation.heldout_question.format(subject) not in corpus, relation.name
            assert relation.heldout_statement.format(subject) not in corpus, relation.name


def test_every_training_fact_question_appears_in_the_corpus(world):
    corpus = set(fact_lines(world))
    pairs = fact_questions(world, heldout=False)
    assert all(f"{q} {a}" in corpus for q, a in random.Random(0).sample(pairs, 200))


def test_zsre_records_are_counterfactual_and_locality_is_untouched(world):
    records = zsre_records(world, 300, seed=1)
    edited = {(r["subject"], r["relation"]) for r in records}
    assert len(edited) == 300
    for r in records:
        assert r["subject"] in r["src"] and r["subject"] in r["rephrase"]
        assert r["alt"] != r["answers"][0] == world.object_of(r["subject"], r["relation"])
        assert r["rephrase"] != r["src"]
        loc_subject = next(p for p in world.people if p in r["loc"])
        assert not any(s == loc_subject and rel in r["loc"] for s, rel in edited) or r["loc_ans"]
        if "portability" in r:
            assert r["portability"]["New Answer"]
    assert any("portability" in r for r in records)


def test_counterfact_records_follow_the_published_format(world):
    records = counterfact_records(world, 100, seed=2)
    for r in records:
        rw = r["requested_rewrite"]
        assert "{}" in rw["prompt"]
        assert rw["target_new"]["str"] != rw["target_true"]["str"]
        assert len(r["paraphrase_prompts"]) == 2 and r["neighborhood_prompts"]
        for prompt in r["neighborhood_prompts"]:
            assert rw["subject"] not in prompt


def test_too_many_edits_are_refused(world):
    with pytest.raises(ValueError, match="at most"):
        zsre_records(world, 100000, seed=0)


def test_mini_tasks_round_trip_through_the_real_format_readers(tmp_path):
    out = build(tmp_path / "world", WorldSettings(n_people=30, n_edits=20, n_task_train=12, n_task_test=10,
                                                   vocab_size=600))
    for task in registry.TASK_FILES:
        records = registry.read_task(out / "tasks", task)
        assert len(records) == 10, task
        assert all(training_texts(task, r) for r in records)
    assert (out / "tokenizer-llama" / "tokenizer.json").exists()
    llama = load_tokenizer(str(out / "tokenizer-llama"))
    assert llama("hello")["input_ids"][0] == llama.bos_token_id
    gpt2 = load_tokenizer(str(out / "tokenizer-gpt2"))
    assert gpt2("hello")["input_ids"][0] != gpt2.bos_token_id


def test_ner_gold_entities_follow_iob2(world):
    sentence = GENERATORS["ner"](world, random.Random(0), 5)[0]
    assert len(sentence["tokens"]) == len(sentence["tags"]) == len(sentence["pos"])
    assert entities(["A", "B", "x", "C"], ["B-PER", "I-PER", "O", "B-PER"], "PER") == ["A B", "C"]
    assert entities(["A", "B"], ["B-LOC", "B-LOC"], "LOC") == ["A", "B"]


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_committed_world_matches_the_generator(tmp_path):
    """The shipped model was trained on data/factworld: the generator must still produce exactly it."""
    settings = WorldSettings(**json.loads((FACTWORLD / "world.json").read_text())["settings"])
    out = build(tmp_path / "regenerated", settings)
    for name in ("world.json", "corpus/train.jsonl", "zsre/zsre_factworld.json", "tasks/test-NER.txt",
                 "tokenizer-gpt2/tokenizer.json"):
        assert (out / name).read_bytes() == (FACTWORLD / name).read_bytes(), name
