"""Downstream tasks inside an editing run: pre (cached), periodic and post scores equal direct computations on the
same models; delta, bootstrap interval, TensorBoard scalars and the plot are written."""

from __future__ import annotations

import json

import pytest
import torch

from lit_edit.data import EditDataModule
from lit_edit.editors import FT
from lit_edit.loops import EditTrainer
from lit_edit.models import load_model_and_tokenizer
from lit_edit.modules import EditingModule
from lit_edit.tasks.evaluate import score_records
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import get_task
from lit_edit.tasks.suite import DownstreamConfig, load_task_records
from lit_edit.tasks.summary import TaskScores, bootstrap_delta, nested_delta
from tests.conftest import FACTWORLD, ROOT

MODEL = str(ROOT / "checkpoints" / "factworld-gpt2")
TASKS = ["sentiment", "open_domain_qa", "ner"]


def direct(model, tokenizer, task: str, after_edit: bool, subset: int = 16) -> dict:
    pairs = load_task_records(FACTWORLD / "tasks", task, subset, seed=0)
    metric = DownstreamMetric(task)
    metric.update(score_records(model, tokenizer, get_task(task), [r for _, r in pairs], after_edit),
                  [i for i, _ in pairs])
    return metric.compute()


def edit_run(tmp_path, rollback: bool, logger=False, every: int = 1, folder: str = "run", periodic: bool = True):
    editor = FT(layers=[0, 1], loss="target_new", lr=0.2, steps=8, norm_constraint=None)
    module = EditingModule(MODEL, editor, rollback=rollback, families=("token",), results_dir=str(tmp_path / folder),
                           cache_dir=str(tmp_path / "cache"), monitor_text=None,
                           downstream=DownstreamConfig(root=str(FACTWORLD / "tasks"), tasks=TASKS, subset=16,
                                                       periodic=periodic, bootstrap_resamples=200))
    data = EditDataModule(root=str(FACTWORLD), n=6, batch_size=2)
    trainer = EditTrainer(accelerator="cpu", logger=logger, enable_progress_bar=False, enable_model_summary=False,
                          eval_pre=False, eval_every_n_batches=every, default_root_dir=str(tmp_path))
    trainer.test(module, datamodule=data, verbose=False)
    return module, data, json.loads((tmp_path / folder / "metrics.json").read_text())


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_sequential_run_scores_tasks_before_during_and_after(tmp_path):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(str(tmp_path / "tb"), name="run")
    module, _, metrics = edit_run(tmp_path, rollback=False, logger=logger, every=2)
    fresh, tokenizer = load_model_and_tokenizer(MODEL)
    tasks = metrics["downstream"]
    assert list(tasks) == TASKS
    for task in TASKS:
        assert tasks[task]["pre"] == direct(fresh, tokenizer, task, after_edit=False)
        assert tasks[task]["post"] == direct(module.model, tokenizer, task, after_edit=True)
        assert tasks[task]["delta"] == nested_delta(tasks[task]["pre"], tasks[task]["post"])
        low, high = tasks[task]["delta_ci95"]["corrected"][get_task(task).primary["corrected"]]
        value = tasks[task]["delta"]["corrected"][get_task(task).primary["corrected"]]
        assert low <= value <= high
    # the edits hurt something: otherwise this test could not tell pre from post
    assert any(tasks[t]["delta"]["corrected"][get_task(t).primary["corrected"]] != 0 for t in TASKS)
    # 3 batches, every 2: before, after batch 2, and after the last batch (scored in finish_run)
    assert [p["n_edits"] for p in metrics["downstream_curve"]] == [0, 4, 6]
    setup = metrics["downstream_setup"]
    assert setup["examples"] == {t: 16 for t in TASKS} and setup["post_n_edits"] == 6
    assert setup["pre_from_cache"] == [] and setup["skipped_lines"] == []
    run_json = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run_json["downstream"]["records_sha256"] == setup["records_sha256"] and len(setup["records_sha256"]) == 3
    assert (tmp_path / "run" / "plots" / "downstream.png").stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logger.log_dir))
    events.Reload()
    steps = [e.step for e in events.Scalars("downstream/sentiment/corrected/acc_all")]
    assert steps == [0, 4, 6]
    assert "downstream_delta/ner/corrected/macro_f1" in events.Tags()["scalars"]


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_pre_edit_scores_come_from_the_cache_the_second_time(tmp_path):
    _, _, first = edit_run(tmp_path, rollback=False, every=0)
    cached = sorted((tmp_path / "cache" / "downstream").glob("*.json"))
    assert len(cached) == len(TASKS)
    # poison one cached file: a second run must read it (and report what the cache holds)
    data = json.loads(cached[0].read_text())
    data["rows"] = [[0.0] * len(row) for row in data["rows"]]
    cached[0].write_text(json.dumps(data))
    _, _, second = edit_run(tmp_path, rollback=False, every=0, folder="again")     # a run of its own
    assert sorted(second["downstream_setup"]["pre_from_cache"]) == sorted(TASKS)
    poisoned = data["task"]
    assert second["downstream"][poisoned]["pre"] != first["downstream"][poisoned]["pre"]
    assert [p["n_edits"] for p in second["downstream_curve"]] == [0, 6]


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_rollback_run_scores_the_last_steps_edits_before_rolling_back(tmp_path):
    module, data, metrics = edit_run(tmp_path, rollback=True, every=0)
    assert metrics["downstream_setup"]["post_model"].startswith("the model holding the last step's edits")
    # the model is restored; applying the last batch again (FT is deterministic on CPU) gives the scored model
    module.editor.edit(module.model, module.tokenizer, module.arch, data.requests[-2:])
    for task in TASKS:
        assert metrics["downstream"][task]["post"] == direct(module.model, module.tokenizer, task, after_edit=True)


