"""Edit-set and task files that are empty or not in the expected form are refused naming the file and what was
expected (an empty list or file, another encoding, a nesting no edit set has); JSON Lines and a UTF-8 byte-order mark
are read like the JSON list. An empty task file stops the run before any work instead of leaving the task out."""

from __future__ import annotations

import json

import pytest

from lit_edit.data import EditDataModule
from lit_edit.data.edits import read_edit_set
from lit_edit.editors import FT
from lit_edit.loops import EditTrainer
from lit_edit.modules import EditingModule
from lit_edit.tasks.suite import DownstreamConfig, DownstreamSuite
from tests.conftest import FACTWORLD

ZSRE = FACTWORLD / "zsre" / "zsre_factworld.json"
EXPECTED = r"expected a JSON list of edit records \(ZsRE or CounterFact\) or JSON Lines \(one record per line\)"


def _records(n: int = 3) -> list[dict]:
    return json.loads(ZSRE.read_text())[:n]


@pytest.mark.parametrize("name, content, problem", [
    ("empty.json", b"", rf"empty.json is empty; {EXPECTED}"),
    ("blank.json", b"  \n\n", rf"blank.json is empty; {EXPECTED}"),
    ("none.json", b"[]", rf"none.json holds no records; {EXPECTED}"),
    ("latin.json", '[{"src": "Où est né Zoë?"}]'.encode("latin-1"),
     rf"latin.json: not UTF-8 text \(byte 0xf9 at offset 11\); save it as UTF-8 \({EXPECTED}\)"),
    ("deep.json", b"[" * 100_000 + b"]" * 100_000, rf"deep.json: nested too deeply to be an edit set; {EXPECTED}"),
    ("broken.jsonl", b'{"src": "a"}\n{"src": \n', r"broken.jsonl:2: not valid JSON \(.*\); expected a JSON list"),
], ids=["empty", "blank", "empty-list", "latin-1", "deeply-nested", "broken-json-lines"])
def test_edit_set_files_that_are_not_lists_of_records_are_named(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=problem):
        read_edit_set(path)
    assert path.read_bytes() == content


@pytest.mark.parametrize("name, encode", [
    ("edits.jsonl", lambda records: "".join(json.dumps(r) + "\n" for r in records).encode()),
    ("edits-lines.json", lambda records: "\n".join(json.dumps(r) for r in records).encode()),
    ("edits-bom.json", lambda records: b"\xef\xbb\xbf" + json.dumps(records).encode()),
], ids=["jsonl", "json-lines-in-a-json-file", "byte-order-mark"])
def test_json_lines_and_a_byte_order_mark_read_like_the_json_list(tmp_path, name, encode):
    records = _records()
    (tmp_path / name).write_bytes(encode(records))
    (tmp_path / "list.json").write_text(json.dumps(records))
    read, expected = read_edit_set(tmp_path / name), read_edit_set(tmp_path / "list.json")
    assert read.requests == expected.requests and read.indices == (0, 1, 2)


@pytest.mark.parametrize("task, file", [("open_domain_qa", "test-OpenDomainQA.jsonl"), ("ner", "test-NER.txt")])
def test_an_empty_task_file_is_refused_naming_it(tmp_path, task, file):
    (tmp_path / file).write_text("")
    with pytest.raises(ValueError, match=rf"task '{task}': .*{file} holds no examples; fix the file or leave the task "
                                         "out of the tasks option"):
        DownstreamSuite(DownstreamConfig(root=str(tmp_path), tasks=[task]))


def test_a_task_file_whose_every_line_is_skipped_is_refused(tmp_path):
    (tmp_path / "test-SentimentAnalysis.tsv").write_text("sentence\tlabel\nonly one column\n")
    with pytest.raises(ValueError, match=r"test-SentimentAnalysis.tsv holds no examples \(1 malformed lines skipped\)"):
        DownstreamSuite(DownstreamConfig(root=str(tmp_path), tasks=["sentiment"], on_bad_line="skip"))


def test_an_editing_run_with_an_empty_task_file_stops_before_any_work(tiny_gpt2_dir, tmp_path):
    (tmp_path / "edits.json").write_text(json.dumps(_records(1)))
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "test-NER.txt").write_text("")
    module = EditingModule(str(tiny_gpt2_dir), FT(layers=[1], steps=1), families=("token",),
                           results_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), monitor_docs=2,
                           downstream=DownstreamConfig(root=str(tmp_path / "tasks"), tasks=["ner"]))
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(ValueError, match=r"task 'ner': .*test-NER.txt holds no examples"):
        trainer.test(module, datamodule=EditDataModule(path=str(tmp_path / "edits.json")), verbose=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
