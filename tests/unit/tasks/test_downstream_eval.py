"""The downstream evaluation command on the fact-world mini tasks: the CLI run equals a direct computation."""

import json

import pytest

from lit_edit.cli import LitEditCLI
from lit_edit.models import load_model_and_tokenizer
from lit_edit.tasks.evaluate import score_records
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import get_task, read_task
from tests.conftest import FACTWORLD, ROOT


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_eval_config_scores_every_task_in_both_modes(tmp_path):
    cli = LitEditCLI(args=["--config", str(ROOT / "configs/eval/tasks.yaml"),
                           "--model.init_args.name_or_path", str(ROOT / "checkpoints/factworld-gpt2"),
                           "--data.init_args.root", str(FACTWORLD / "tasks"), "--data.init_args.subset", "24",
                           "--data.init_args.batch_size", "7", "--model.init_args.results_dir", str(tmp_path / "run"),
                           "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path),
                           "--trainer.enable_progress_bar", "false"], run=False)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    written = json.loads((tmp_path / "run" / "downstream.json").read_text())
    assert set(written["scores"]) == set(cli.datamodule.tasks) and len(cli.datamodule.tasks) == 8
    assert all(set(modes) == {"paper", "corrected"} for modes in written["scores"].values())
    assert written["data"]["examples"]["sentiment"] == 24
    # the same 24 sentiment records scored directly, in one batch, give the same numbers
    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints/factworld-gpt2"))
    pairs = cli.datamodule.datasets["sentiment"]
    assert [i for i, _ in pairs] == sorted(i for i, _ in pairs)                    # file order kept
    records = read_task(FACTWORLD / "tasks", "sentiment", reference_view=True)
    chosen = [records[i] for i, _ in pairs]
    metric = DownstreamMetric("sentiment")
    metric.update(score_records(model, tokenizer, get_task("sentiment"), chosen, after_edit=False), range(24))
    assert written["scores"]["sentiment"] == metric.compute()
    assert written["scores"]["sentiment"]["corrected"]["acc_all"] >= 0.7            # the model knows this task


def test_stop_string_ends_generation_early_with_the_same_text():
    """The fact-world model ends its answers with EOS, so the stop string here is the full stop of its summaries."""
    from lit_edit.generation import generate_greedy

    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints/factworld-gpt2"))
    prompts = [q.prompt for r in read_task(FACTWORLD / "tasks", "summarization")[:12]
               for q in get_task("summarization").queries(r)]
    full = generate_greedy(model, tokenizer, prompts, 25, batch_size=5)
    stopped = generate_greedy(model, tokenizer, prompts, 25, batch_size=5, stop=".")
    assert [g.continuation for g in stopped] == [g.continuation.split(".")[0] for g in full]
    assert all(s.new_ids == f.new_ids[:len(s.new_ids)] for s, f in zip(stopped, full))
    assert sum("." in g.continuation for g in full) >= 3          # the stop does occur, so rows end early
    assert sum(len(g.new_ids) for g in stopped) < sum(len(g.new_ids) for g in full)


def test_loglik_scores_equal_a_direct_forward_pass():
    import torch

    from lit_edit.tasks.evaluate import option_nlls

    model, tokenizer = load_model_and_tokenizer(str(ROOT / "checkpoints/factworld-gpt2"))
    task = get_task("closed_domain_qa")
    records = read_task(FACTWORLD / "tasks", "closed_domain_qa")[:6]
    nlls = option_nlls(model, tokenizer, task, records, batch_size=4)
    for record, values in zip(records, nlls):
        prompt, options = task.options(record)
        for option, value in zip(options, values):
            prompt_ids = tokenizer(prompt)["input_ids"]
            ids = prompt_ids + tokenizer(" " + option, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                log_probs = model(torch.tensor([ids])).logits[0].log_softmax(-1)
            direct = -sum(log_probs[i - 1, ids[i]].item() for i in range(len(prompt_ids), len(ids)))
            assert value == pytest.approx(direct, rel=1e-4, abs=1e-5)
    scores = score_records(model, tokenizer, task, records, after_edit=False, choice_loglik=True)
    metric = DownstreamMetric("closed_domain_qa")
    metric.update(scores, range(len(records)))
    gold = [0 if r["answer"] else 1 for r in records]
    expected = sum(min(range(2), key=lambda i: v[i]) == g for v, g in zip(nlls, gold)) / len(records)
    assert metric.compute()["loglik"]["acc_all"] == pytest.approx(expected)
