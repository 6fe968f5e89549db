"""The downstream evaluation command on the fact-world mini tasks: the CLI run equals a direct computation."""

import json

from lit_edit.cli import LitEditCLI
from lit_edit.models import load_model_and_tokenizer
from lit_edit.tasks.evaluate import score_records
from lit_edit.tasks.formats import read_task
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import get_task

from .conftest import FACTWORLD, ROOT


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
