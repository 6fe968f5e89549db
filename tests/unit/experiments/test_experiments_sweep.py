"""The sweep (docs/experiments.md): every point runs once in its own process, a crash is recorded and the sweep goes
on, a finished point is skipped and an interrupted one resumed. The first tests run a stand-in for ``main.py`` that
records its calls; the slow one runs the real CLI on the fact-world model and kills the sweep part-way."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from lit_edit.experiments import cli, sweep
from lit_edit.experiments.grid import load_experiment
from lit_edit.experiments.sweep import Sweep
from tests.conftest import ROOT

FAKE_MAIN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    args = sys.argv[1:]
    option = lambda name: args[args.index(name) + 1]
    folder = Path(option("--model.init_args.results_dir"))
    calls = Path(sys.argv[0]).with_name("calls.jsonl")
    with open(calls, "a") as log:
        log.write(json.dumps({"folder": folder.name, "args": args}) + "\\n")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "steps.csv").write_text("step,n_edits\\n0,1\\n")
    print("stand-in run of", folder.name)
    if Path(sys.argv[0]).with_name("interrupt").exists() and "--trainer.resume_from" not in args:
        (folder / "run_state.pt").write_text("state")        # as Ctrl-C does: partial results and a run state
        (folder / "metrics.json").write_text(json.dumps({"n_edits": 1, "interrupted": {"batches_done": 1}}))
        sys.exit(1)
    if option("--data.init_args.n") == "3" and not Path(sys.argv[0]).with_name("fixed").exists():
        sys.exit("crash: n = 3")
    (folder / "metrics.json").write_text(json.dumps({"n_edits": int(option("--data.init_args.n"))}))
    if option("--data.init_args.n") == "4" and not Path(sys.argv[0]).with_name("fixed").exists():
        sys.exit(3)     # scores written, then a failure (as a run whose model export fails)
""")


@pytest.fixture
def stand_in(tmp_path, monkeypatch) -> Path:
    script = tmp_path / "fake" / "main.py"
    script.parent.mkdir()
    script.write_text(FAKE_MAIN)
    monkeypatch.setattr(sweep, "MAIN", script)
    monkeypatch.chdir(ROOT)
    return script


def experiment_file(tmp_path: Path) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"configs": ["configs/edit/models/factworld.yaml",
                                                "configs/edit/methods/factworld/memit.yaml"],
                                    "axes": {"data.init_args.n": [2, 3, 4], "seed_everything": [0]}},
                                   sort_keys=False))
    return path


def calls(script: Path) -> list[dict]:
    path = script.with_name("calls.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def index_rows(out: Path) -> dict[str, dict]:
    with open(out / "index.csv") as handle:
        return {row["point"]: row for row in csv.DictReader(handle)}


def test_a_crashing_point_is_recorded_the_others_run_and_the_exit_status_says_so(tmp_path, stand_in):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["sweep", str(experiment_file(tmp_path)), "--out", str(out), "--no_progress"])
    assert exit_status.value.code == 1
    assert sorted(call["folder"] for call in calls(stand_in)) == ["n=2__seed_everything=0", "n=3__seed_everything=0",
                                                                  "n=4__seed_everything=0"]
    rows = index_rows(out)
    assert {name: (row["status"], row["returncode"], row["attempts"]) for name, row in rows.items()} == {
        "n=2__seed_everything=0": ("done", "0", "1"), "n=3__seed_everything=0": ("failed", "1", "1"),
        "n=4__seed_everything=0": ("failed", "3", "1")}
    log = out / rows["n=3__seed_everything=0"]["log"]
    assert "crash: n = 3" in log.read_text() and "--data.init_args.n 3" in log.read_text()
    assert rows["n=2__seed_everything=0"]["folder"] == "n=2__seed_everything=0" and rows["n=2__seed_everything=0"]["n"]


