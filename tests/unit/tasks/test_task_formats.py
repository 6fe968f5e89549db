"""The readers on the real downstream test sets (skipped where ../shared/data is absent)."""

import pytest

from lit_edit.tasks import dialogue, formats, ner, reasoning, registry
from tests.conftest import SHARED_DATA

TASKS = SHARED_DATA / "tasks"
EXPECTED = {"reasoning": 1319, "nli": 2489, "open_domain_qa": 3610, "closed_domain_qa": 3267, "dialogue": 886,
            "summarization": 818, "ner": 3250, "sentiment": 872}

needs_data = pytest.mark.skipif(not TASKS.exists(), reason=f"real task data not found at {TASKS}")


@needs_data
@pytest.mark.parametrize("task", registry.TASK_NAMES)   # a registered task without a count here fails
def test_real_test_sets_are_read_completely(task):
    records = registry.read_task(TASKS, task)
    assert len(records) == EXPECTED[task]


@needs_data
def test_nli_quotes_are_kept_verbatim():
    records = registry.read_task(TASKS, "nli")
    assert sum(r["sentence1"].startswith('"') or r["sentence2"].startswith('"') for r in records) == 69


@needs_data
def test_ner_sentence_rule_glues_commas_and_periods():
    sentence = registry.read_task(TASKS, "ner")[0]
    text = ner.sentence_text(sentence["tokens"])
    assert " ." not in text and " ," not in text


def test_missing_field_names_file_and_line(tmp_path):
    path = tmp_path / "test-reasoning.jsonl"
    path.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2"}\n')
    with pytest.raises(formats.TaskFormatError, match=r"test-reasoning.jsonl:2: missing field\(s\) \['answer'\]"):
        registry.read_task(tmp_path, "reasoning")


def test_bad_tsv_header_is_named(tmp_path):
    (tmp_path / "test-NLI.tsv").write_text("a\tb\n1\t2\n")
    with pytest.raises(formats.TaskFormatError, match="expected header"):
        registry.read_task(tmp_path, "nli")


def test_missing_task_file_names_the_path_and_lists_what_a_root_holds(tmp_path):
    with pytest.raises(FileNotFoundError, match="test-NER.txt") as error:
        registry.read_task(tmp_path, "ner")
    assert all(name in str(error.value) for name in registry.TASK_FILES.values())


@pytest.mark.parametrize(("task", "name", "text", "kept"), [
    ("reasoning", "test-reasoning.jsonl", '{"question": "q", "answer": "#### 1"}\nnot json\n{"question": "q"}\n'
     '{"question": "q3", "answer": "#### 3"}\n', 2),
    ("sentiment", "test-SentimentAnalysis.tsv", "sentence\tlabel\ngood\t1\nno label here\nbad\t0\n", 2),
    ("ner", "test-NER.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP\nBlackburn NNP B-NP I-PER\n\n"
     "Bonn NNP B-NP B-LOC\n", 2),   # the sentence with the 2-column line is dropped, the other two kept
])
def test_bad_lines_are_fatal_by_default_or_skipped_and_counted(tmp_path, task, name, text, kept):
    (tmp_path / name).write_text(text)
    with pytest.raises(formats.TaskFormatError, match=rf"{name}:\d+:"):
        registry.read_task(tmp_path, task)
    bad = formats.BadLines("skip")
    records = registry.read_task(tmp_path, task, bad=bad)
    assert len(records) == kept
    assert bad.skipped and all(name in message for message in bad.skipped)
    assert len(bad.skipped) == (2 if task == "reasoning" else 1)


def test_bad_line_policy_is_checked():
    with pytest.raises(ValueError, match="on_bad_line"):
        formats.BadLines("ignore")


def test_paper_prompts_are_verbatim():
    record = {"options": ["a", "b", "c", "d"], "article": "m : hi", "answers": "A"}
    assert dialogue.prompt(record) == ("Q: m : hi Which choice is correct? Answer Chioces: (A)a(B)b(C)c(D)d "
                                        "A: Among A through D, the answer is")
    gsm = {"question": "Q?", "answer": "It is 3.\n#### 3"}
    assert reasoning.prompt(gsm) == ("Q: Q? A:Let's think step by step. It is 3.\n Therefore, the answer "
                                      "(arabic numerals) is:")
    assert reasoning.prompt(gsm, hinted=False) == "Q: Q? A:Let's think step by step. Therefore, the answer (arabic numerals) is:"


@needs_data
def test_reference_view_keeps_what_the_reference_harness_saw():
    sentences = registry.read_task(TASKS, "ner", reference_view=True)
    assert len(sentences) == 3466 and sum(s["docstart"] for s in sentences) == 216     # docs/tasks.md §9
    rte = registry.read_task(TASKS, "nli", reference_view=True)
    changed = [r for r in rte if (r["sentence1"], r["sentence2"]) != (r["paper_sentence1"], r["paper_sentence2"])]
    assert len(changed) == 69 and all('"' not in r["paper_sentence1"][:1] for r in changed)   # quotes stripped
