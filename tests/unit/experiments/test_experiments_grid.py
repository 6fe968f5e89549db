"""Experiment files (docs/experiments.md): the grid they expand to, the folder names, the command of each point, and
one message naming the field for each kind of bad file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit_edit.experiments.grid import ExperimentFileError, label_of, load_experiment, option_argument
from lit_edit.experiments.sweep import folder_status, point_arguments
from tests.conftest import ROOT

MODEL = "configs/edit/models/factworld.yaml"
METHODS = {"memit": "configs/edit/methods/factworld/memit.yaml", "rome": "configs/edit/methods/factworld/rome.yaml"}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def in_root(monkeypatch):
    monkeypatch.chdir(ROOT)     # config paths are relative to the folder the sweep runs in


def test_the_grid_is_the_product_of_the_axes_in_order_with_readable_stable_names(tmp_path):
    path = write(tmp_path, {"axes": {"method": {"option": "config", "values": list(METHODS.values())},
                                     "data.init_args.n": [2, 10], "seed_everything": [0, 1]}})
    points = load_experiment(path).points()
    assert [p.name for p in points] == [f"method={m}__n={n}__seed_everything={s}" for m in ("memit", "rome")
                                        for n in (2, 10) for s in (0, 1)]
    assert points[5].values == {"method": METHODS["rome"], "n": 2, "seed_everything": 1}
    assert [p.name for p in load_experiment(path).points()] == [p.name for p in points]    # stable


def test_exclude_drops_matching_points_and_include_adds_new_ones(tmp_path):
    path = write(tmp_path, {"configs": [METHODS["memit"]], "axes": {
        "n": {"option": "data.init_args.n", "values": [2, 4]}, "seed": {"option": "seed_everything", "values": [0, 1]}},
        "exclude": [{"n": 4, "seed": 1}], "include": [{"n": 8, "seed": 0}, {"n": 2, "seed": 0}]})
    assert [p.name for p in load_experiment(path).points()] == ["n=2__seed=0", "n=2__seed=1", "n=4__seed=0",
                                                                "n=8__seed=0"]


def test_labels_are_file_system_safe():
    assert label_of("configs/edit/modes/batch_single.yaml", "config") == "batch_single"
    assert label_of(["token", "probability"]) == "token-probability"
    assert label_of(None) == "null" and label_of(True) == "true"
    assert label_of("a/b c:d") == "a-b-c-d"
    assert option_argument(["token"]) == '["token"]' and option_argument(None) == "null"
    assert option_argument("{folder}/logs", "runs/x") == "runs/x/logs"


def test_a_point_runs_the_base_then_its_configs_then_overlays_then_options_and_resumes_a_saved_state(tmp_path):
    path = write(tmp_path, {"configs": [MODEL, METHODS["memit"]], "overlays": ["configs/edit/downstream/factworld.yaml"],
                            "options": {"model.init_args.families": ["token"], "trainer.logger.init_args.save_dir":
                                        "{folder}/logs"},
                            "axes": {"mode": {"option": "config", "values": ["configs/edit/modes/single.yaml"]},
                                     "data.init_args.n": [3]}, "checkpoint_every_n_batches": 2})
    experiment = load_experiment(path)
    point = experiment.points()[0]
    folder = tmp_path / point.name
    args = point_arguments(experiment, point, folder)
    assert args == ["--config", MODEL, "--config", METHODS["memit"], "--config", "configs/edit/modes/single.yaml",
                    "--config", "configs/edit/downstream/factworld.yaml",
                    "--model.init_args.families", '["token"]', "--trainer.logger.init_args.save_dir",
                    f"{folder}/logs", "--data.init_args.n", "3", "--model.init_args.results_dir", str(folder),
                    "--trainer.checkpoint_every_n_batches", "2"]
    folder.mkdir()
    assert folder_status(folder) == "pending"
    (folder / "steps.csv").write_text("step\n")
    assert folder_status(folder) == "stale"
    (folder / "run_state.pt").write_bytes(b"")
    assert folder_status(folder) == "resumable"
    assert point_arguments(experiment, point, folder)[-2:] == ["--trainer.resume_from", str(folder)]
    (folder / "metrics.json").write_text(json.dumps({"n_edits": 2, "interrupted": {"batches_done": 1}}))
    assert folder_status(folder) == "resumable"            # a partial metrics.json is not a finished run
    (folder / "metrics.json").write_text(json.dumps({"n_edits": 3, "final": {}}))
    assert folder_status(folder) == "done"


BAD_FILES = [
    ({"axes": {"data.init_args.n": [2]}, "configz": []}, "field 'configz' is not known"),
    ({"configs": [METHODS["memit"]]}, "'axes' must be a non-empty mapping"),
    ({"configs": ["configs/nope.yaml"], "axes": {"data.init_args.n": [2]}}, "'configs[0]' names configs/nope.yaml"),
    ({"configs": [METHODS["memit"]], "axes": {"data.init_args.n": []}}, "'axes.data.init_args.n' values is empty"),
    ({"configs": [METHODS["memit"]], "axes": {"--data.n": [1]}}, "'axes.--data.n' option is '--data.n'"),
    ({"configs": [METHODS["memit"]], "axes": {"model.init_args.results_dir": ["a"]}}, "sets model.init_args."),
    ({"configs": [METHODS["memit"]], "axes": {"m": {"option": "config", "values": ["x.yaml"]}}},
     "'axes.m' values[0] is 'x.yaml', which is not a config file"),
    ({"configs": [METHODS["memit"]], "axes": {"data.init_args.n": [2]}, "exclude": [{"seed": 1}]},
     "'exclude[0]' names axis 'seed'"),
    ({"configs": [METHODS["memit"]], "axes": {"data.init_args.n": [2], "seed_everything": [0]},
      "include": [{"n": 4}]}, "'include[0]' gives no value for axis 'seed_everything'"),
    ({"configs": [METHODS["memit"]], "axes": {"data.init_args.n": [2]}, "exclude": [{"n": 2}]},
     "'exclude' leaves no point"),
    ({"configs": [METHODS["memit"]], "axes": {"a.n": [1], "b.n": [2]}}, "give two axes the name 'n'"),
    ({"configs": [METHODS["memit"]], "axes": {"data.init_args.n": [2]}, "checkpoint_every_n_batches": 0},
     "'checkpoint_every_n_batches' is 0"),
]


VARIABLES = {"variables": {"model": "factworld", "n": 3},
             "configs": ["configs/edit/models/{model}.yaml"], "overlays": ["configs/edit/downstream/{model}.yaml"],
             "options": {"trainer.logger.init_args.save_dir": "{folder}/logs/{model}", "data.init_args.n": "{n}"},
             "axes": {"method": {"option": "config", "values": {"memit": "configs/edit/methods/{model}/memit.yaml"}},
                      "seed_everything": [0]}}


def test_variables_fill_every_field_and_a_setting_replaces_the_default(tmp_path):
    experiment = load_experiment(write(tmp_path, VARIABLES))
    assert experiment.variables == {"model": "factworld", "n": "3"}
    assert (experiment.configs, experiment.overlays) == ([MODEL], ["configs/edit/downstream/factworld.yaml"])
    assert experiment.options == {"trainer.logger.init_args.save_dir": "{folder}/logs/factworld",
                                  "data.init_args.n": "3"}
    assert experiment.axes[0].values == (METHODS["memit"],) and experiment.axes[0].labels == ("memit",)
    folder = tmp_path / "p"
    assert f"{folder}/logs/factworld" in point_arguments(experiment, experiment.points()[0], folder)
    real = {**VARIABLES, "overlays": ["configs/edit/downstream/{tasks}.yaml"],
            "variables": {"model": "factworld", "tasks": "factworld"}}
    experiment = load_experiment(write(tmp_path, real), {"model": "gpt2-xl", "tasks": "paper"})
    assert experiment.configs == ["configs/edit/models/gpt2-xl.yaml"]
    assert experiment.overlays == ["configs/edit/downstream/paper.yaml"]
    assert experiment.axes[0].values == ("configs/edit/methods/gpt2-xl/memit.yaml",)
    with pytest.raises(ExperimentFileError, match="'configs/edit/methods/nope/memit.yaml', which is not a config"):
        load_experiment(write(tmp_path, real), {"model": "nope"})


@pytest.mark.parametrize("settings, message", [
    ({"modle": "gpt2-xl"}, "--set modle=...: experiment file .* has no variable 'modle'; its variables are model, n"),
])
def test_a_setting_of_no_variable_is_refused_naming_the_variables(tmp_path, settings, message):
    with pytest.raises(ExperimentFileError, match=message):
        load_experiment(write(tmp_path, VARIABLES), settings)


def test_folder_is_not_a_variable_name(tmp_path):
    with pytest.raises(ExperimentFileError, match="'variables.folder' is taken"):
        load_experiment(write(tmp_path, {**VARIABLES, "variables": {"folder": "x", "model": "factworld", "n": 3}}))


def test_a_sweep_folder_of_other_variables_is_refused(tmp_path):
    from lit_edit.errors import UserError
    from lit_edit.experiments.sweep import Sweep

    path = write(tmp_path, {**VARIABLES, "overlays": []})
    Sweep(load_experiment(path), tmp_path / "out").write_index()
    assert json.loads((tmp_path / "out" / "index.json").read_text())["variables"] == {"model": "factworld", "n": "3"}
    Sweep(load_experiment(path, {"model": "factworld"}), tmp_path / "out")       # the same values: accepted
    with pytest.raises(UserError, match="holds the runs of this experiment with the variables .*'n': '3'.* not "
                                        ".*'n': '5'.*give another --out"):
        Sweep(load_experiment(path, {"n": "5"}), tmp_path / "out")


@pytest.mark.parametrize("data, message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_a_bad_experiment_file_is_refused_naming_the_field(tmp_path, data, message):
    with pytest.raises(ExperimentFileError) as error:
        load_experiment(write(tmp_path, data))
    assert message in str(error.value)
    assert str(tmp_path / "experiment.yaml") in str(error.value)


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_command_line_refuses_a_bad_file_in_one_line(tmp_path):
    path = write(tmp_path, {"configs": [METHODS["memit"]], "axes": {"data.init_args.n": []}})
    result = subprocess.run([sys.executable, "-m", "lit_edit.tools", "sweep", str(path), "--dry_run"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: experiment file {path}: 'axes.data.init_args.n' values is "
                                                  "empty; give at least one value"]


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_dry_run_prints_one_command_per_point_still_to_run(tmp_path):
    out = tmp_path / "out"
    done = out / "method=memit__n=2"
    done.mkdir(parents=True)
    (done / "metrics.json").write_text(json.dumps({"n_edits": 2}))
    (out / "method=rome__n=2").mkdir()
    (out / "method=rome__n=2" / "steps.csv").write_text("step\n")            # an attempt without a run state
    (out / "method=rome__n=4").mkdir()
    (out / "method=rome__n=4" / "run_state.pt").write_bytes(b"state")     # one to resume
    result = subprocess.run([sys.executable, "-m", "lit_edit.tools", "sweep", "configs/experiments/example.yaml",
                             "--out", str(out), "--dry_run"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == f"mkdir -p {out / 'logs'}"
    assert [line.split("--model.init_args.results_dir ")[1].split()[0] for line in lines[1:]] == [
        str(out / name) for name in ("method=memit__n=4", "method=rome__n=2", "method=rome__n=4")]
    assert lines[1].startswith("python main.py test --config configs/edit/models/factworld.yaml "
                               "--config configs/edit/methods/factworld/memit.yaml ")
    assert lines[2].startswith(f"mkdir -p {out / 'set_aside'} && mv {out / 'method=rome__n=2'} "
                               f"{out / 'set_aside' / 'method=rome__n=2.'}")
    assert (" && python main.py test --config configs/edit/models/factworld.yaml "
            "--config configs/edit/methods/factworld/rome.yaml ") in lines[2]
    assert "--trainer.resume_from" not in lines[2]
    assert lines[3].endswith(f"--trainer.resume_from {out / 'method=rome__n=4'} >> {out / 'logs'}/method=rome__n=4.log"
                             " 2>&1")
    assert not (out / "logs").exists() and not (out / "index.json").exists()      # a dry run writes nothing
    assert not (out / "set_aside").exists()


def test_set_takes_name_value_pairs_and_refuses_anything_else():
    from lit_edit.errors import UserError
    from lit_edit.experiments.cli import parse_settings

    assert parse_settings(["model=gpt2-xl", " tasks = paper", "model=llama-2-7b", "empty="]) == {
        "model": "llama-2-7b", "tasks": "paper", "empty": ""}
    assert parse_settings(None) == {}
    for bad in ("model", "=gpt2-xl"):
        with pytest.raises(UserError, match=f"--set {bad}: give a variable and its value as name=value"):
            parse_settings([bad])


def test_the_default_output_folder_names_the_set_values(capsys):
    from lit_edit.experiments.cli import sweep

    sweep("configs/experiments/d4s.yaml", dry_run=True, settings={"model": "gpt2-xl"})
    assert capsys.readouterr().out.splitlines()[0] == "mkdir -p runs/d4s-gpt2-xl/logs"
    sweep("configs/experiments/d4s.yaml", dry_run=True)
    assert capsys.readouterr().out.splitlines()[0] == "mkdir -p runs/d4s/logs"
