"""The skills corpus (many marked examples of the comparison mini tasks) and the answer loss that weights them."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lit_edit.data.corpus import TextCorpusDataModule
from lit_edit.factworld import tasks as world_tasks
from lit_edit.factworld.render import statement
from lit_edit.factworld.schema import POOLS
from lit_edit.factworld.skills import COMPARISON_TASKS, build_skills, prompts_of_test_sets, skill_records
from lit_edit.factworld.tasks.common import PERSON_RELATIONS
from lit_edit.factworld.world import build_world
from lit_edit.models.loading import load_tokenizer
from lit_edit.modules.language_model import CausalLMModule, answer_loss
from lit_edit.tasks import registry
from tests.conftest import FACTWORLD

ANSWERS = {"closed_domain_qa": {"yes", "no"}, "nli": {"True", "False"}, "dialogue": set("ABCD")}
TOKENIZER = str(FACTWORLD / "tokenizer-gpt2")


@pytest.fixture(scope="module")
def world():
    return build_world(0, 200)


def test_each_record_marks_its_gold_answer_after_a_task_prompt(world):
    records = skill_records(world, COMPARISON_TASKS, 30, seed=1)
    assert len(records) == 90
    seen = {task: 0 for task in COMPARISON_TASKS}
    for record in records:
        start, end = record["answer"]
        prompt, answer = record["text"][:start - 1], record["text"][start:end]
        assert end == len(record["text"]) and record["text"][start - 1] == " "
        task = next(t for t, cue in (("closed_domain_qa", "passage: "), ("nli", " entails the "),
                                     ("dialogue", "Answer Chioces:")) if cue in prompt)
        assert answer in ANSWERS[task], (task, answer)
        seen[task] += 1
        for a, b in record["entities"]:                  # routing spans of the people it names
            assert record["text"][a:b] in world.people or record["text"][a:b] in {s for s, _ in world.facts}
    assert seen == {task: 30 for task in COMPARISON_TASKS}
    # both answers of each binary task occur (the generators draw them at random)
    for task in ("closed_domain_qa", "nli"):
        golds = {r["text"][r["answer"][0]:] for r in records if r["text"][r["answer"][0]:] in ANSWERS[task]}
        assert golds == ANSWERS[task]


def test_the_gold_answer_is_the_generator_record_s(world):
    rng = random.Random(0)
    for task in COMPARISON_TASKS:
        record = world_tasks.GENERATORS[task](world, rng, 1)[0]
        (text, start), = world_tasks.training_examples(task, record)
        assert text[:start - 1] == registry.get_task(task).prompt(record)
        assert text[start:] == world_tasks.GOLD[task](record)
        assert world_tasks.training_texts(task, record) == [text]


def test_no_skill_example_repeats_an_excluded_prompt(world):
    first = skill_records(world, ("nli",), 50, seed=3)
    banned = {r["text"][:r["answer"][0] - 1] for r in first[:25]}
    again = skill_records(world, ("nli",), 50, seed=3, excluded_prompts={"nli": banned})
    assert len(again) == 50
    assert not banned & {r["text"][:r["answer"][0] - 1] for r in again}


def test_the_committed_test_sets_prompts_are_excluded(world):
    excluded = prompts_of_test_sets(FACTWORLD, COMPARISON_TASKS)
    assert all(len(p) > 100 for p in excluded.values())          # the test sets were read
    records = skill_records(world, COMPARISON_TASKS, 300, seed=7, excluded_prompts=excluded)
    prompts_written = {r["text"][:r["answer"][0] - 1] for r in records}
    assert not prompts_written & set().union(*excluded.values())


def test_direct_variants_answer_by_the_one_statement_they_give(world):
    """The direct BoolQ/RTE records: the passage (premise) is the true statement of one fact; the gold answer is
    yes (entailment) exactly when the claim (hypothesis) gives that fact's object."""
    rng = random.Random(5)
    relations = PERSON_RELATIONS
    boolq = world_tasks.DIRECT_VARIANTS["closed_domain_qa_direct"][1](world, rng, 300)
    for r in boolq:
        assert any(r["passage"] == statement(x.train_statements[0], r["title"], world.object_of(r["title"], x.name))
                   for x in relations)
        assert r["answer"] == (r["question"].lower() == "is it true that " + r["passage"][:-1].lower())
    assert {r["answer"] for r in boolq} == {True, False}
    assert 0.2 < sum(r["title"] in r["question"] for r in boolq) / len(boolq) < 0.5      # a third keep the casing
    premises = {statement(x.train_statements[0], p, world.object_of(p, x.name)): (p, x)
                for p in world.people for x in relations}
    rte = world_tasks.DIRECT_VARIANTS["nli_direct"][1](world, rng, 300)
    same_wording = 0
    for r in rte:
        person, relation = premises[r["sentence1"]]
        truth = world.object_of(person, relation.name)
        entailed = r["sentence2"] in {statement(t, person, truth) for t in relation.train_statements[:2]}
        assert entailed == (r["label"] == "entailment")
        same_wording += r["sentence2"].startswith(relation.train_statements[0].format(person) + " ")
    assert {r["label"] for r in rte} == {"entailment", "not_entailment"}
    assert 0.2 < same_wording / len(rte) < 0.5
    # through the skills corpus they take their task's prompt and answer words
    records = skill_records(world, ("closed_domain_qa_direct", "nli_direct"), 20, seed=2,
                            excluded_prompts=prompts_of_test_sets(FACTWORLD, ("closed_domain_qa_direct",)))
    assert len(records) == 40
    for record in records:
        start = record["answer"][0]
        prompt, answer = record["text"][:start - 1], record["text"][start:]
        assert answer in (ANSWERS["closed_domain_qa"] if prompt.startswith("Please answer") else ANSWERS["nli"])


