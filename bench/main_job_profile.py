"""Where the wall time of an editing run goes: the main job (configs/edit/default.yaml: MEMIT, batch-sequential) and
an instance-sequential ROME run (configs/edit/methods/factworld/rome.yaml), each run in-process through the CLI with the
project's own functions wrapped by a timer (monkeypatched here; the package holds no timing code).

Every wrapped function charges its time to one part; time inside a nested wrapped function goes to the inner part
only (exclusive times), so the parts add up to the wall time. What no wrapper covers (loading the model, the CLI,
Lightning, the loop's bookkeeping) is the part "rest". By default every cache is cold (statistics, pre-edit
references and downstream pre-edit scores go to a fresh temporary folder), as on a first run; ``--warm`` uses the
configs' caches.

    python bench/main_job_profile.py [--n 300] [--every 10] [--rome-n 100] [--rome-every 25] [--warm]
    python bench/main_job_profile.py --n 40 --every 2 --rome-n 6 --rome-every 3      # a quick run

``--n``/``--every`` shrink the main job (edits; batches between periodic and downstream evaluations), ``--rome-n`` /
``--rome-every`` the ROME run; ``--only main|rome`` runs one of them. Each run also prints the time of a step
against the edit it makes (the editor's ``edit``): ``test_step`` alone (edit, monitors, immediate scoring), and with
the periodic scoring spread over the steps.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable

import lit_edit.cli
import lit_edit.editing.contexts
import lit_edit.editing.keys
import lit_edit.editing.memit
import lit_edit.editing.rome
import lit_edit.editing.values
import lit_edit.metrics.monitors
import lit_edit.modules.reference_cache
import lit_edit.modules.run_record
import lit_edit.results
import lit_edit.stats
import lit_edit.tasks.summary
from lit_edit.editors import MEMIT, ROME
from lit_edit.modules.edit_scores import EditScores
from lit_edit.modules.editing import EditingModule
from lit_edit.modules.run_export import RunExport
from lit_edit.tasks.suite import DownstreamSuite

REST = "rest (model loading, CLI, Lightning, loop)"


class Profiler:
    """Exclusive wall time per part: the innermost running wrapped function's part is charged."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.inclusive: dict[str, float] = defaultdict(float)   # by function name, nested calls included
        self.calls: dict[str, int] = defaultdict(int)
        self.stack: list[str] = []
        self.last = time.perf_counter()

    def _charge(self) -> None:
        now = time.perf_counter()
        self.seconds[self.stack[-1] if self.stack else REST] += now - self.last
        self.last = now

    def wrap(self, function: Callable, part: str | Callable[[str | None], str]) -> Callable:
        """``function`` charging its time to ``part`` (or to ``part(the enclosing part)``)."""
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._charge()
            self.stack.append(part(self.stack[-1] if self.stack else None) if callable(part) else part)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self._charge()
                self.stack.pop()
                self.inclusive[function.__qualname__] += time.perf_counter() - started
                self.calls[function.__qualname__] += 1
        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self.inclusive.clear()
        self.calls.clear()
        self.stack.clear()
        self.last = time.perf_counter()

    def step_ratio(self) -> str:
        """An editing step against the edit it makes: ``test_step`` (edit, monitors, immediate scoring) per step,
        and the same with the periodic scoring spread over the steps, each over the editor's ``edit`` per step."""
        steps = self.calls["EditingModule.test_step"]
        edit = sum(seconds for name, seconds in self.inclusive.items() if name.endswith(".edit")) / steps
        step = self.inclusive["EditingModule.test_step"] / steps
        periodic = self.inclusive["EditingModule.evaluate_applied"] / steps
        return (f"per step: edit {edit:.3f} s, step {step:.3f} s ({step / edit:.2f}x the edit), with the periodic "
                f"scoring spread over the steps {step + periodic:.3f} s ({(step + periodic) / edit:.2f}x)")


def patch_function(profiler: Profiler, module, name: str, part) -> None:
    """Wrap ``module.name`` there and in every loaded ``lit_edit`` module that imported it by name."""
    original = getattr(module, name)
    timed = profiler.wrap(original, part)
    for loaded in list(sys.modules.values()):
        if getattr(loaded, "__name__", "").startswith("lit_edit") and getattr(loaded, name, None) is original:
            setattr(loaded, name, timed)


def patch_method(profiler: Profiler, cls, name: str, part) -> None:
    setattr(cls, name, profiler.wrap(getattr(cls, name), part))


SCORING_BY_PHASE = {"setup and run start (other)": "pre-edit scoring", "edit step (other)": "immediate scoring",
                    "periodic scoring": "periodic scoring", "run end (other)": "final scoring"}


