"""The main job's wall time at two commits, measured back to back on the same machine, and whether the two runs
hold the same results.

Each commit's tree is exported (``git archive``) into a temporary folder and the job runs there as a user runs it,
``python main.py test --config configs/edit/default.yaml`` (no progress bar), in a fresh process with every cache
empty (statistics, pre-edit references, downstream pre-edit scores), as on a first run. The commits alternate
(A, B, A, B, … for ``--repeats``), so a change in the machine's load falls on both. Then the first run of each commit
is compared with ``bench/identical_runs.py`` (every number of ``metrics.json`` but the wall times, ``steps.csv``,
``requests.csv``, ``edits.safetensors``).

    python bench/main_job_pair.py BASELINE [CANDIDATE=HEAD] [--n 300] [--every 10] [--repeats 1]
    python bench/main_job_pair.py 8d1d720 --n 30 --every 3                  # a quick run
    python bench/main_job_pair.py 8d1d720 --config configs/edit/models/factworld.yaml \\
        --config configs/edit/methods/factworld/rome.yaml --n 25 --every 25  # an instance-sequential ROME run
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from identical_runs import main as compare_runs  # noqa: E402


def export(commit: str, folder: Path) -> str:
    """The tree of ``commit`` written into ``folder``; returns the commit's short hash."""
    folder.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return subprocess.run(["git", "rev-parse", "--short", commit], cwd=ROOT, check=True, capture_output=True,
                          text=True).stdout.strip()


def run_job(tree: Path, work: Path, configs: list[str], n: int, every: int) -> tuple[float, Path, tuple]:
    """One run of the job in ``tree``: its wall time, its results folder, the load average after it."""
    work.mkdir(parents=True)
    command = [sys.executable, "main.py", "test", *(a for c in configs for a in ("--config", c)),
               "--data.init_args.n", str(n), "--trainer.eval_every_n_batches", str(every),
               "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(work / "logs"),
               "--model.init_args.cache_dir", str(work / "cache"),
               "--model.init_args.statistics.cache_dir", str(work / "stats")]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    subprocess.run(command, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    (folder,) = (work / "logs").glob("*/version_*")
    return wall, folder, os.getloadavg()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", help="the commit to compare against")
    parser.add_argument("candidate", nargs="?", default="HEAD")
    parser.add_argument("--config", action="append", default=None,
                        help="the job's configs (default: configs/edit/default.yaml, the main job)")
    parser.add_argument("--n", type=int, default=300, help="edits (the main job's config: 300)")
    parser.add_argument("--every", type=int, default=10, help="batches between periodic evaluations (its config: 10)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each commit, alternated")
    args = parser.parse_args()
    configs = args.config or ["configs/edit/default.yaml"]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label, commit in (("baseline", args.baseline), ("candidate", args.candidate)):
            trees[label] = (Path(tmp) / label / "tree", export(commit, Path(tmp) / label / "tree"))
        print(f"job: python main.py test {' '.join('--config ' + c for c in configs)} --data.init_args.n {args.n} "
              f"--trainer.eval_every_n_batches {args.every}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
              f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
        walls: dict[str, list[float]] = {"baseline": [], "candidate": []}
        folders: dict[str, Path] = {}
        for repeat in range(args.repeats):
            for label, (tree, commit) in trees.items():
                wall, folder, load = run_job(tree, Path(tmp) / label / f"run{repeat}", configs, args.n, args.every)
                walls[label].append(wall)
                folders.setdefault(label, folder)
                print(f"{label} {commit} run {repeat + 1}: {wall:.1f} s; load average after: "
                      f"{', '.join(f'{x:.2f}' for x in load)}", flush=True)
        best = {label: min(times) for label, times in walls.items()}
        print(f"best of each: baseline {best['baseline']:.1f} s, candidate {best['candidate']:.1f} s, "
              f"ratio {best['baseline'] / best['candidate']:.2f}x")
        print("results of the two first runs:")
        return compare_runs(folders["baseline"], folders["candidate"])


if __name__ == "__main__":
    sys.exit(main())