@pytest.mark.parametrize("rollback", [False, True])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_tasks_join_the_periodic_schedule_only_with_periodic(tmp_path, rollback):
    """One schedule, ``trainer.eval_every_n_batches: 2`` over 3 batches: the edit metrics' periodic point (none with
    rollback) and, with ``downstream.periodic``, a downstream point after batch 2; the last point is the model after
    the last batch (with rollback: holding its edits)."""
    _, _, alone = edit_run(tmp_path, rollback=rollback, every=2, periodic=False, folder="alone")
    _, _, joined = edit_run(tmp_path, rollback=rollback, every=2, periodic=True, folder="joined")
    for metrics in (alone, joined):
        assert [p["n_edits"] for p in metrics["periodic"]] == ([] if rollback else [4])
    assert [p["n_edits"] for p in alone["downstream_curve"]] == [0, 6]
    assert [p["n_edits"] for p in joined["downstream_curve"]] == [0, 4, 6]
    assert joined["downstream"] == alone["downstream"]           # the same pre and post scores


def test_bootstrap_interval_has_the_width_of_a_binomial_difference():
    """Pre: every example right; post: each right with probability ½. The 95 % interval of the accuracy change
    is about −0.5 ± 1.96·√(0.25/n)."""
    n = 400
    counters = get_task("sentiment").counters
    column = {name: i for i, name in enumerate(counters)}
    pre = torch.zeros(n, len(counters), dtype=torch.float64)
    pre[:, column["n"]] = pre[:, column["correct"]] = pre[:, column["parsed"]] = 1
    post = pre.clone()
    post[:, column["correct"]] = (torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.5).double()
    interval = bootstrap_delta(TaskScores("sentiment", list(range(n)), pre),
                               TaskScores("sentiment", list(range(n)), post), resamples=2000)
    low, high = interval["corrected"]["acc_all"]
    accuracy_after = post[:, column["correct"]].mean().item()
    delta = accuracy_after - 1
    half_width = 1.96 * (accuracy_after * (1 - accuracy_after) / n) ** 0.5
    assert low < delta < high
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    assert interval["corrected"]["parse_rate"] == [0.0, 0.0]        # unchanged: a zero-width interval


def test_pre_edit_cache_is_kept_apart_per_dtype(tiny_gpt2_dir, tmp_path):
    """A bfloat16 model's pre-edit scores are not read from the float32 model's cache entry (nor the reverse)."""
    from lit_edit.models import load_model, load_tokenizer
    from lit_edit.tasks.suite import DownstreamSuite

    suite = DownstreamSuite(DownstreamConfig(root=str(FACTWORLD / "tasks"), tasks=["sentiment"], subset=2))
    tokenizer = load_tokenizer(str(tiny_gpt2_dir))
    identity = "the-same-model"
    for dtype, expect_cached in (("float32", []), ("bfloat16", []), ("float32", ["sentiment"]),
                                 ("bfloat16", ["sentiment"])):
        model = load_model(str(tiny_gpt2_dir), dtype=dtype)
        _, cached = suite.pre_edit(model, tokenizer, identity, tmp_path / "cache")
        assert cached == expect_cached, dtype
