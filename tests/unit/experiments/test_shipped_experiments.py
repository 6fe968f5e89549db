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
