"""The experiments shipped in configs/experiments/ (docs/experiments.md): each loads, names config files and edit
sets that exist, and gives the grid its header describes."""

import pytest

from lit_edit.experiments.grid import load_experiment
from lit_edit.experiments.sweep import point_arguments
from tests.conftest import ROOT

EXPERIMENTS = sorted((ROOT / "configs/experiments").glob("*.yaml"))
GRID_SIZES = {"example": 4, "side_effects": 6 * 2 * 2, "d4s": 2 * 3, "comeba": 6 * 2, "diversity": 2 * 8}


def test_the_papers_experiments_are_shipped():
    assert {path.stem for path in EXPERIMENTS} >= set(GRID_SIZES)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda path: path.stem)
def test_a_shipped_experiment_loads_and_every_point_names_files_that_exist(path, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    experiment = load_experiment(path)
    points = experiment.points()
    assert len(points) == GRID_SIZES[path.stem]
    assert len({point.name for point in points}) == len(points)
    for point in points:
        args = point_arguments(experiment, point, tmp_path / point.name)
        configs = [args[i + 1] for i, arg in enumerate(args) if arg == "--config"]
        assert configs and all((ROOT / config).is_file() for config in configs), point.name
        edit_sets = [args[i + 1] for i, arg in enumerate(args) if arg == "--data.init_args.path"]
        assert all((ROOT / "data/factworld" / edit_set).is_file() for edit_set in edit_sets), point.name


REAL_MODELS = ("gpt2-xl", "gpt-j-6b", "llama-2-7b", "llama-2-13b")


@pytest.mark.parametrize("model", REAL_MODELS)
@pytest.mark.parametrize("name", ["side_effects", "d4s", "comeba"])
def test_a_papers_experiment_takes_a_real_model_with_one_setting(name, model, monkeypatch, tmp_path):
    """``--set model=<folder>`` (and ``tasks=paper`` for the downstream tasks) points every config at the real
    model's: its model config, its method configs and the real test sets' overlay, all files that exist."""
    monkeypatch.chdir(ROOT)
    settings = {"model": model, **({"tasks": "paper"} if name == "side_effects" else {})}
    experiment = load_experiment(ROOT / "configs/experiments" / f"{name}.yaml", settings)
    assert experiment.variables == settings
    points = experiment.points()
    assert len(points) == GRID_SIZES[name]
    for point in points:
        args = point_arguments(experiment, point, tmp_path / point.name)
        configs = [args[i + 1] for i, arg in enumerate(args) if arg == "--config"]
        assert configs[0] == f"configs/edit/models/{model}.yaml"
        assert all(config.startswith((f"configs/edit/methods/{model}/", "configs/edit/modes/", "configs/edit/models/",
                                      "configs/edit/downstream/paper.yaml")) for config in configs), configs
        assert all((ROOT / config).is_file() for config in configs), point.name
