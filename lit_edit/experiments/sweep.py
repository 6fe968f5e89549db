"""Run every point of an experiment's grid as its own ``main.py test`` process (docs/experiments.md).

A point whose folder holds a complete ``metrics.json`` is skipped; one whose folder holds a run state
(``run_state.pt``, written after every ``checkpoint_every_n_batches`` batches) is resumed from it with
``--trainer.resume_from`` (docs/evaluation.md §9); a failed point is recorded (status, exit code, log) and the sweep
goes on. ``index.csv`` / ``index.json`` in the output folder say which folder holds which point and how it ended.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lit_edit.errors import UserError
from lit_edit.experiments.grid import CONFIG_OPTION, Experiment, Point, option_argument
from lit_edit.io import atomic_write_text
from lit_edit.run_folder import previous_run_files
from lit_edit.run_state import STATE_FILE

MAIN = Path(__file__).resolve().parents[2] / "main.py"
INDEX_COLUMNS = ("point", "folder", "status", "attempts", "returncode", "seconds", "log")
LOGS = "logs"
ASIDE = "set_aside"


def metrics_complete(folder: Path) -> bool:
    """Whether ``folder`` holds the ``metrics.json`` of a run that ended (not the partial one an interrupt writes,
    which carries ``interrupted``)."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(metrics, dict) and "interrupted" not in metrics and "n_edits" in metrics


def _interrupted(folder: Path) -> bool:
    """Whether the run in ``folder`` ended on an interrupt (Ctrl-C, SIGTERM) and saved its partial results."""
    try:
        return "interrupted" in json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def folder_status(folder: Path) -> str:
    """``done`` (a complete metrics.json), ``resumable`` (a run state to continue), ``stale`` (another attempt's
    files but no run state: set aside before the point runs again) or ``pending``."""
    if metrics_complete(folder):
        return "done"
    if (folder / STATE_FILE).is_file():
        return "resumable"
    return "stale" if folder.is_dir() and previous_run_files(folder) else "pending"


def point_arguments(experiment: Experiment, point: Point, folder: Path) -> list[str]:
    """The ``main.py test`` arguments of ``point``: the base configs, the config axes, the overlays, the fixed
    options, the option axes, then the folder, the run-state schedule and (where one is saved) the resume."""
    configs = [*experiment.configs,
               *(point.values[a.name] for a in experiment.axes if a.option == CONFIG_OPTION), *experiment.overlays]
    args = [item for config in configs for item in ("--config", config)]
    settings = {**experiment.options,
                **{a.option: point.values[a.name] for a in experiment.axes if a.option != CONFIG_OPTION}}
    for option, value in settings.items():
        args += [f"--{option}", option_argument(value, str(folder))]
    args += ["--model.init_args.results_dir", str(folder),
             "--trainer.checkpoint_every_n_batches", str(experiment.checkpoint_every_n_batches)]
    if (folder / STATE_FILE).is_file():
        args += ["--trainer.resume_from", str(folder)]
    return args


def run_process(command: list[str], log) -> tuple[int, float | None]:
    """Run ``command`` to its end, its output into ``log``; returns its exit status and the CPU seconds (user +
    system) it used, where the platform reports them per process (``os.wait4``; ``None`` elsewhere)."""
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if not hasattr(os, "wait4"):
        return process.wait(), None
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


@dataclass
class PointRun:
    """One point's row of the index."""

    point: Point
    folder: Path
    status: str
    log: Path
    attempts: int = 0
    returncode: int | None = None
    seconds: float | None = None
    """Wall time of the point's attempts the index recorded, added up."""
    cpu_seconds: float | None = None
    """CPU time (user + system) of those attempts' processes, added up: with one thread per point, about what the
    point takes on an otherwise idle core."""

    def row(self, out: Path) -> dict:
        return {"point": self.point.name, "folder": str(self.folder.relative_to(out)), "status": self.status,
                "attempts": self.attempts, "returncode": self.returncode, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds,
                "log": str(self.log.relative_to(out)), **self.point.labels}