def install(profiler: Profiler) -> None:
    """The parts of a run, by the project's functions that do them."""
    patch_method(profiler, EditingModule, "setup_run", "setup and run start (other)")
    patch_method(profiler, EditingModule, "start_run", "setup and run start (other)")
    patch_method(profiler, EditingModule, "test_step", "edit step (other)")
    patch_method(profiler, EditingModule, "evaluate_applied", "periodic scoring")
    patch_method(profiler, EditingModule, "finish_run", "run end (other)")
    patch_function(profiler, lit_edit.modules.reference_cache, "pre_edit_reference", "pre-edit scoring")
    patch_method(profiler, EditScores, "score", lambda outer: SCORING_BY_PHASE.get(outer, "scoring (other)"))
    patch_function(profiler, lit_edit.modules.run_record, "plot_run", "plots")
    patch_method(profiler, EditingModule, "_log", "writes (files, exports, logger)")
    patch_method(profiler, RunExport, "write", "writes (files, exports, logger)")
    patch_function(profiler, lit_edit.modules.run_record, "write_request_scores", "writes (files, exports, logger)")
    for name in ("write_json", "write_csv", "add_step", "copy_in"):
        patch_method(profiler, lit_edit.results.RunRecorder, name, "writes (files, exports, logger)")
    for editor in (ROME, MEMIT):
        patch_method(profiler, editor, "edit", "edit: solves and weight updates")
    patch_function(profiler, lit_edit.editing.values, "optimize_values", "edit: value optimisation")
    for name in ("subject_io", "module_io_at_subject", "template_keys"):
        patch_function(profiler, lit_edit.editing.keys, name, lambda outer: "edit: keys" if outer and
                       outer.startswith("edit") else outer or REST)
    patch_function(profiler, lit_edit.stats, "second_moments_for", "statistics")
    patch_function(profiler, lit_edit.editing.contexts, "sample_context_templates", "context templates")
    patch_method(profiler, DownstreamSuite, "pre_edit", "downstream evaluation (pre-edit)")
    patch_method(profiler, DownstreamSuite, "evaluate",
                 lambda outer: outer if outer == "downstream evaluation (pre-edit)" else "downstream evaluation")
    patch_function(profiler, lit_edit.tasks.summary, "bootstrap_delta", "downstream evaluation")
    patch_method(profiler, lit_edit.metrics.monitors.FixedTextPerplexity, "__call__", "monitors")
    for name in ("weight_monitors", "update_norms"):
        patch_function(profiler, lit_edit.metrics.monitors, name, "monitors")
    patch_method(profiler, EditingModule, "_effective", "monitors")


def run(profiler: Profiler, label: str, cli_args: list[str]) -> tuple[float, dict[str, float]]:
    profiler.reset()
    start = time.perf_counter()
    lit_edit.cli.main(cli_args)
    wall = time.perf_counter() - start
    profiler._charge()
    print(f"\n{label}: {wall:.1f} s wall\n  command: python main.py {' '.join(cli_args)}")
    print(f"  {'part':<46} {'seconds':>9} {'share':>7}")
    for part, seconds in sorted(profiler.seconds.items(), key=lambda item: -item[1]):
        print(f"  {part:<46} {seconds:9.1f} {seconds / wall:7.1%}")
    print(f"  {'sum of the parts':<46} {sum(profiler.seconds.values()):9.1f}")
    print(f"  {profiler.step_ratio()}")
    print(f"  load average (1, 5, 15 min) at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return wall, dict(profiler.seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="edits of the main job (its config: 300)")
    parser.add_argument("--every", type=int, default=10, help="batches between the main job's periodic and "
                        "downstream evaluations (its config: 10)")
    parser.add_argument("--rome-n", type=int, default=100, help="edits of the ROME run (its config: 100)")
    parser.add_argument("--rome-every", type=int, default=25, help="steps between its periodic evaluations")
    parser.add_argument("--only", choices=["main", "rome"], default=None)
    parser.add_argument("--warm", action="store_true", help="use the configs' caches instead of empty ones")
    args = parser.parse_args()
    sys.argv = sys.argv[:1]   # the CLI reads its own arguments from main(args), not from this script's
    profiler = Profiler()
    install(profiler)
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--trainer.logger.init_args.save_dir", f"{tmp}/logs", "--trainer.enable_progress_bar", "false"]
        if not args.warm:
            common += ["--model.init_args.cache_dir", f"{tmp}/cache",
                       "--model.init_args.statistics.cache_dir", f"{tmp}/stats"]
        if args.only in (None, "main"):
            run(profiler, f"main job (MEMIT batch-sequential, {args.n} edits, every {args.every} batches)",
                ["test", "--config", "configs/edit/default.yaml", "--data.init_args.n", str(args.n),
                 "--trainer.eval_every_n_batches", str(args.every), *common])
        if args.only in (None, "rome"):
            run(profiler, f"ROME instance-sequential ({args.rome_n} edits, every {args.rome_every} steps)",
                ["test", "--config", "configs/edit/models/factworld.yaml",
                 "--config", "configs/edit/methods/factworld/rome.yaml", "--data.init_args.n", str(args.rome_n),
                 "--trainer.eval_every_n_batches", str(args.rome_every), *common])


if __name__ == "__main__":
    main()
