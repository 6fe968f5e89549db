"""Inputs longer than the model's context (the tiny GPT-2 has 128 positions). An edit record is refused before any
work, naming file[index], record, field, length and limit, and no run folder is made; a downstream example is left
out and counted per task (metrics.json and the console), or refused with ``strict_length``."""

from __future__ import annotations

import json

import lightning as L
import pytest

from lit_edit.data import EditDataModule
from lit_edit.editing.values import ValueHyperparams
from lit_edit.editors import FT, ROME
from lit_edit.loops import EditTrainer
from lit_edit.models import load_model_and_tokenizer
from lit_edit.modules import DownstreamEvalModule, EditingModule
from lit_edit.tasks.datamodule import DownstreamDataModule
from lit_edit.tasks.suite import DownstreamConfig
from tests.conftest import FACTWORLD

LIMIT = 128   # n_positions of the tiny GPT-2 (tests/conftest.py)


def _records(n: int = 3) -> list[dict]:
    return json.loads((FACTWORLD / "zsre" / "zsre_factworld.json").read_text())[:n]


def _stretch(record: dict, tokenizer, length: int) -> dict:
    """``record`` with filler before its question, so that the question + " " + its new target is ``length`` tokens
    (counted here with the tokenizer alone)."""
    measure = lambda src: len(tokenizer(src)["input_ids"]) + len(tokenizer(" " + record["alt"])["input_ids"])
    words = []
    while measure(" ".join(words + [record["src"]])) < length:
        words.append("so")
    assert measure(" ".join(words + [record["src"]])) == length
    return {**record, "src": " ".join(words + [record["src"]])}


def _run(folder, edits, tmp_path, editor, **options):
    module = EditingModule(str(folder), editor, families=("token",), results_dir=str(tmp_path / "run"),
                           cache_dir=str(tmp_path / "cache"), monitor_docs=2, **options)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(path=str(edits), batch_size=1), verbose=False)


def _write_edits(tmp_path, records) -> tuple:
    path = tmp_path / "edits.json"
    path.write_text(json.dumps(records))
    return path, path.read_bytes()


def test_an_edit_record_past_the_context_is_refused_before_any_work(tiny_gpt2_dir, tmp_path):
    _, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    records = _records()
    records[1] = _stretch(records[1], tokenizer, LIMIT + 5)
    path, content = _write_edits(tmp_path, records)
    with pytest.raises(ValueError, match=rf"edits.json\[1\]: record zsre:1 field 'prompt \+ target_new' is "
                                         rf"{LIMIT + 5} tokens long, past the model's limit of {LIMIT} positions; "
                                         r"shorten the record or leave it out"):
        _run(tiny_gpt2_dir, path, tmp_path, FT(layers=[1], steps=1))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()   # no folder, no work
    assert path.read_bytes() == content


def test_the_context_templates_of_the_editor_count_against_the_limit(tiny_gpt2_dir, tmp_path):
    """The record fits the scorers exactly (128 tokens), but ROME puts a context template before the edit prompt."""
    _, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    records = _records(2)
    records[0] = _stretch(records[0], tokenizer, LIMIT)
    path, _ = _write_edits(tmp_path, records)
    with pytest.raises(ValueError, match=rf"edits.json\[0\]: record zsre:0 field 'prompt \+ target_new' is {LIMIT} "
                                         r"tokens long, past the model's limit of \d+ positions \(\d+ of its 128 kept "
                                         r"for rome's context templates\)"):
        _run(tiny_gpt2_dir, path, tmp_path, ROME(layer=1, mom2_adjustment=False, values=ValueHyperparams(steps=2)))
    assert not (tmp_path / "run").exists()


SENTIMENT_HEADER = "sentence\tlabel\n"


def _tasks(tmp_path) -> str:
    root = tmp_path / "tasks"
    root.mkdir()
    long = " ".join(["a very long review that goes on"] * 40)
    (root / "test-SentimentAnalysis.tsv").write_text(SENTIMENT_HEADER + f"good\t1\nbad\t0\n{long}\t1\nfine\t1\n")
    return str(root)


def test_downstream_examples_past_the_context_are_left_out_and_counted(tiny_gpt2_dir, tmp_path, capsys):
    path, _ = _write_edits(tmp_path, _records(1))
    downstream = DownstreamConfig(root=_tasks(tmp_path), tasks=["sentiment"], bootstrap_resamples=0)
    _run(tiny_gpt2_dir, path, tmp_path, FT(layers=[1], steps=1), downstream=downstream)
    setup = json.loads((tmp_path / "run" / "metrics.json").read_text())["downstream_setup"]
    assert setup["too_long"] == {"sentiment": 1}
    assert setup["examples"] == {"sentiment": 3}
    assert ("downstream examples longer than the model's 128 positions are left out (counted as too_long in the "
            "results; strict_length: true refuses them): sentiment 1 of 4") in capsys.readouterr().out


def test_strict_length_refuses_a_downstream_example_before_any_work(tiny_gpt2_dir, tmp_path):
    path, _ = _write_edits(tmp_path, _records(1))
    root = _tasks(tmp_path)
    downstream = DownstreamConfig(root=root, tasks=["sentiment"], bootstrap_resamples=0, strict_length=True)
    with pytest.raises(ValueError, match=r"task 'sentiment': example 2 of .*test-SentimentAnalysis.tsv needs \d+ "
                                         r"positions, the model has 128 \(strict_length is true"):
        _run(tiny_gpt2_dir, path, tmp_path, FT(layers=[1], steps=1), downstream=downstream)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_the_evaluation_job_leaves_long_examples_out_and_counts_them(tiny_gpt2_dir, tmp_path):
    module = DownstreamEvalModule(str(tiny_gpt2_dir), results_dir=str(tmp_path / "eval"))
    data = DownstreamDataModule(root=_tasks(tmp_path), tasks=["sentiment"])
    L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False).test(
        module, datamodule=data, verbose=False)
    written = json.loads((tmp_path / "eval" / "downstream.json").read_text())
    assert written["data"]["too_long"] == {"sentiment": 1}
    assert written["data"]["examples"] == {"sentiment": 3}
