"""``python -m lit_edit.tools sweep <experiment.yaml>`` and ``python -m lit_edit.tools report <runs...> --out DIR``
(docs/experiments.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

COMMANDS = ("sweep", "report")


def parse_settings(assignments: list[str] | None) -> dict[str, str]:
    """``["model=gpt2-xl", "tasks=paper"]`` (``--set``) as a mapping; each must be ``name=value``."""
    from lit_edit.errors import UserError

    settings = {}
    for assignment in assignments or []:
        name, equals, value = assignment.partition("=")
        if not equals or not name.strip():
            raise UserError(f"--set {assignment}: give a variable and its value as name=value (--set model=gpt2-xl)")
        settings[name.strip()] = value.strip()
    return settings


def sweep(experiment: str, out: str | None = None, jobs: int = 1, dry_run: bool = False,
          progress: bool = True, settings: dict[str, str] | None = None) -> int:
    """Run every point of ``experiment`` not finished yet under ``out`` (default ``runs/<experiment name>``, then
    ``-<value>`` for each ``--set``), its
    variables set from ``settings`` (``--set name=value``); returns the number of points that failed or were
    interrupted (``--dry_run``: prints the command lines instead)."""
    from lit_edit.errors import UserError
    from lit_edit.experiments.grid import load_experiment
    from lit_edit.experiments.sweep import Sweep

    if jobs < 1:
        raise UserError(f"--jobs {jobs}: give a positive number of processes")
    loaded = load_experiment(experiment, settings)
    default = Path("runs") / "-".join([Path(experiment).stem, *(settings or {}).values()])    # runs/d4s-gpt2-xl
    runs = Sweep(loaded, Path(out) if out else default)
    if dry_run:
        print("\n".join(runs.dry_run_lines()))
        return 0
    failed = runs.run(jobs, progress)
    done = sum(run.status == "done" for run in runs.runs)
    print(f"[lit-edit] sweep {experiment}: {done} of {len(runs.runs)} points done, {len(failed)} failed or "
          f"interrupted; index in {runs.out / 'index.csv'}")
    for run in failed:
        print(f"[lit-edit] {run.status}: {run.point.name} (exit {run.returncode}); log: {run.log}")
    return len(failed)


def report(runs: list[str], out: str, compare: list[str] | None = None, family: str = "token") -> None:
    """Tables, markdown and figures of ``runs`` (run folders, or a sweep's output folder) into ``out``."""
    from lit_edit.experiments.report import write_report

    written = write_report([Path(run) for run in runs], Path(out), compare and [Path(c) for c in compare], family)
    print(f"[lit-edit] report of {written['runs']} runs in {out}: " + ", ".join(written["files"]))


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m lit_edit.tools", description="Grids of runs and their reports.")
    commands = main.add_subparsers(dest="command", required=True)
    run = commands.add_parser("sweep", help="run every point of an experiment file's grid",
                              description=sweep.__doc__)
    run.add_argument("experiment", help="the experiment file (configs/experiments/<name>.yaml)")
    run.add_argument("--out", help="the output folder (default: runs/<experiment name>[-<each --set value>])")
    run.add_argument("--jobs", type=int, default=1, help="points run at once, each its own process (default 1)")
    run.add_argument("--dry_run", action="store_true", help="print one command line per point still to run")
    run.add_argument("--no_progress", action="store_true", help="no progress bar")
    run.add_argument("--set", action="append", metavar="NAME=VALUE", dest="settings",
                     help="set one of the experiment file's variables (repeatable), e.g. --set model=gpt2-xl")
    table = commands.add_parser("report", help="tables, markdown and figures of finished runs",
                                description=report.__doc__)
    table.add_argument("runs", nargs="+", help="run folders, or the output folder of a sweep")
    table.add_argument("--out", required=True, help="the folder to write the report into")
    table.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two run folders to set side by side")
    table.add_argument("--family", default="token", help="the metric family of the method tables (default token)")
    return main


def main(args: list[str] | None = None) -> None:
    options = parser().parse_args(sys.argv[1:] if args is None else args)
    if options.command == "sweep":
        failed = sweep(options.experiment, options.out, options.jobs, options.dry_run, not options.no_progress,
                       parse_settings(options.settings))
        if failed:
            raise SystemExit(1)
    else:
        report(options.runs, options.out, options.compare, options.family)
