"""Bad inputs that no other test file covers: each gives an error (or warning) whose message
names the record, field, file and line, option or module at fault (the inventory: ``tests/bad_inputs.md``)."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

from lit_edit.data import EditDataModule
from lit_edit.data.edits import read_edit_set
from lit_edit.data.mend import MendDataModule
from lit_edit.editing.accumulated import AccumulatedKeys
from lit_edit.editing.alphaedit import alphaedit_update
from lit_edit.editing.comeba import ComebaHyperparams, apply_comeba
from lit_edit.editing.d4s import D4sHyperparams
from lit_edit.editing.hook_layers import HookBank
from lit_edit.editing.least_squares import UpdateSolveError
from lit_edit.editing.mend_checkpoint import MendCheckpointError, load_mend_checkpoint, read_mend_description
from lit_edit.editing.requests import EditRequest, EditRequestError
from lit_edit.editing.values import ValueHyperparams, ValueTarget
from lit_edit.editors import FT, KN, MEMIT, MEND, ROME, EditContext
from lit_edit.generation import Generation
from lit_edit.loops import EditTrainer
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.models.loading import ModelLoadError, load_tokenizer
from lit_edit.modules import EditingModule
from lit_edit.modules.downstream import DownstreamEvalModule
from lit_edit.modules.mend import MendModule
from lit_edit.stats import StatisticsConfig, load_corpus_texts, second_moments_for
from lit_edit.tasks import formats, registry
from lit_edit.tasks.datamodule import DownstreamDataModule
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import TASKS
from lit_edit.tasks.suite import DownstreamConfig
from lit_edit.tasks.summary import TaskScores
from tests.conftest import FACTWORLD, ROOT
from tests.edit_configs import method_config

SHIPPED_MEND = ROOT / "checkpoints" / "mend-factworld-gpt2"
SENTIMENT = "sentence\tlabel\ngood\t1\n"


@pytest.fixture(scope="module")
def tiny(tiny_gpt2_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    return tiny_gpt2_dir, model, tokenizer, architecture_of(model)


# ---------------------------------------------------------------------------------------- model and config


def test_a_config_typo_in_a_nested_editing_option_is_named(capsys):
    from lit_edit.cli import LitEditCLI

    with pytest.raises(SystemExit) as exit_info:
        LitEditCLI(args=["test", *method_config("memit"),
                         "--model.init_args.editor.init_args.layerz", "[1]", "--print_config"])
    assert exit_info.value.code != 0
    assert "Option 'layerz' is not accepted" in capsys.readouterr().err


def test_a_missing_tokenizer_folder_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match=r"could not load a tokenizer from '.*no-tokenizer-here'"):
        load_tokenizer(str(tmp_path / "no-tokenizer-here"))


# ----------------------------------------------------------------------------------- the editing core


@pytest.mark.parametrize("editor", [lambda: ROME(layer=9), lambda: MEMIT(layers=[1, 9]), lambda: FT(layers=[9]),
                                    lambda: KN(layers=[9])], ids=["rome", "memit", "ft", "kn"])
def test_an_editor_layer_out_of_range_is_refused_before_any_work(tiny, editor):
    folder, model, tokenizer, arch = tiny
    with pytest.raises(IndexError, match=r"layer 9 is out of range: the gpt2 model has layers 0\.\.2"):
        editor().setup(model, tokenizer, arch, EditContext(str(folder), progress=False))


def test_edit_set_options_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"edit set .*nowhere.json does not exist"):
        read_edit_set(tmp_path / "nowhere.json")
    with pytest.raises(ValueError, match=r"format 'mend' is not one of \('auto', 'zsre', 'counterfact'\)"):
        read_edit_set(tmp_path / "nowhere.json", "mend")
    (tmp_path / "odd.json").write_text('[{"question": "q"}]')
    with pytest.raises(ValueError, match=r"odd.json: cannot tell the edit-set format .*set format to 'zsre' or"):
        read_edit_set(tmp_path / "odd.json")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        EditDataModule(batch_size=0)
    data = EditDataModule(root=str(FACTWORLD), start=5000)
    with pytest.raises(ValueError, match=r"zsre_factworld.json: the selection start=5000 .* holds no edit requests"):
        data.setup("test")


@pytest.mark.parametrize("option, value, problem", [
    ("monitor_docs", 0, "model.monitor_docs must be >= 1, got 0"),
    ("eval_batch_size", 0, "model.eval_batch_size must be >= 1, got 0"),
    ("max_new_tokens", -1, "model.max_new_tokens must be >= 1, got -1"),
    ("stop_perplexity_factor", -1.0, "model.stop_perplexity_factor must be > 1"),
    ("stop_perplexity_factor", 1.0, "model.stop_perplexity_factor must be > 1"),
])
def test_editing_run_options_are_named_before_the_model_is_loaded(tmp_path, option, value, problem):
    with pytest.raises(ValueError, match=problem):
        EditingModule(str(tmp_path / "not-loaded"), FT(), **{option: value})


@pytest.mark.parametrize("field, value, problem", [
    ("dtype", "float64x", "model.statistics.dtype must be float64 or float32 .* got 'float64x'"),
    ("max_tokens", 0, r"model.statistics.max_tokens must be >= 1 \(null: the whole corpus\), got 0"),
    ("max_length", 0, "model.statistics.max_length must be >= 1, got 0"),
])
def test_statistics_options_are_named(field, value, problem):
    with pytest.raises(ValueError, match=problem):
        StatisticsConfig(**{field: value})


def test_an_empty_statistics_corpus_and_a_missing_monitor_text_are_named(tiny, tmp_path):
    _, model, tokenizer, arch = tiny
    empty = tmp_path / "empty.txt"
    empty.write_text("   \n\n")
    with pytest.raises(ValueError, match=r"statistics corpus 'empty' \(0 documents\) produced no tokens"):
        second_moments_for(model, tokenizer, arch, "tiny", [0],
                           StatisticsConfig(corpus=str(empty), cache_dir=str(tmp_path / "stats")), progress=False)
    with pytest.raises(FileNotFoundError, match=f"model.monitor_text {tmp_path / 'gone.jsonl'} does not exist"):
        load_corpus_texts(tmp_path / "gone.jsonl", "model.monitor_text")


def test_a_missing_editor_or_an_unknown_metric_family_is_named_before_the_model_is_loaded(tmp_path):
    with pytest.raises(ValueError, match=r"EditingModule needs an editor \(e.g. class_path: lit_edit.editors.MEMIT\)"):
        EditingModule(str(tmp_path / "not-loaded"), None)
    with pytest.raises(ValueError, match=r"unknown edit-metric families \['tokens'\]; choose from \('token', "):
        EditingModule(str(tmp_path / "not-loaded"), FT(), families=["tokens"])


def test_statistics_corpus_problems_name_the_file_line_and_column(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"statistics corpus .*missing.jsonl does not exist"):
        load_corpus_texts(tmp_path / "missing.jsonl")
    (tmp_path / "corpus.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match=r"corpus.jsonl:2: expected a JSON object with a 'text' field"):
        load_corpus_texts(tmp_path / "corpus.jsonl")
    from datasets import Dataset

    Dataset.from_dict({"body": ["a document"]}).save_to_disk(str(tmp_path / "on-disk"))
    with pytest.raises(ValueError, match=r"on-disk has no 'text' column \(columns: \['body'\]\)"):
        load_corpus_texts(tmp_path / "on-disk")


def test_skipped_records_are_counted_and_reported_in_the_run_record(tiny, tmp_path):
    folder = tiny[0]
    records = json.loads((FACTWORLD / "zsre" / "zsre_factworld.json").read_text())[:3]
    records[1]["alt"] = ""
    (tmp_path / "edits.json").write_text(json.dumps(records))
    module = EditingModule(str(folder), FT(layers=[1], loss="target_new", steps=1, norm_constraint=None),
                           families=("token",), results_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                           monitor_docs=2)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(path=str(tmp_path / "edits.json"), batch_size=2), verbose=False)
    edits = json.loads((tmp_path / "run" / "run.json").read_text())["edits"]
    assert edits["skipped"] == [["zsre:1", "empty 'alt' (no new target)"]]
    assert edits["order"] == ["zsre:0", "zsre:2"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["n_edits"] == 2


def test_requests_sharing_a_subject_in_a_batch_are_counted_warned_and_separable(tiny, tmp_path):
    records = json.loads((FACTWORLD / "zsre" / "zsre_factworld.json").read_text())
    first = records[0]
    other = next(r for r in records[1:] if r["subject"] != first["subject"])
    same = next(r for r in records[1:] if r["subject"] == first["subject"])   # another fact about the same person
    (tmp_path / "edits.json").write_text(json.dumps([first, same, other, other]))   # batches of 2: [A, A], [B, B]
    data = EditDataModule(path=str(tmp_path / "edits.json"), batch_size=2)
    with pytest.warns(UserWarning, match=r"edits.json: 2 requests in 2 of 2 batches name a subject another request "
                      r"of their batch names .*data.init_args.distinct_subjects true reorders"):
        data.setup("test")
    module = EditingModule(str(tiny[0]), FT(layers=[1], loss="target_new", steps=1, norm_constraint=None),
                           families=("token",), results_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"),
                           monitor_docs=2)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=data, verbose=False)
    steps = (tmp_path / "run" / "steps.csv").read_text().splitlines()
    column = steps[0].split(",").index("shared_subjects")
    assert [line.split(",")[column] for line in steps[1:]] == ["1", "1"]
    separated = EditDataModule(path=str(tmp_path / "edits.json"), batch_size=2, distinct_subjects=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        separated.setup("test")   # [A, B], [A, B]: no warning left to give
    assert separated.order == ["zsre:0", "zsre:2", "zsre:1", "zsre:3"]


# ------------------------------------------------------------------------------------ downstream tasks


@pytest.mark.parametrize(("task", "name", "text", "problem"), [
    ("open_domain_qa", "test-OpenDomainQA.jsonl", '{"question": "q", "answer": ["a"], "output": ["o"]}\n'
     '{"question": "q", "answer": ["a"]}\n', r"test-OpenDomainQA.jsonl:2: missing field\(s\) \['output'\]"),
    ("closed_domain_qa", "test-ClosedDomainQA.jsonl", '{"question": "q", "answer": true, "passage": "p"}\n'
     '{"question": "q", "answer": tru\n', r"test-ClosedDomainQA.jsonl:2: not valid JSON"),
    ("summarization", "test-summarization.json", '[{"summary": "s", "dialogue": "d"}, {"summary": "s"}]',
     r"test-summarization.json\[1\]: missing field\(s\) \['dialogue'\]"),
    ("summarization", "test-summarization.json", '{"summary": "s", "dialogue": "d"}',
     r"test-summarization.json: expected a JSON list of dialogues, found dict"),
    ("summarization", "test-summarization.json", '[{"summary": "s"', r"test-summarization.json: not valid JSON"),
    ("summarization", "test-summarization.json", '[{"summary": null, "dialogue": "d"}]',
     r"test-summarization.json\[0\]: field 'summary' must be a string with more than dots .*, found None"),
], ids=["nq-field", "boolq-json", "samsum-field", "samsum-not-a-list", "samsum-json", "samsum-gold"])
def test_malformed_lines_of_the_other_formats_name_file_and_line(tmp_path, task, name, text, problem):
    (tmp_path / name).write_text(text)
    with pytest.raises(formats.TaskFormatError, match=problem):
        registry.read_task(tmp_path, task)


def _dialogue(answer="A", options=("a", "b", "c", "d")):
    return json.dumps({"answers": answer, "options": list(options), "article": "m : hi .", "id": "x"})


def test_malformed_dialogue_files_are_named(tmp_path):
    folder = tmp_path / "test-dialogue"
    folder.mkdir()
    with pytest.raises(formats.TaskFormatError, match=r"test-dialogue: no dev_\*.txt files"):
        registry.read_task(tmp_path, "dialogue")
    (folder / "dev_1.txt").write_text(_dialogue())
    (folder / "dev_2.txt").write_text(_dialogue(answer="E"))
    with pytest.raises(formats.TaskFormatError, match=r"dev_2.txt: needs 4 options and an answer in A-D"):
        registry.read_task(tmp_path, "dialogue")
    (folder / "dev_2.txt").write_text("{not json")
    with pytest.raises(formats.TaskFormatError, match=r"dev_2.txt: not valid JSON"):
        registry.read_task(tmp_path, "dialogue")
    (folder / "dev_2.txt").unlink()
    (folder / "dev_copy.txt").write_text(_dialogue())
    with pytest.raises(formats.TaskFormatError, match=r"dev_copy.txt: expected a name dev_<number>.txt"):
        registry.read_task(tmp_path, "dialogue")
    bad = formats.BadLines("skip")
    assert len(registry.read_task(tmp_path, "dialogue", bad=bad)) == 1 and len(bad.skipped) == 1


@pytest.mark.parametrize(("task", "name", "good", "bad_line", "problem"), [
    ("sentiment", "test-SentimentAnalysis.tsv", SENTIMENT, "bad\tpositive\n",
     r"test-SentimentAnalysis.tsv:3: field 'label' must be 0 or 1, found 'positive'"),
    ("nli", "test-NLI.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n", "1\ta\tb\tcontradiction\n",
     r"test-NLI.tsv:3: field 'label' must be 'entailment' or 'not_entailment', found 'contradiction'"),
    ("closed_domain_qa", "test-ClosedDomainQA.jsonl", '{"question": "q", "answer": true, "passage": "p"}\n',
     '{"question": "q", "answer": "maybe", "passage": "p"}\n',
     r"test-ClosedDomainQA.jsonl:2: field 'answer' must be true or false, found 'maybe'"),
    ("open_domain_qa", "test-OpenDomainQA.jsonl", '{"question": "q", "answer": ["a"], "output": ["o"]}\n',
     '{"question": "q", "answer": "Paris", "output": ["o"]}\n',
     r"test-OpenDomainQA.jsonl:2: field 'answer' must be a non-empty list of strings, found 'Paris'"),
    ("reasoning", "test-reasoning.jsonl", '{"question": "q", "answer": "so\\n#### 1,250"}\n',
     '{"question": "q", "answer": "so\\n#### many"}\n',
     r"test-reasoning.jsonl:2: field 'answer' must be a solution ending in '#### <number>', found 'so\\n#### many'"),
], ids=["sentiment", "nli", "closed_domain_qa", "open_domain_qa", "reasoning"])
def test_a_gold_answer_the_scorer_cannot_use_names_file_line_and_field(tmp_path, task, name, good, bad_line, problem):
    """Before: a non-numeric label or answer failed in the scorer after generation, a string NQ answer was scored
    letter by letter, and an unknown BoolQ / RTE label was silently scored as the negative class."""
    (tmp_path / name).write_text(good + bad_line)
    with pytest.raises(formats.TaskFormatError, match=problem):
        registry.read_task(tmp_path, task)
    bad = formats.BadLines("skip")
    assert len(registry.read_task(tmp_path, task, bad=bad)) == 1 and len(bad.skipped) == 1


def test_skipped_task_lines_are_listed_in_the_run_setup(tmp_path):
    (tmp_path / "test-SentimentAnalysis.tsv").write_text(SENTIMENT + "no label here\nbad\t2\n")
    data = DownstreamDataModule(root=str(tmp_path), tasks=["sentiment"], on_bad_line="skip")
    data.setup("test")
    described = data.describe()
    assert described["examples"] == {"sentiment": 1}
    assert [line.split("test-SentimentAnalysis.tsv")[1][:3] for line in described["skipped_lines"]] == [":3:", ":4:"]


def test_an_unparseable_answer_counts_as_wrong_and_lowers_the_parse_rate():
    task, record = TASKS["sentiment"], {"sentence": "good", "label": "1"}
    unparseable = task.score(record, {"corrected": Generation([], [], " banana", " banana")}, after_edit=False)
    parsed = task.score(record, {"corrected": Generation([], [], " positive", " positive")}, after_edit=False)
    assert (unparseable["correct"], unparseable["parsed"]) == (0, 0) and (parsed["correct"], parsed["parsed"]) == (1, 1)
    metric = DownstreamMetric("sentiment")
    metric.update([unparseable, parsed], [0, 1])
    assert metric.compute()["corrected"] == {"acc_all": 0.5, "acc_parsed": 1.0, "parse_rate": 0.5}


def test_downstream_options_are_named(tmp_path):
    with pytest.raises(KeyError, match=r"unknown downstream task 'translation'; known: \['closed_domain_qa', "):
        DownstreamConfig(tasks=["sentiment", "translation"])
    with pytest.raises(KeyError, match=r"unknown task 'translation'; known: \['closed_domain_qa', "):
        registry.read_task(tmp_path, "translation")
    with pytest.raises(ValueError, match="downstream.subset must be a positive number of examples or null, got 0"):
        DownstreamConfig(subset=0)
    with pytest.raises(ValueError, match="downstream.bootstrap_resamples must be >= 0, got -5"):
        DownstreamConfig(bootstrap_resamples=-5)
    with pytest.raises(ValueError, match=r"on_bad_line must be one of \('error', 'skip'\), got 'ignore'"):
        DownstreamConfig(on_bad_line="ignore")
    with pytest.raises(ValueError, match="subset must be a positive number of examples or null, got -1"):
        DownstreamDataModule(subset=-1)


def test_cached_pre_edit_scores_with_other_counters_are_refused_naming_both():
    with pytest.raises(ValueError, match=r"cached scores of 'sentiment' have counters \['n', 'correct'\], the task now "
                                         r"has \['n', 'correct', 'parsed', "):
        TaskScores.from_dict({"task": "sentiment", "counters": ["n", "correct"], "indices": [], "rows": [],
                              "ordered": {}})


# ------------------------------------------------------------------------------------------ seed methods


def test_a_fixed_gate_threshold_that_never_fires_is_reported_per_layer(tiny_gpt2_dir):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    model, arch, layers = model.double(), architecture_of(model), (0, 1)
    m = arch.inner_size(model)
    keys = torch.randn(m, 4 * m, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    accumulated = {layer: AccumulatedKeys(3.0 * keys @ keys.T / (4 * m)) for layer in layers}
    hp = ComebaHyperparams(layers=layers, preservation_weight=3.0, alpha=1e9, dynamic_threshold=False,
                           values=ValueHyperparams(steps=2, lr=0.05, clamp_norm_factor=100.0))
    bank = HookBank(model, arch, layers, hp.alpha)
    targets = [ValueTarget("{} was born in", "Alda Venkor", "Port Ivory"),
               ValueTarget("{} plays the", "Omar Teel", "violin")]
    with pytest.warns(UserWarning, match=r"the hook gate misses edit prompts of this batch \(max z below α\) at "
                                         r"layers \{0: 2, 1: 2\}: those edits will not show; the threshold is fixed"):
        _, step = apply_comeba(model, tokenizer, arch, targets, hp, (("{}",),), accumulated, bank)
    assert step.missed == {0: 2, 1: 2} and step.thresholds == {0: 1e9, 1: 1e9}
    bank.remove()


def test_non_finite_keys_or_residuals_of_the_sequential_methods_name_the_layer():
    nan_keys = torch.tensor([[1.0], [float("nan")], [0.0]], dtype=torch.float64)
    with pytest.raises(UpdateSolveError, match="layer 4: the keys contain NaN or inf"):
        AccumulatedKeys(torch.eye(3, dtype=torch.float64), where="layer 4").add(nan_keys)
    with pytest.raises(UpdateSolveError, match="layer 4: the accumulated matrix is not positive semi-definite"):
        AccumulatedKeys(-torch.eye(3, dtype=torch.float64), where="layer 4").inverse()
    with pytest.raises(UpdateSolveError, match="layer 2: the residuals or keys contain NaN or inf"):
        alphaedit_update(torch.ones(2, 1), nan_keys, torch.eye(3), torch.zeros(3, 3), 1.0, where="layer 2")


def test_d4s_and_kn_options_are_named():
    with pytest.raises(ValueError, match=r"unknown D4S residual rule 'average'; choose from \('recompute', "):
        D4sHyperparams(residual="average")
    with pytest.raises(ValueError, match=r"KN threshold τ must be in \[0, 1\], got 2"):
        KN(threshold=2)
    with pytest.raises(ValueError, match=r"KN sharing_ratio p must be in \(0, 1\], got 0"):
        KN(sharing_ratio=0)
    with pytest.raises(ValueError, match="KN needs steps >= 1 and batch_size >= 1, got 0 and 256"):
        KN(steps=0)
    with pytest.raises(ValueError, match="KN max_neurons must be >= 1 or None, got 0"):
        KN(max_neurons=0)
    with pytest.raises(ValueError, match=r"KN embedding must be one of .*, got 'hidden'"):
        KN(embedding="hidden")


# -------------------------------------------------------------------------------------------- MEND


@pytest.fixture
def mend_copy(tmp_path):
    if not SHIPPED_MEND.exists():
        pytest.skip("the shipped MEND editor is trained by configs/fit/mend_factworld.yaml")
    return shutil.copytree(SHIPPED_MEND, tmp_path / "mend")


def test_a_folder_that_is_not_a_readable_mend_checkpoint_is_named(mend_copy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is not a MEND checkpoint: it needs mend.json and "
                                                r"mend.safetensors"):
        read_mend_description(tmp_path / "empty")
    meta_text = (mend_copy / "mend.json").read_text()
    meta = json.loads(meta_text)
    (mend_copy / "mend.json").write_text(meta_text[:40])
    with pytest.raises(MendCheckpointError, match=r"mend/mend.json is not valid JSON"):
        read_mend_description(mend_copy)
    (mend_copy / "mend.json").write_text(json.dumps({**meta, "format": "easyedit"}))
    with pytest.raises(MendCheckpointError, match=r"mend.json has format 'easyedit', expected 'lit-edit-mend/1'"):
        read_mend_description(mend_copy)
    (mend_copy / "mend.json").write_text(json.dumps({**meta, "network": {**meta["network"], "rank": 7}}))
    with pytest.raises(MendCheckpointError, match=r"mend: mend.safetensors does not hold the network mend.json "
                                                  r"describes"):
        load_mend_checkpoint(mend_copy)
    (mend_copy / "mend.json").write_text(meta_text)
    (mend_copy / "mend.safetensors").write_bytes(b"half a file")
    with pytest.raises(MendCheckpointError, match=r"mend/mend.safetensors is not a readable safetensors file"):
        load_mend_checkpoint(mend_copy)


def test_a_mend_checkpoint_for_other_weights_of_the_same_shapes_warns(mend_copy):
    model_dir = ROOT / "checkpoints" / "factworld-gpt2"
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.weight.mul_(1.01)       # a fine-tuned or edited base
    with pytest.warns(UserWarning, match=r"was trained for 'checkpoints/factworld-gpt2' \(gpt2, layers \[1, 2, 3\]\); "
                                         r"'elsewhere' has the same shapes but other weights"):
        MEND(checkpoint=str(mend_copy)).setup(model, tokenizer, architecture_of(model),
                                              EditContext("elsewhere", progress=False))


def test_mend_training_options_are_named(tiny_gpt2_dir):
    with pytest.raises(ValueError, match=r"edit_loss_on 'paraphrase' is not one of \('prompt', 'rephrase', 'both'\)"):
        MendModule(str(tiny_gpt2_dir), edit_loss_on="paraphrase")
    with pytest.raises(IndexError, match=r"layer 3 is out of range: the gpt2 model has layers 0\.\.2"):
        MendModule(str(tiny_gpt2_dir), layers=[1, 3], rank=4)
    with pytest.raises(ValueError, match=r"MEND module 'up' is neither 'ffn_in', 'ffn_out' nor a template"):
        MendModule(str(tiny_gpt2_dir), layers=[1], modules=["up"], rank=4)
    with pytest.raises(ValueError, match=r"MEND module transformer.h.1.mlp.c_up \(from modules "
                                         r"\['transformer.h.\{\}.mlp.c_up'\]\) does not exist in '.*tiny-gpt2-single"):
        MendModule(str(tiny_gpt2_dir), layers=[1], modules=["transformer.h.{}.mlp.c_up"], rank=4)
    module = MendModule(str(tiny_gpt2_dir), layers=[1], rank=4)
    with pytest.raises(EditRequestError, match=r"record fw:3 field 'locality': is empty: MEND's locality loss needs"):
        module.edit_losses([EditRequest("{} was born in", "Alda Venkor", "Port Ivory", record_id="fw:3")])


def test_mend_training_data_slices_are_checked():
    with pytest.raises(ValueError, match="val_batch_size must be >= 1, got 0"):
        MendDataModule(val_batch_size=0)
    data = MendDataModule(train_start=0, train_stop=500, val_start=400)
    with pytest.raises(ValueError, match=r"the training slice \[0:500\] and the validation slice \[400:None\] of "
                                         r"zsre/zsre_factworld.json overlap"):
        data.setup("fit")
    data = MendDataModule(val_start=5000)
    with pytest.raises(ValueError, match=r"zsre_factworld.json: the validation slice \[5000:None\] holds no edit"):
        data.setup("fit")


# ------------------------------------------------------------------------------------ long runs, options


def test_a_negative_evaluation_interval_is_refused():
    with pytest.raises(ValueError, match=r"trainer.eval_every_n_batches must be >= 0 \(0 = never\), got -1"):
        EditTrainer(logger=False, eval_every_n_batches=-1)


def test_resuming_a_run_that_is_not_an_editing_run_is_refused(tiny_gpt2_dir, tmp_path):
    (tmp_path / "test-SentimentAnalysis.tsv").write_text(SENTIMENT)
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                          resume_from=str(tmp_path))
    with pytest.raises(ValueError, match="trainer.resume_from is set, but DownstreamEvalModule is not an editing run"):
        trainer.test(DownstreamEvalModule(str(tiny_gpt2_dir), results_dir=str(tmp_path / "run")),
                     datamodule=DownstreamDataModule(root=str(tmp_path), tasks=["sentiment"]), verbose=False)



def test_strategies_that_wrap_the_whole_module_are_refused_naming_the_one_to_use(tmp_path):
    """Lightning's FSDP (and DeepSpeed) wrap the module the editing code reads weights from; the error points to
    the sharded-editing strategy. (Lightning refuses FSDP on CPU before the module sees it, so the module is asked
    directly, as the trainer would on GPUs.)"""
    from types import SimpleNamespace

    from lightning.pytorch.strategies import FSDPStrategy

    module = EditingModule(str(ROOT / "checkpoints" / "factworld-gpt2"), FT(layers=[1], steps=1),
                           export_model_dir=None, results_dir=str(tmp_path))
    module._trainer = SimpleNamespace(strategy=FSDPStrategy())
    with pytest.raises(ValueError, match=r"trainer.strategy: FSDPStrategy wraps the whole module.*"
                                         r"lit_edit.strategies.ShardedEditingStrategy"):
        module.configure_model()
    module._trainer = SimpleNamespace(strategy=None)
    module.configure_model()   # no device mesh: nothing to shard
    assert module.sharding is None


def test_a_hugging_face_export_of_a_sharded_model_is_refused(tmp_path):
    from types import SimpleNamespace

    module = EditingModule(str(ROOT / "checkpoints" / "factworld-gpt2"), FT(layers=[1], steps=1),
                           export_model_dir=str(tmp_path / "hf"), results_dir=str(tmp_path))
    module._trainer = SimpleNamespace(strategy=None)
    module._device_mesh = object()   # what ModelParallelStrategy sets
    with pytest.raises(ValueError, match="model.export_model_dir=.* with a sharded model: no rank holds the whole"):
        module.configure_model()