def test_search_variants_hide_the_statement_among_the_person_s_other_facts(world):
    rng = random.Random(6)
    relations = PERSON_RELATIONS
    generate_boolq = world_tasks.DIRECT_VARIANTS["closed_domain_qa_search"][1]
    generate_rte = world_tasks.DIRECT_VARIANTS["nli_search"][1]
    places = set()
    for passage, person, claimed in (
            [(r["passage"], r["title"], r["question"]) for r in generate_boolq(world, rng, 200)]
            + [(r["sentence1"], next(p for p in world.people if p in r["sentence1"]), r["sentence2"])
               for r in generate_rte(world, rng, 200)]):
        true_statements = {statement(x.train_statements[0], person, world.object_of(person, x.name)): x
                           for x in relations}
        sentences = [s + "." for s in passage[:-1].split(". ")]
        assert 2 <= len(sentences) <= 3 and all(s in true_statements for s in sentences), passage
        assert len({true_statements[s].name for s in sentences}) == len(sentences)      # distinct relations
        claim = claimed.lower().removeprefix("is it true that ").removesuffix(".")
        about = [i for i, s in enumerate(sentences)
                 if any(claim == statement(true_statements[s].train_statements[w], person, o)[:-1].lower()
                        for w in (0, 1) for o in POOLS[true_statements[s].pool])]
        assert len(about) == 1          # the claim's relation is stated exactly once
        places.add(about[0])
    assert places == {0, 1, 2}          # anywhere in the passage
    assert {r["label"] for r in generate_rte(world, rng, 50)} == {"entailment", "not_entailment"}


def test_bad_tasks_and_missing_worlds_are_named(world, tmp_path):
    with pytest.raises(ValueError, match=r"unknown mini task\(s\) \['boolq'\]"):
        skill_records(world, ("boolq",), 1, seed=0)
    with pytest.raises(FileNotFoundError, match=r"world.json does not exist: build the fact world there first"):
        build_skills(tmp_path)