class Sweep:
    """The points of ``experiment`` under ``out``, their state on disk and the index that records them."""

    def __init__(self, experiment: Experiment, out: Path | str):
        self.experiment = experiment
        self.out = Path(out)
        self.runs = [PointRun(p, self.out / p.name, folder_status(self.out / p.name), self.out / LOGS / f"{p.name}.log")
                     for p in experiment.points()]
        self._previous = self._read_index()
        for run in self.runs:      # what the index already says of each point: kept for the points not run now
            previous = self._previous.get(run.point.name, {})
            run.attempts = int(previous.get("attempts") or 0)
            run.returncode, run.seconds = previous.get("returncode"), previous.get("seconds")
            run.cpu_seconds = previous.get("cpu_seconds")
        self._lock = threading.Lock()

    def _read_index(self) -> dict[str, dict]:
        try:
            index = json.loads((self.out / "index.json").read_text(encoding="utf-8"))
            rows = index["points"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        recorded = index.get("variables", self.experiment.variables)
        if recorded != self.experiment.variables:
            raise UserError(f"{self.out} holds the runs of this experiment with the variables {recorded}, not "
                            f"{self.experiment.variables}: their finished points would be taken for these; give "
                            "another --out, or the same --set values as before")
        return {row["point"]: row for row in rows if isinstance(row, dict) and "point" in row}

    def command(self, run: PointRun, launcher: list[str] | None = None) -> list[str]:
        return [*(launcher or [sys.executable, str(MAIN)]), "test",
                *point_arguments(self.experiment, run.point, run.folder)]

    def dry_run_lines(self) -> list[str]:
        """One shell line per point still to run (a cluster scheduler's job list), its output into its log, after the
        line that makes the logs' folder."""
        main = Path("main.py") if Path("main.py").resolve() == MAIN else MAIN
        lines = [f"mkdir -p {shlex.quote(str(self.out / LOGS))}"]
        for run in self.runs:
            if run.status == "done":
                continue
            line = f"{shlex.join(self.command(run, ['python', str(main)]))} >> {shlex.quote(str(run.log))} 2>&1"
            if run.status == "stale":       # main.py refuses a folder with another attempt's files: move it first
                aside = shlex.quote(str(self._aside_path(run)))
                folder = shlex.quote(str(run.folder))
                line = f"mkdir -p {shlex.quote(str(self.out / ASIDE))} && mv {folder} {aside} && {line}"
            lines.append(line)
        return lines

    def write_index(self) -> None:
        """``index.json`` (the experiment and one row per point) and ``index.csv`` (the rows), atomically."""
        with self._lock:
            rows = [run.row(self.out) for run in self.runs]
            axes = [{"name": a.name, "option": a.option, "labels": list(a.labels)} for a in self.experiment.axes]
            atomic_write_text(self.out / "index.json", json.dumps(
                {"experiment": str(self.experiment.path), "variables": self.experiment.variables, "axes": axes,
                 "points": rows}, indent=1) + "\n")
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(self.out / "index.csv", buffer.getvalue())

    def _aside_path(self, run: PointRun) -> Path:
        """Where an earlier attempt's folder without a run state goes: ``set_aside/<point>.<time>`` (a new name)."""
        target = self.out / ASIDE / f"{run.point.name}.{time.strftime('%Y%m%d-%H%M%S')}"
        suffix = 0
        while target.exists():
            suffix += 1
            target = target.with_name(f"{target.name.split('~')[0]}~{suffix}")
        return target

    def _set_aside(self, run: PointRun) -> Path:
        """Move an earlier attempt's folder that holds no run state out of the way (nothing is deleted)."""
        target = self._aside_path(run)
        target.parent.mkdir(parents=True, exist_ok=True)
        run.folder.rename(target)
        return target

    def run_point(self, run: PointRun) -> PointRun:
        """Run (or resume) one point in its own process; its output goes to its log."""
        run.log.parent.mkdir(parents=True, exist_ok=True)
        with open(run.log, "a", encoding="utf-8") as log:
            if run.status == "stale":
                log.write(f"[sweep] an earlier attempt left {run.folder} without a run state; moved to "
                          f"{self._set_aside(run)}\n")
            command = self.command(run)
            log.write(f"[sweep] {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
            log.flush()
            with self._lock:
                run.status, run.attempts = "running", run.attempts + 1
            self.write_index()
            started = time.monotonic()
            returncode, cpu = run_process(command, log)
        run.seconds = round((run.seconds or 0.0) + time.monotonic() - started, 3)    # over the recorded attempts
        run.cpu_seconds = None if cpu is None else round((run.cpu_seconds or 0.0) + cpu, 3)
        run.returncode = returncode
        if returncode == 0 and metrics_complete(run.folder):
            run.status = "done"
        else:
            run.status = "interrupted" if returncode and _interrupted(run.folder) else "failed"
        self.write_index()
        return run

    def run(self, jobs: int = 1, progress: bool = True) -> list[PointRun]:
        """Run every point not done yet, ``jobs`` at a time; returns those that did not finish (failed, or
        interrupted: their partial results and run state saved, the next sweep resumes them)."""
        self.out.mkdir(parents=True, exist_ok=True)
        todo = [run for run in self.runs if run.status != "done"]
        self.write_index()
        bar = tqdm(total=len(self.runs), initial=len(self.runs) - len(todo), unit="point", desc="sweep",
                   disable=not progress)
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            for run in pool.map(self.run_point, todo):
                bar.update(1)
                bar.set_postfix_str(f"{run.point.name}: {run.status}")
                if run.status != "done":
                    tqdm.write(f"[sweep] {run.point.name} {run.status} (exit {run.returncode}); log: {run.log}")
        finally:     # Ctrl-C: the points running get it too and write their partial results; none starts after
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            for run in self.runs:
                if run.status == "running":
                    run.status = "interrupted"
            self.write_index()
        return [run for run in self.runs if run.status in ("failed", "interrupted")]
