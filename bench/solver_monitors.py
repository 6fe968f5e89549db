"""The weight monitors under each second-moment solver: the same instance-sequential edits of the shipped fact-world
model (``configs/edit/methods/factworld/{method}.yaml``, layers 0 and 1; layer 1's C is singular) with ``exact``,
``ridge`` at several ε and ``pinv`` at several rcond. Per run: ‖W‖₁/numel of both edited layers after the last edit,
the largest per-step ‖ΔW₁‖_F, ‖W₁ − W₁⁰‖_F, perplexity and token reliability; ``exact`` reports its refusal.
    python bench/solver_monitors.py [--n 20] [--methods memit d4s] [--solvers pinv ridge exact] [--out runs/solver_monitors]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [("pinv", "rcond", 1e-10), ("pinv", "rcond", 1e-6), ("ridge", "ridge", 1e-10),
            ("ridge", "ridge", 1e-8), ("ridge", "ridge", 1e-6), ("exact", None, None)]
LAYER = "transformer.h.{}.mlp.c_proj.weight"


def run(method: str, n: int, solver: tuple, out: Path) -> dict:
    name, option, value = solver
    label = f"{name} {option}={value:g}" if option else name
    folder = out / method / label.replace(" ", "_").replace("=", "")
    editor = "--model.init_args.editor.init_args.solver."
    args = [sys.executable, "main.py", "test", "--config", "configs/edit/models/factworld.yaml",
            "--config", f"configs/edit/methods/factworld/{method}.yaml",
            "--config", "configs/edit/modes/instance_sequential.yaml", "--data.init_args.n", str(n),
            "--trainer.eval_every_n_batches", "0", "--model.init_args.families", "[token]",
            "--model.init_args.monitor_docs", "8", "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
            "--model.init_args.results_dir", str(folder), f"{editor}method", name]
    if option:
        args += [f"{editor}{option}", str(value)]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    row = {"method": method, "solver": label, "seconds": time.perf_counter() - start}
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "UpdateSolveError" in line] or done.stderr.splitlines()
        return row | {"refused": lines[-1][:160]}
    metrics = json.loads((folder / "metrics.json").read_text())
    steps = list(csv.DictReader((folder / "steps.csv").open()))
    final, pre = metrics["monitors"]["final"], metrics["monitors"]["pre"]
    return row | {
        "l1_0_pre": pre[f"l1_per_numel/{LAYER.format(0)}"], "l1_1_pre": pre[f"l1_per_numel/{LAYER.format(1)}"],
        "l1_0": final[f"l1_per_numel/{LAYER.format(0)}"], "l1_1": final[f"l1_per_numel/{LAYER.format(1)}"],
        "update_1_max": max(float(s[f"update_fro/{LAYER.format(1)}"]) for s in steps),
        "drift_1": final[f"drift_fro/{LAYER.format(1)}"], "perplexity": final["perplexity"],
        "perplexity_pre": pre["perplexity"], "reliability": metrics["final"]["token"]["reliability"],
        "below_cutoff_1": metrics["editor_report"]["second_moment_solver"]["layers"]["1"]["below_cutoff"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=["memit", "d4s"])
    parser.add_argument("--solvers", nargs="+", default=["pinv", "ridge", "exact"])
    parser.add_argument("--out", default="runs/solver_monitors")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    print(f"{args.n} instance-sequential edits of checkpoints/factworld-gpt2, layers 0 and 1, "
          f"{os.environ.get('OMP_NUM_THREADS', 'all')} threads")
    print("| method | solver | C₁ eigenvalues ≤ cut-off | ‖W₀‖₁/numel | ‖W₁‖₁/numel | max ‖ΔW₁‖_F per step | "
          "‖W₁ − W₁⁰‖_F | perplexity | reliability | s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for method in args.methods:
        for solver in [setting for setting in SETTINGS if setting[0] in args.solvers]:
            r = run(method, args.n, solver, out)
            if "refused" in r:
                print(f"| {method} | {r['solver']} | – | refused: {r['refused']} | | | | | | {r['seconds']:.0f} |")
                continue
            print(f"| {method} | {r['solver']} | {r['below_cutoff_1']} | {r['l1_0_pre']:.4f} → {r['l1_0']:.4f} | "
                  f"{r['l1_1_pre']:.4f} → {r['l1_1']:.4f} | {r['update_1_max']:.1f} | {r['drift_1']:.1f} | "
                  f"{r['perplexity_pre']:.3f} → {r['perplexity']:.3f} | {r['reliability']:.2f} | {r['seconds']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