def test_a_rerun_skips_finished_points_and_sets_a_failed_attempt_aside(tmp_path, stand_in):
    out = tmp_path / "out"
    experiment = load_experiment(experiment_file(tmp_path))
    assert [run.point.name for run in Sweep(experiment, out).run(progress=False)] == ["n=3__seed_everything=0",
                                                                                     "n=4__seed_everything=0"]
    stand_in.with_name("fixed").write_text("")
    first = index_rows(out)
    assert Sweep(experiment, out).run(progress=False) == []
    second = index_rows(out)
    assert second["n=2__seed_everything=0"]["seconds"] == first["n=2__seed_everything=0"]["seconds"] != ""
    assert second["n=2__seed_everything=0"]["returncode"] == "0"          # the skipped point keeps its record
    assert float(second["n=3__seed_everything=0"]["seconds"]) > float(first["n=3__seed_everything=0"]["seconds"])
    assert second["n=2__seed_everything=0"]["cpu_seconds"] == first["n=2__seed_everything=0"]["cpu_seconds"]
    assert 0 < float(first["n=2__seed_everything=0"]["cpu_seconds"]) <= float(first["n=2__seed_everything=0"]["seconds"]) + 1
    # only the point without scores runs again: n = 4 failed after writing its complete metrics.json
    assert [call["folder"] for call in calls(stand_in)][3:] == ["n=3__seed_everything=0"]
    aside = list((out / sweep.ASIDE).iterdir())
    assert [p.name.split(".")[0] for p in aside] == ["n=3__seed_everything=0"]
    assert (aside[0] / "steps.csv").exists() and not (aside[0] / "metrics.json").exists()    # kept, not deleted
    assert index_rows(out)["n=3__seed_everything=0"]["attempts"] == "2"
    assert Sweep(experiment, out).run(progress=False) == [] and len(calls(stand_in)) == 4      # all done: nothing


def test_a_point_with_a_run_state_is_resumed_and_jobs_run_points_in_parallel(tmp_path, stand_in):
    out = tmp_path / "out"
    stand_in.with_name("fixed").write_text("")
    partial = out / "n=4__seed_everything=0"
    partial.mkdir(parents=True)
    (partial / "steps.csv").write_text("step\n")
    (partial / "run_state.pt").write_bytes(b"state")
    assert Sweep(load_experiment(experiment_file(tmp_path)), out).run(jobs=3, progress=False) == []
    by_folder = {call["folder"]: call["args"] for call in calls(stand_in)}
    assert len(calls(stand_in)) == 3
    assert by_folder["n=4__seed_everything=0"][-2:] == ["--trainer.resume_from", str(partial)]
    assert "--trainer.resume_from" not in by_folder["n=2__seed_everything=0"]
    assert not (out / sweep.ASIDE).exists()


def test_an_interrupted_point_is_marked_so_and_the_next_sweep_resumes_it(tmp_path, stand_in):
    out = tmp_path / "out"
    experiment = load_experiment(experiment_file(tmp_path))
    stand_in.with_name("fixed").write_text("")
    stand_in.with_name("interrupt").write_text("")
    assert len(Sweep(experiment, out).run(progress=False)) == 3
    assert {row["status"] for row in index_rows(out).values()} == {"interrupted"}
    stand_in.with_name("interrupt").unlink()
    assert Sweep(experiment, out).run(progress=False) == []
    assert all(call["args"][-2:] == ["--trainer.resume_from", str(out / call["folder"])]
               for call in calls(stand_in)[3:])
    assert {row["status"] for row in index_rows(out).values()} == {"done"}


# ------------------------------------------------------------------------- the real CLI, killed part-way

GRID = {"description": "2 × 2 on the fact-world model, one edit per step",
        "configs": ["configs/edit/models/factworld.yaml"],
        "axes": {"method": {"option": "config", "values": {"memit": "configs/edit/methods/factworld/memit.yaml",
                                                           "rome": "configs/edit/methods/factworld/rome.yaml"}},
                 "data.init_args.n": [2, 3]},
        "options": {"data.init_args.batch_size": 1, "model.init_args.families": ["token"],
                    "model.init_args.monitor_docs": 4, "model.init_args.editor.init_args.values.steps": 5,
                    "trainer.eval_every_n_batches": 2, "trainer.enable_progress_bar": False,
                    "trainer.logger.init_args.save_dir": "{folder}/logs"}}
POINTS = ["method=memit__n=2", "method=memit__n=3", "method=rome__n=2", "method=rome__n=3"]


def _start(experiment: Path, out: Path) -> subprocess.Popen:
    log = open(out.with_suffix(".log"), "a")
    return subprocess.Popen([sys.executable, "-m", "lit_edit.tools", "sweep", str(experiment), "--out", str(out),
                             "--no_progress"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)       # its own process group: the kill takes the points too


def _metrics(folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics.pop("seconds") > 0
    return metrics


def _wait(process: subprocess.Popen, out: Path) -> None:
    assert process.wait(timeout=900) == 0, out.with_suffix(".log").read_text()[-3000:]
