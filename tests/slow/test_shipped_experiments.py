"""The four experiments shipped in configs/experiments/ run end to end (docs/experiments.md): every point of each
grid, as the file gives it (methods, modes, rounds, edit sets, overlays), runs through ``sweep`` and the report
reads them all and draws the experiment's figure. Only the sizes shrink, so the four fit the slow tier: a few
edits per point, a few examples per downstream task, two edits per batch so that sequential runs take several
steps. docs/results/experiments.md holds the runs at the files' own sizes."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from lit_edit.experiments import cli
from lit_edit.experiments.table import run_folders, tidy_tables
from tests.conftest import ROOT
from tests.unit.experiments.test_experiments_sweep import index_rows

SHRUNK = {
    "side_effects": ({"n": [2, 4]}, {"model.init_args.downstream.subset": 6}),
    "d4s": ({"n": [4, 6]}, {"data.init_args.batch_size": 2, "trainer.eval_every_n_batches": 1}),
    "comeba": ({}, {"data.init_args.n": 4, "data.init_args.batch_size": 2}),
    "diversity": ({}, {"data.init_args.n": 4, "data.init_args.batch_size": 2}),
}
"""Per experiment: the axes whose values shrink, and the options set on top of the file's own."""
FIGURES = {"side_effects": "side_effects.png", "d4s": "d4s.png", "comeba": None, "diversity": "diversity.png"}


def shrunk_experiment(name: str, folder) -> tuple[dict, object]:
    """The shipped experiment ``name`` with :data:`SHRUNK`'s sizes, written into ``folder``."""
    experiment = yaml.safe_load((ROOT / "configs/experiments" / f"{name}.yaml").read_text())
    axes, options = SHRUNK[name]
    for axis, values in axes.items():
        experiment["axes"][axis]["values"] = values
    experiment["options"].update(options)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return experiment, path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHRUNK))
def test_a_shipped_experiment_runs_every_point_and_reports_them(name, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    experiment, path = shrunk_experiment(name, tmp_path)
    out, report = tmp_path / "runs", tmp_path / "report"
    assert cli.sweep(str(path), str(out), progress=False) == 0
    rows = index_rows(out)
    points = 1
    for axis in experiment["axes"].values():
        points *= len(axis["values"])
    assert len(rows) == points and all(row["status"] == "done" for row in rows.values()), rows

    cli.report([str(out)], str(report))
    edits, downstream = tidy_tables(run_folders([out]))
    assert edits["run"].nunique() == points
    for row in rows.values():              # every point edited the number of requests it asked for
        metrics = json.loads((out / row["folder"] / "metrics.json").read_text())
        asked = int(row["n"]) if "n" in row else experiment["options"]["data.init_args.n"]
        assert metrics["n_edits"] == asked, row["point"]
        assert metrics["final"]["token"]["reliability"] is not None, row["point"]
    methods = set(experiment["axes"]["method"]["values"])
    text = (report / "README.md").read_text()
    assert all(f"| {method} |" in text for method in edits["method"].unique()), text
    assert set(edits["axis_method"]) == methods
    if FIGURES[name]:
        assert (report / FIGURES[name]).stat().st_size > 10_000
    if name == "side_effects":
        post = downstream[downstream["stage"] == "post"]
        assert set(post["task"]) == set(experiment_tasks()) and post["run"].nunique() == points
    if name == "comeba":                   # Table 1 and Table 2: each method single-round and consecutive
        modes = edits.drop_duplicates("run").groupby("axis_method")["mode"].agg(frozenset)
        assert modes.map(lambda m: m == {"batch-single", "batch-sequential"}).all(), modes
    if name == "diversity":
        assert set(pd.Series(edits["data"]).str.rsplit("-", n=1).str[0]) == {
            "one_relation", "all_relations", "subject_pairs", "shared_subjects"}


def experiment_tasks() -> list[str]:
    overlay = yaml.safe_load((ROOT / "configs/edit/downstream/factworld.yaml").read_text())
    return overlay["model"]["init_args"]["downstream"]["tasks"]
