"""The report over runs (docs/experiments.md): run folders written by hand in the formats an editing run writes
(metrics.json, steps.csv, config.yaml; downstream.json of an evaluation), with known numbers; the tidy rows, the
markdown tables and the values the figures draw are checked against them."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lit_edit.experiments.figures import (
    PRE_EDIT_GID,
    d4s_figure,
    diversity_figure,
    methods_figure,
    side_effects_figure,
)
from lit_edit.experiments.markdown import method_table
from lit_edit.experiments.report import write_report
from lit_edit.experiments.table import ReportInputError, tidy_tables
from tests.conftest import ROOT

LAYERS = ("transformer.h.0.mlp.c_proj.weight", "transformer.h.1.mlp.c_proj.weight")
NLI_PRE = 0.7


def scores(reliability: float, generality: float, locality: float) -> dict:
    return {"token": {"reliability": reliability, "generality": generality, "locality": locality,
                      "portability": None}}


def nli(accuracy: float) -> dict:
    return {"corrected": {"acc_all": accuracy, "parse_rate": 1.0}, "paper": {"total_accuracy": accuracy}}


def make_run(folder: Path, method: str, mode: str, n: int, final: tuple, l1: dict[int, tuple], nli_post: float,
             ci: tuple, seed: int = 0, data: str = "zsre/zsre_factworld.json") -> Path:
    """A finished run of ``n`` edits, one step per edit; ``l1[n_edits]`` the ‖W‖₁/numel of each layer after that
    many edits (``l1[0]``: before), ``final`` its final token scores, ``nli_post`` its NLI accuracy after the
    edits with the bootstrap interval ``ci`` of the change."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("# lightning.pytorch==2.6.6\n" + yaml.safe_dump({
        "seed_everything": seed, "trainer": {"eval_every_n_batches": 2},
        "data": {"class_path": "lit_edit.data.EditDataModule",
                 "init_args": {"root": "data/factworld", "path": data, "n": n}},
        "model": {"class_path": "lit_edit.modules.EditingModule",
                  "init_args": {"name_or_path": "checkpoints/factworld-gpt2", "families": ["token"]}}}))
    monitors = {stage: {f"l1_per_numel/{layer}": l1[at][i] for i, layer in enumerate(LAYERS)}
                for stage, at in (("pre", 0), ("final", n))}
    metrics = {
        "method": method, "mode": {"batch_size": 1, "rollback": False, "name": mode}, "n_edits": n,
        "pre": scores(0.1, 0.1, 1.0), "periodic": [{"n_edits": 2, "scores": {"token/reliability": 0.85,
                                                                             "token/locality": 0.95}}],
        "retention": [], "monitors": monitors, "immediate": scores(1.0, 0.8, 0.99), "final": scores(*final),
        "downstream": {"nli": {"pre": nli(NLI_PRE), "post": nli(nli_post), "delta": nli(nli_post - NLI_PRE),
                               "delta_ci95": {"corrected": {"acc_all": list(ci), "parse_rate": [0.0, 0.0]},
                                              "paper": {"total_accuracy": list(ci)}}}},
        "downstream_curve": [{"n_edits": 0, "scores": {"nli": nli(NLI_PRE)}},
                             {"n_edits": n, "scores": {"nli": nli(nli_post)}}],
        "downstream_setup": {"post_n_edits": n}, "seconds": 12.5, "stopped_early": None}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    columns = ["step", "n_edits", "seconds", "value_loss_first", *(f"l1_per_numel/{layer}" for layer in LAYERS),
               "perplexity", "immediate/token/reliability"]
    with open(folder / "steps.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for step in range(n):
            writer.writerow([step, step + 1, 1.5, 3.0, *l1[step + 1], 2.0 + step, 1.0])
    return folder


@pytest.fixture
def sweep_out(tmp_path) -> Path:
    """A sweep's output folder: memit at 2 and 4 edits, rome at 4, and its index."""
    out = tmp_path / "sweep"
    l1 = {0: (0.10, 0.20), 1: (0.11, 0.25), 2: (0.12, 0.30), 3: (0.13, 0.35), 4: (0.14, 0.40)}
    make_run(out / "method=memit__n=2", "memit", "instance-sequential", 2, (0.9, 0.6, 0.95), l1, 0.65,
             (-0.10, 0.02))
    make_run(out / "method=memit__n=4", "memit", "instance-sequential", 4, (0.8, 0.5, 0.9), l1, 0.55, (-0.25, -0.10))
    rome_l1 = {k: (0.10 + 0.05 * k, 0.20) for k in range(5)}
    make_run(out / "method=rome__n=4", "rome", "instance-sequential", 4, (0.7, 0.4, 0.85), rome_l1, 0.7, (0.0, 0.0))
    index = {"experiment": "x.yaml", "axes": [{"name": "method", "option": "config", "labels": ["memit", "rome"]},
                                              {"name": "n", "option": "data.init_args.n", "labels": ["2", "4"]}],
             "points": [{"point": name, "folder": name, "status": "done", "method": name.split("__")[0][7:],
                         "n": name[-1]} for name in ("method=memit__n=2", "method=memit__n=4", "method=rome__n=4")]}
    (out / "index.json").write_text(json.dumps(index))
    return out


def test_the_tidy_tables_hold_every_number_with_the_runs_options(sweep_out):
    folders = [sweep_out / n for n in ("method=memit__n=2", "method=memit__n=4", "method=rome__n=4")]
    edits, downstream = tidy_tables(folders)
    run = str(folders[1])
    row = edits[(edits["run"] == run) & (edits["stage"] == "final") & (edits["metric"] == "generality")]
    assert row[["method", "mode", "n_edits", "seed", "model", "data", "axis_method", "axis_n", "n_edits_at",
                "family", "value"]].values.tolist() == [["memit", "instance-sequential", 4, 0, "factworld-gpt2",
                                                         "zsre_factworld", "memit", "4", 4, "token", 0.5]]
    stages = edits[edits["run"] == run].groupby("stage").size().to_dict()
    # pre/immediate/final: 4 token metrics each (+2 monitors pre and final); periodic: 2; step: 4 steps × 4 monitors
    assert stages == {"pre": 6, "immediate": 4, "periodic": 2, "final": 6, "step": 16}
    step = edits[(edits["run"] == run) & (edits["stage"] == "step") & (edits["n_edits_at"] == 3)]
    assert dict(zip(step["metric"], step["value"])) == {"value_loss_first": 3.0, f"l1_per_numel/{LAYERS[0]}": 0.13,
                                                        f"l1_per_numel/{LAYERS[1]}": 0.35, "perplexity": 4.0}
    post = downstream[(downstream["run"] == run) & (downstream["stage"] == "post")
                      & (downstream["task_mode"] == "corrected") & (downstream["metric"] == "acc_all")]
    assert post[["task", "n_edits_at", "value", "ci_low", "ci_high"]].values.tolist() == [
        ["nli", 4, 0.55, pytest.approx(NLI_PRE - 0.25), pytest.approx(NLI_PRE - 0.10)]]
    delta = downstream[(downstream["run"] == run) & (downstream["stage"] == "delta")
                       & (downstream["metric"] == "total_accuracy")]
    assert delta[["value", "ci_low", "ci_high"]].values.tolist() == [[pytest.approx(-0.15), -0.25, -0.10]]
    assert len(downstream[downstream["run"] == run]) == 3 * 3 + 2 * 3    # pre, post, delta, 2 curve points: 3 metrics each


def test_an_evaluation_folder_gives_downstream_rows(tmp_path):
    folder = tmp_path / "eval"
    folder.mkdir()
    (folder / "downstream.json").write_text(json.dumps({"model": "m", "after_edit": False, "data": {}, "seconds": 1,
                                                        "scores": {"nli": nli(0.4)}, "scored": {"nli": 10}}))
    edits, downstream = tidy_tables([folder])
    assert edits.empty
    assert downstream[["stage", "task", "task_mode", "metric", "value"]].values.tolist() == [
        ["eval", "nli", "corrected", "acc_all", 0.4], ["eval", "nli", "corrected", "parse_rate", 1.0],
        ["eval", "nli", "paper", "total_accuracy", 0.4]]


def test_the_method_table_has_the_papers_layout(sweep_out):
    edits, _ = tidy_tables([sweep_out / "method=memit__n=4", sweep_out / "method=rome__n=4"])
    assert method_table(edits) == (
        "| method | zsre_factworld · factworld-gpt2 Rel. | zsre_factworld · factworld-gpt2 Gen. | "
        "zsre_factworld · factworld-gpt2 Loc. | runs |\n|---|---|---|---|---|\n"
        "| memit | 0.800 | 0.500 | 0.900 | 1 |\n| rome | 0.700 | 0.400 | 0.850 | 1 |\n")


def _line(ax, label):
    (line,) = [line for line in ax.lines if line.get_label() == label]
    return list(line.get_xdata()), list(line.get_ydata())


def test_the_side_effects_figure_draws_each_methods_scores_intervals_and_pre_edit_level(sweep_out):
    _, downstream = tidy_tables([sweep_out / n for n in ("method=memit__n=2", "method=memit__n=4",
                                                         "method=rome__n=4")])
    figure = side_effects_figure(downstream)
    (ax,) = [ax for ax in figure.axes if ax.get_title() == "nli"]
    x, y = _line(ax, "memit (instance-sequential) corrected/acc_all")
    assert x == [0, 2, 4] and y == pytest.approx([NLI_PRE, 0.65, 0.55])
    assert _line(ax, "rome (instance-sequential) paper/total_accuracy") == ([0, 4], [NLI_PRE, 0.7])
    levels = [line for line in ax.lines if line.get_gid() == PRE_EDIT_GID]
    assert len(levels) == 4 and all(list(line.get_ydata()) == [NLI_PRE, NLI_PRE] for line in levels)
    bars = [sorted(tuple(map(tuple, segment)) for segment in collection.get_segments())
            for collection in ax.collections]
    memit_bars = [b for b in bars if len(b) == 2 and b[0][0][0] == 2][0]      # the first line's: at 2 and 4 edits
    assert memit_bars == [((2.0, pytest.approx(0.6)), (2.0, pytest.approx(0.72))),     # pre + the interval of
                          ((4.0, pytest.approx(0.45)), (4.0, pytest.approx(0.6)))]      # the change


def test_the_side_effects_figure_of_one_scoring_mode_keeps_a_colour_per_method_and_a_style_per_mode(sweep_out,
                                                                                                      tmp_path):
    l1 = {k: (0.1, 0.2) for k in range(3)}
    folders = [sweep_out / n for n in ("method=memit__n=2", "method=memit__n=4", "method=rome__n=4")]
    folders.append(make_run(tmp_path / "batch", "memit", "batch-sequential", 2, (0.9, 0.5, 0.7), l1, 0.6,
                            (-0.3, 0.0)))
    _, downstream = tidy_tables(folders)
    (ax,) = [ax for ax in side_effects_figure(downstream, ("corrected",)).axes if ax.get_title() == "nli"]
    lines = {line.get_label(): line for line in ax.lines if not line.get_label().startswith("_")}
    assert set(lines) == {"memit (instance-sequential) corrected/acc_all", "memit (batch-sequential) corrected/acc_all",
                          "rome (instance-sequential) corrected/acc_all"}
    instance, batch = lines["memit (instance-sequential) corrected/acc_all"], lines[
        "memit (batch-sequential) corrected/acc_all"]
    assert instance.get_color() == batch.get_color() != lines["rome (instance-sequential) corrected/acc_all"].get_color()
    assert instance.get_linestyle() != batch.get_linestyle()
    assert lines["rome (instance-sequential) corrected/acc_all"].get_linestyle() == instance.get_linestyle()


def test_the_d4s_figure_draws_the_weight_norms_per_layer_and_the_scores(sweep_out):
    edits, _ = tidy_tables([sweep_out / n for n in ("method=memit__n=2", "method=memit__n=4",
                                                    "method=rome__n=4")])
    norms, scores_ax = d4s_figure(edits).axes
    x, y = _line(norms, "memit (instance-sequential) transformer.h.1.mlp.c_proj")
    assert x == [0, 1, 2, 3, 4] and y == pytest.approx([0.20, 0.25, 0.30, 0.35, 0.40])
    assert _line(norms, "rome (instance-sequential) transformer.h.0.mlp.c_proj")[1] == pytest.approx(
        [0.10, 0.15, 0.20, 0.25, 0.30])
    x, y = _line(scores_ax, "memit (instance-sequential) reliability")
    assert x == [0, 2, 4] and y == pytest.approx([0.1, 0.9, 0.8])    # pre, then 2 edits: the 2-edit run's final
    assert _line(scores_ax, "rome (instance-sequential) locality") == ([0, 2, 4], [1.0, 0.95, 0.85])


def test_the_diversity_figure_draws_the_final_scores_by_level_method_and_length(tmp_path):
    """Runs over the shipped edit sets (``zsre/sets/<level>-<length>.json``) in a shuffled order, one level run
    twice (two seeds: the figure shows their mean), and a run over another file that the figure leaves out."""
    l1 = {k: (0.1, 0.2) for k in range(3)}
    finals = {("memit", "shared_subjects", 200, 0): (0.30, 0.1, 0.80), ("memit", "one_relation", 200, 0): (0.40, 0.1, 0.60),
              ("memit", "one_relation", 50, 0): (0.55, 0.1, 0.95), ("memit", "shared_subjects", 50, 0): (0.35, 0.1, 0.99),
              ("d4s", "one_relation", 200, 0): (0.32, 0.1, 0.86), ("d4s", "one_relation", 200, 1): (0.28, 0.1, 0.90),
              ("d4s", "all_relations", 200, 0): (0.44, 0.1, 0.84)}
    folders = [make_run(tmp_path / f"{m}-{level}-{n}-{seed}", m, "batch-sequential", 2, final, l1, 0.7, (0, 0),
                        seed=seed, data=f"zsre/sets/{level}-{n:04d}.json")
               for (m, level, n, seed), final in finals.items()]
    folders.append(make_run(tmp_path / "other", "memit", "batch-sequential", 2, (0.9, 0.9, 0.9), l1, 0.7, (0, 0)))
    edits, _ = tidy_tables(folders)
    reliability, locality = diversity_figure(edits).axes
    assert [t.get_text() for t in reliability.get_xticklabels()] == ["one relation", "all relations",
                                                                     "shared subjects"]
    assert _line(reliability, "memit, 50 edits") == ([0, 2], [0.55, 0.35])
    assert _line(reliability, "memit, 200 edits") == ([0, 2], [0.40, 0.30])
    x, y = _line(reliability, "d4s, 200 edits")
    assert x == [0, 1] and y == pytest.approx([0.30, 0.44])
    x, y = _line(locality, "d4s, 200 edits")
    assert x == [0, 1] and y == pytest.approx([0.88, 0.84])
    assert _line(locality, "memit, 200 edits") == ([0, 2], [0.60, 0.80])
    assert len(reliability.lines) == len(locality.lines) == 3    # the run over zsre_factworld.json is not drawn


def test_the_methods_figure_draws_the_method_table_as_bars_per_mode(sweep_out, tmp_path):
    l1 = {k: (0.1, 0.2) for k in range(3)}
    folders = [sweep_out / n for n in ("method=memit__n=2", "method=memit__n=4", "method=rome__n=4")]
    folders.append(make_run(tmp_path / "single", "rome", "batch-single", 2, (0.95, 0.5, 0.7), l1, 0.7, (0, 0)))
    edits, _ = tidy_tables(folders)
    reliability, generality, locality = methods_figure(edits).axes
    assert [t.get_text() for t in reliability.get_xticklabels()] == ["memit", "rome"]

    def bars(ax):
        return {container.get_label(): [round(bar.get_height(), 6) for bar in container]
                for container in ax.containers}
    nan = bars(reliability)["batch-single"][0]
    assert nan != nan                                           # memit has no batch-single run: no bar
    assert bars(reliability)["batch-single"][1:] == [0.95]
    assert bars(reliability)["instance-sequential"] == [0.85, 0.7]     # memit: the mean of its two runs
    assert bars(generality)["instance-sequential"] == [0.55, 0.4]
    assert bars(locality)["batch-single"][1:] == [0.7] and bars(locality)["instance-sequential"] == [0.925, 0.85]


def test_the_stamp_names_the_experiment_and_the_commits_that_made_the_runs(sweep_out, tmp_path):
    from lit_edit.experiments.figures import STAMP_GID, save_figure
    from lit_edit.experiments.report import provenance_stamp

    folders = [sweep_out / n for n in ("method=memit__n=2", "method=memit__n=4", "method=rome__n=4")]
    assert provenance_stamp(folders) == "python -m lit_edit.tools sweep x.yaml · commit unknown"
    for folder, commit in zip(folders, ("8d1d72060d546f8f", "8d1d72060d546f8f", "1234567abcdef")):
        (folder / "run.json").write_text(json.dumps({"git_commit": commit}))
    assert provenance_stamp(folders) == "python -m lit_edit.tools sweep x.yaml · commit 8d1d720, 1234567"
    loose = make_run(tmp_path / "loose", "ft", "batch-single", 2, (1, 1, 1), {k: (0.1, 0.2) for k in range(3)},
                     0.7, (0, 0))
    assert provenance_stamp([loose]) == "1 runs · commit unknown"
    index = json.loads((sweep_out / "index.json").read_text())
    (sweep_out / "index.json").write_text(json.dumps({**index, "variables": {"model": "gpt2-xl", "tasks": "paper"}}))
    assert provenance_stamp(folders[:1]) == ("python -m lit_edit.tools sweep x.yaml --set model=gpt2-xl --set "
                                             "tasks=paper · commit 8d1d720")
    (sweep_out / "index.json").write_text(json.dumps(index))
    import matplotlib.pyplot as plt

    figure = plt.figure()
    save_figure(figure, tmp_path / "f.png", "the stamp")
    assert [t.get_text() for t in figure.texts if t.get_gid() == STAMP_GID] == ["the stamp"]
    write_report(folders, tmp_path / "report")
    assert "Made by: `python -m lit_edit.tools sweep x.yaml · commit 8d1d720, 1234567`." in (
        tmp_path / "report" / "README.md").read_text()


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_the_report_command_writes_tables_markdown_figures_and_the_comparison(sweep_out, tmp_path):
    out = tmp_path / "report"
    a, b = sweep_out / "method=memit__n=4", sweep_out / "method=rome__n=4"
    subprocess.run([sys.executable, "-m", "lit_edit.tools", "report", str(sweep_out), "--out", str(out),
                    "--compare", str(a), str(b)], cwd=ROOT, check=True, capture_output=True)
    for name in ("edits.csv", "downstream.csv", "README.md", "side_effects.png", "side_effects_paper.png", "d4s.png",
                 "methods.png"):
        assert (out / name).stat().st_size > 0, name
    with open(out / "edits.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["run"] for row in rows}) == 3
    report = (out / "README.md").read_text()
    assert "| memit | instance-sequential | 2 | 0.650 (Δ -0.050 [-0.100, 0.020]) |" in report
    assert "| memit | 2 | 0.900 | 0.600 | 0.950 | 1 |" in report         # the number of edits varies: a column
    compare = report[report.index("## Comparison"):]
    assert "| option | A | B |\n|---|---|---|\n| method | memit | rome |" in compare
    assert "| final | 4 | token | reliability | 0.800 | 0.700 | -0.100 |" in compare
    assert "| post | 4 | nli | corrected | acc_all | 0.550 | 0.700 | 0.150 |" in compare
    assert "| step |" not in compare


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_a_folder_without_runs_is_refused_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="no run folder .* in .*empty"):
        write_report([tmp_path / "empty"], tmp_path / "out")
    result = subprocess.run([sys.executable, "-m", "lit_edit.tools", "report", str(tmp_path / "nothere"), "--out",
                             str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith(f"error: {tmp_path / 'nothere'} is not a folder")
