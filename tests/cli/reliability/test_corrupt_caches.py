"""Damaged cache files (truncated statistics safetensors, a pre-edit reference or pre-edit downstream score file
that is not JSON) are named in a warning and computed again; the rewritten file equals the one first written and
the numbers of the run equal those of a run that found the cache intact."""

from __future__ import annotations

import json

import pytest
import torch

from lit_edit.data import EditDataModule
from lit_edit.editors import FT
from lit_edit.loops import EditTrainer
from lit_edit.models import architecture_of, load_model_and_tokenizer
from lit_edit.modules import EditingModule
from lit_edit.stats import MissingStatisticsError, StatisticsConfig, second_moments_for
from lit_edit.tasks.suite import DownstreamConfig
from tests.conftest import FACTWORLD

CORPUS = FACTWORLD / "corpus" / "heldout.jsonl"


def test_damaged_statistics_are_named_and_computed_again(tiny_gpt2_dir, tmp_path):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    arch = architecture_of(model)
    config = StatisticsConfig(corpus=str(CORPUS), cache_dir=str(tmp_path / "stats"), max_tokens=2000)
    first = second_moments_for(model, tokenizer, arch, "tiny", [0, 1], config, progress=False)
    files = {layer: next((tmp_path / "stats").rglob(f"layer{layer}_float64.safetensors")) for layer in (0, 1)}
    written = {layer: path.read_bytes() for layer, path in files.items()}
    untouched = files[1].stat().st_mtime_ns
    files[0].write_bytes(written[0][: len(written[0]) // 2])
    with pytest.warns(UserWarning, match=rf"cached statistics {files[0]} cannot be read \(SafetensorError: .*\); it is "
                                         "a cache, so it is computed again and rewritten"):
        again = second_moments_for(model, tokenizer, arch, "tiny", [0, 1], config, progress=False)
    assert all(torch.equal(first[layer], again[layer]) for layer in (0, 1))
    assert files[0].read_bytes() == written[0]
    assert files[1].read_bytes() == written[1] and files[1].stat().st_mtime_ns == untouched


def test_damaged_statistics_are_named_when_computing_is_not_allowed(tiny_gpt2_dir, tmp_path):
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    arch = architecture_of(model)
    config = StatisticsConfig(corpus=str(CORPUS), cache_dir=str(tmp_path / "stats"), max_tokens=2000)
    second_moments_for(model, tokenizer, arch, "tiny", [0], config, progress=False)
    path = next((tmp_path / "stats").rglob("layer0_float64.safetensors"))
    path.write_bytes(b"{}")
    config.compute_missing = False
    with pytest.warns(UserWarning, match=rf"cached statistics {path} cannot be read"), \
            pytest.raises(MissingStatisticsError, match=r"no cached statistics for layers \[0\]"):
        second_moments_for(model, tokenizer, arch, "tiny", [0], config, progress=False)


def _run(folder, tmp_path, name: str) -> dict:
    tasks = tmp_path / "tasks"
    if not tasks.exists():
        tasks.mkdir()
        (tasks / "test-SentimentAnalysis.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\nfine\t1\n")
        (tmp_path / "edits.json").write_text(json.dumps(json.loads((FACTWORLD / "zsre" / "zsre_factworld.json")
                                                                   .read_text())[:2]))
    module = EditingModule(str(folder), FT(layers=[1], steps=1), families=("token",), monitor_docs=2,
                           results_dir=str(tmp_path / name), cache_dir=str(tmp_path / "cache"),
                           downstream=DownstreamConfig(root=str(tasks), tasks=["sentiment"], bootstrap_resamples=0))
    trainer = EditTrainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, datamodule=EditDataModule(path=str(tmp_path / "edits.json")), verbose=False)
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_damaged_pre_edit_caches_are_named_and_computed_again(tiny_gpt2_dir, tmp_path):
    first = _run(tiny_gpt2_dir, tmp_path, "first")
    reference = next((tmp_path / "cache" / "references").glob("*.json"))
    downstream = next((tmp_path / "cache" / "downstream").glob("sentiment-*.json"))
    written = {reference: reference.read_bytes(), downstream: downstream.read_bytes()}
    reference.write_text('{"locality_tokens": {"zsre:0": [')
    downstream.write_text("not json")
    with pytest.warns(UserWarning) as caught:
        second = _run(tiny_gpt2_dir, tmp_path, "second")
    messages = [str(w.message) for w in caught]
    for path, what in ((reference, "cached pre-edit reference"), (downstream, "cached pre-edit scores of 'sentiment'")):
        assert any(m.startswith(f"{what} {path} cannot be read (JSONDecodeError: ") and
                   m.endswith("it is a cache, so it is computed again and rewritten") for m in messages), messages
        assert path.read_bytes() == written[path]
    assert second["pre"] == first["pre"] and second["final"] == first["final"]
    assert second["downstream"]["sentiment"]["pre"] == first["downstream"]["sentiment"]["pre"]
    assert second["downstream_setup"]["pre_from_cache"] == [] and first["downstream_setup"]["pre_from_cache"] == []