def test_a_named_skills_file_is_written_beside_the_corpus_and_reserved_names_are_refused(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "world.json").write_text((FACTWORLD / "world.json").read_text())
    (tmp_path / "tasks").symlink_to(FACTWORLD / "tasks")
    path = build_skills(tmp_path, ("reasoning",), 4, seed=0, name="skills_reasoning")
    assert path == tmp_path / "corpus" / "skills_reasoning.jsonl"
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    assert len(texts) == 8                    # each reasoning example twice: with and without the solution
    assert not (tmp_path / "corpus" / "skills.jsonl").exists()
    for bad in ("train", "heldout", "../train", ""):
        with pytest.raises(ValueError, match="skills file name"):
            build_skills(tmp_path, ("reasoning",), 1, seed=0, name=bad)


def test_reasoning_skills_avoid_the_test_questions_in_both_prompt_forms(world):
    excluded = prompts_of_test_sets(FACTWORLD, ("reasoning",))
    test_questions = {r["question"] for r in registry.read_task(FACTWORLD / "tasks", "reasoning")}
    records = skill_records(world, ("reasoning",), 400, seed=7, excluded_prompts=excluded)
    assert not any(question in r["text"] for r in records for question in test_questions)


def _write(root, name, records):
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    (root / "corpus" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_training_batches_mark_the_answer_tokens(world, tmp_path):
    skills = skill_records(world, ("nli",), 3, seed=0)
    plain = [{"text": "Hathio Mafubral was born in Grauden.", "entities": []}]
    for name, records in (("train", plain), ("heldout", plain), ("skills", skills)):
        _write(tmp_path, name, records)
    data = TextCorpusDataModule(tmp_path, TOKENIZER, batch_size=8, generate_factworld=False,
                                train_files=["train", "skills"])
    data.prepare_data()
    data.setup("fit")
    batch = data.train_set[0]
    assert batch["input_ids"].shape[0] == 4 and "answer_mask" not in data.heldout_set[0]
    tokenizer = load_tokenizer(TOKENIZER)
    marked = sorted(tokenizer.decode(ids[mask]).strip() for ids, mask in zip(batch["input_ids"], batch["answer_mask"]))
    golds = sorted(r["text"][r["answer"][0]:] for r in skills)
    assert marked == sorted(["", *golds])              # the plain document marks nothing


def test_a_missing_training_file_names_the_option(tmp_path):
    _write(tmp_path, "train", [{"text": "x"}])
    data = TextCorpusDataModule(tmp_path, TOKENIZER, generate_factworld=False, train_files=["train", "skills"])
    with pytest.raises(FileNotFoundError, match=r"train_files names 'skills'.*build_skills"):
        data.prepare_data()
    with pytest.raises(ValueError, match="distinct corpus files"):
        TextCorpusDataModule(tmp_path, TOKENIZER, train_files=["train", "train"])


def test_answer_loss_matches_a_direct_computation():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], dtype=torch.bool)
    terms = [-torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]] for b, t in ((0, 2), (0, 3), (1, 4))]
    torch.testing.assert_close(answer_loss(logits, ids, mask), torch.stack(terms).mean())


def test_the_answer_weight_adds_the_answer_loss_to_the_training_loss(world, tmp_path):
    skills = skill_records(world, ("closed_domain_qa",), 2, seed=0)
    _write(tmp_path, "train", skills)
    _write(tmp_path, "heldout", skills)
    data = TextCorpusDataModule(tmp_path, TOKENIZER, batch_size=2, generate_factworld=False)
    data.setup("fit")
    batch = data.train_set[0]
    config = {"n_layer": 1, "n_embd": 16, "n_head": 2, "n_inner": 32, "n_positions": 256, "resid_pdrop": 0.0,
              "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    weighted = CausalLMModule(tokenizer=TOKENIZER, model_config=config, answer_weight=3.0)
    weighted.log = lambda *args, **kwargs: None
    lm_loss, terms = weighted(batch)
    logits = weighted.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = answer_loss(logits, batch["input_ids"], batch["answer_mask"])
    torch.testing.assert_close(terms["answer_loss"], expected)
    torch.testing.assert_close(weighted.training_step(batch, 0), lm_loss + 3.0 * expected)
    plain = CausalLMModule(tokenizer=TOKENIZER, model_config=config)          # answer_weight 0: plain text
    assert plain(batch)[1] == {}
