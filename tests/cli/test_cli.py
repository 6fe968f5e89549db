"""The LightningCLI end to end, in subprocesses (as a user runs it)."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from lit_edit.factworld.build import WorldSettings, build
from lit_edit.models import load_model_and_tokenizer
from lit_edit.run_summary import summary_text
from tests.conftest import ROOT
from tests.edit_configs import method_config, registered_methods


def run_main(*args, check=True):
    result = subprocess.run([sys.executable, "main.py", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"main.py {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def test_help_lists_fit_and_test_only():
    out = run_main("--help").stdout
    assert "fit" in out and "test" in out
    assert "validate" in out  # Lightning's own; no project-specific subcommands are added
    assert "fit" in run_main("fit", "--help").stdout


def test_print_config_round_trips(tmp_path):
    printed = run_main("test", "--config", "configs/edit/default.yaml", "--print_config").stdout
    config = yaml.safe_load(printed)
    assert config["model"]["init_args"]["name_or_path"] == "checkpoints/factworld-gpt2"
    assert config["model"]["init_args"]["editor"]["class_path"] == "lit_edit.editors.MEMIT"
    saved = tmp_path / "printed.yaml"
    saved.write_text(printed)
    assert yaml.safe_load(run_main("test", "--config", str(saved), "--print_config").stdout) == config


def test_config_typo_is_named():
    result = run_main("fit", "--config", "configs/fit/factworld.yaml", "--model.init_args.lrr", "0.1", check=False)
    assert result.returncode != 0
    assert "lrr" in result.stderr


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    return build(tmp_path_factory.mktemp("world"), WorldSettings(n_people=20, n_edits=10, n_task_train=4,
                                                                 n_task_test=4, vocab_size=400))


def _fit_config(folder, world, architecture, model_config):
    tokenizer = str(world / ("tokenizer-llama" if architecture == "llama" else "tokenizer-gpt2"))
    config = {
        "seed_everything": 0,
        "trainer": {"max_epochs": 1, "accelerator": "cpu", "devices": 1, "limit_val_batches": 2,
                    "default_root_dir": str(folder), "enable_progress_bar": False,
                    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                               "init_args": {"save_dir": str(folder / "logs"), "name": "tiny"}},
                    "callbacks": [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                                   "init_args": {"dirpath": str(folder / "ckpt"), "save_last": True}}]},
        "model": {"class_path": "lit_edit.modules.CausalLMModule",
                  "init_args": {"tokenizer": tokenizer, "architecture": architecture, "model_config": model_config,
                                "export_dir": str(folder / "export"), "warmup_steps": 5}},
        "data": {"class_path": "lit_edit.data.TextCorpusDataModule",
                 "init_args": {"root": str(world), "tokenizer_path": tokenizer, "batch_size": 32}},
    }
    path = folder / "fit.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("architecture,model_config", [
    ("gpt2", {"n_layer": 2, "n_embd": 32, "n_head": 2, "n_positions": 256}),
    ("llama", {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 48}),
])
def test_fit_exports_a_loadable_model_and_resumes(tmp_path, tiny_world, architecture, model_config):
    config = _fit_config(tmp_path, tiny_world, architecture, model_config)
    run_main("fit", "--config", str(config))
    model, tokenizer = load_model_and_tokenizer(str(tmp_path / "export"))
    assert model.config.model_type == architecture
    first = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert first["epoch"] == 0

    # Interrupted after epoch 1; a restart with --ckpt_path continues from it instead of starting over.
    run_main("fit", "--config", str(config), "--trainer.max_epochs", "2", "--ckpt_path",
             str(tmp_path / "ckpt" / "last.ckpt"), "--model.init_args.overwrite_export", "true")   # its own export
    second = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    assert second["epoch"] == 1
    assert second["global_step"] == 2 * first["global_step"]
    assert (tmp_path / "logs").exists()


def test_the_main_job_edits_and_writes_the_run_folder(tmp_path):
    """configs/edit/default.yaml, shortened to two batches of 5: the folder holds everything docs/evaluation.md asks."""
    folder = tmp_path / "run"
    result = run_main("test", "--config", "configs/edit/default.yaml", "--trainer.logger.init_args.save_dir",
                      str(tmp_path / "logs"), "--trainer.enable_progress_bar", "false", "--data.init_args.n", "10",
                      "--data.init_args.batch_size", "5", "--model.init_args.results_dir", str(folder),
                      "--model.init_args.statistics.cache_dir", str(tmp_path / "stats"),
                      "--model.init_args.cache_dir", str(tmp_path / "cache"),
                      "--model.init_args.downstream.subset", "12")
    metrics = json.loads((folder / "metrics.json").read_text())
    # the run ends with its table (lit_edit/run_summary.py), read from the metrics.json it wrote
    assert result.stdout.rstrip().endswith(summary_text(metrics, folder)), result.stdout[-3000:]
    for line in ("  token ", "  open_domain_qa    corrected em ", "warnings: none", f"  {folder / 'metrics.json'}"):
        assert f"\n{line}" in result.stdout, line
    assert metrics["method"] == "memit" and metrics["n_edits"] == 10 and metrics["seconds"] > 0
    assert metrics["mode"] == {"batch_size": 5, "rollback": False, "name": "batch-sequential"}
    for when in ("pre", "final"):
        assert set(metrics[when]) == {"token", "probability", "generation"}
        for family in metrics[when].values():
            assert {"reliability", "generality", "locality", "portability"} <= set(family)
    # the edits hold (measured, one thread: token reliability 0.70 after pre-edit 0.10, generation 0.70 after 0.00,
    # token locality 1.00): an editor that does nothing stays at the pre-edit level
    token, pre = metrics["final"]["token"], metrics["pre"]["token"]
    assert token["reliability"] >= 0.5 and metrics["final"]["generation"]["reliability"] >= 0.5, metrics["final"]
    assert metrics["immediate"]["token"]["reliability"] >= pre["reliability"] + 0.4, metrics
    assert token["locality"] >= 0.8 and metrics["monitors"]["final"]["perplexity"] > 1
    steps = (folder / "steps.csv").read_text().splitlines()
    header = steps[0].split(",")
    updates = [i for i, name in enumerate(header) if name.startswith("update_fro/")]
    assert len(updates) == 2 and all(float(row.split(",")[i]) > 0 for row in steps[1:] for i in updates)
    assert (folder / "steps.csv").read_text().count("\n") == 3        # header + two edit steps
    assert yaml.safe_load((folder / "config.yaml").read_text())["data"]["init_args"]["n"] == 10   # the resolved config
    assert {p.name for p in (folder / "plots").iterdir()} >= {"edit_metrics.png", "monitors.png", "downstream.png"}
    assert len(metrics["downstream"]) == 8 and metrics["downstream_setup"]["examples"]["ner"] == 12
    assert all(set(entry) == {"pre", "post", "delta", "delta_ci95"} for entry in metrics["downstream"].values())
    assert metrics["downstream"]["sentiment"]["pre"]["corrected"]["acc_all"] > 0.5
    assert list((tmp_path / "logs").rglob("config.yaml")) and list((tmp_path / "logs").rglob("events.out.tfevents*"))


METHODS = registered_methods(accumulating=False)
MODES = {"single": (1, True), "instance_sequential": (1, False), "batch_single": (10, True),
         "batch_sequential": (10, False)}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_config_composes_with_every_mode(method):
    """Each fact-world method config × each mode overlay resolves to the mode it names (in process, no run)."""
    from lit_edit.cli import LitEditCLI

    for mode, (batch_size, rollback) in MODES.items():
        cli = LitEditCLI(args=[*method_config(method), "--config", str(ROOT / f"configs/edit/modes/{mode}.yaml"),
                               "--trainer.logger", "false"], run=False)
        assert cli.datamodule.hparams.batch_size == batch_size and cli.model.hparams.rollback is rollback, mode
        assert cli.model.editor.name == method
