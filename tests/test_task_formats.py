"""The readers on the real downstream test sets (skipped where ../shared/data is absent)."""

import pytest

from lit_edit.tasks import formats, prompts

from .conftest import SHARED_DATA

TASKS = SHARED_DATA / "tasks"
EXPECTED = {"reasoning": 1319, "nli": 2489, "open_domain_qa": 3610, "closed_domain_qa": 3267, "dialogue": 886,
            "summarization": 818, "ner": 3250, "sentiment": 872}

needs_data = pytest.mark.skipif(not TASKS.exists(), reason=f"real task data not found at {TASKS}")


@needs_data
@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_real_test_sets_are_read_completely(task):
    records = formats.read_task(TASKS, task)
    assert len(records) == EXPECTED[task]


@needs_data
def test_nli_quotes_are_kept_verbatim():
    records = formats.read_task(TASKS, "nli")
    assert sum(r["sentence1"].startswith('"') or r["sentence2"].startswith('"') for r in records) == 69


@needs_data
def test_ner_sentence_rule_glues_commas_and_periods():
    sentence = formats.read_task(TASKS, "ner")[0]
    text = prompts.ner_sentence(sentence["tokens"])
    assert " ." not in text and " ," not in text


def test_missing_field_names_file_and_line(tmp_path):
    path = tmp_path / "test-reasoning.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n{"question": "q2"}\n')
    with pytest.raises(formats.TaskFormatError, match=r"test-reasoning.jsonl:2: missing field\(s\) \['answer'\]"):
        formats.read_task(tmp_path, "reasoning")


def test_bad_tsv_header_is_named(tmp_path):
    (tmp_path / "test-NLI.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(formats.TaskFormatError, match="expected header"):
        formats.read_task(tmp_path, "nli")


def test_missing_task_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="test-NER.txt"):
        formats.read_task(tmp_path, "ner")


def test_paper_prompts_are_verbatim():
    record = {"options": ["a", "b", "c", "d"], "article": "m : hi", "answers": "A"}
    assert prompts.dialogue(record) == ("Q: m : hi Which choice is correct? Answer Chioces: (A)a(B)b(C)c(D)d "
                                        "A: Among A through D, the answer is")
    gsm = {"question": "Q?", "answer": "It is 3.\n#### 3"}
    assert prompts.reasoning(gsm) == ("Q: Q? A:Let's think step by step. It is 3.\n Therefore, the answer "
                                      "(arabic numerals) is:")
    assert prompts.reasoning(gsm, hinted=False) == "Q: Q? A:Let's think step by step. Therefore, the answer (arabic numerals) is:"


@needs_data
def test_reference_view_keeps_what_the_reference_harness_saw():
    sentences = formats.read_task(TASKS, "ner", reference_view=True)
    assert len(sentences) == 3466 and sum(s["docstart"] for s in sentences) == 216     # docs/tasks.md §9
    rte = formats.read_task(TASKS, "nli", reference_view=True)
    changed = [r for r in rte if (r["sentence1"], r["sentence2"]) != (r["paper_sentence1"], r["paper_sentence2"])]
    assert len(changed) == 69 and all('"' not in r["paper_sentence1"][:1] for r in changed)   # quotes stripped
