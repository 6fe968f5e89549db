"""The record of an editing run in its results folder: which folder, claimed how, and what is written there besides
the per-step table (``lit_edit.results.RunRecorder``): ``run.json`` (provenance, git commit included),
``requests.csv``, the editor's report (``metrics.json`` ``editor_report`` and its own files) and ``plots/``.

The folder is ``model.results_dir``; unset: the logger's version folder, or a new ``results/<time>`` folder in
``trainer.default_root_dir`` without a logger. It is claimed for the run (``lit_edit.run_folder``: a lock, no other
run's files) before any work. ``metrics.json`` is written by the module, before the exports (``run_export.py``).
"""

from __future__ import annotations

import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from lit_edit.caches import model_fingerprint
from lit_edit.distributed import Ranks
from lit_edit.editing.requests import EditRequest
from lit_edit.editors.base import Editor, EditorReport
from lit_edit.export_folder import new_folder
from lit_edit.results import RunRecorder, request_rows
from lit_edit.run_folder import RunFolderError, RunFolderLock, claim_run_folder
from lit_edit.stats import StatisticsConfig


def choose_results_folder(results_dir: str | None, trainer, ranks: Ranks) -> tuple[Path, str]:
    """This run's folder and what chose it (for messages); the same on every rank."""
    if results_dir:
        return Path(results_dir), "model.results_dir"
    if trainer.logger is not None and trainer.log_dir:
        return Path(trainer.log_dir), "the logger's version folder (model.results_dir unset)"
    folder = new_folder(Path(trainer.default_root_dir) / "results" / time.strftime("%Y%m%d-%H%M%S"))
    return Path(ranks.gather(str(folder))[0]), "the new results folder (model.results_dir unset)"


def claim_results_folder(folder: Path, option: str, resumes: str | None, ranks: Ranks) -> RunFolderLock | None:
    """Lock ``folder`` for this run (rank zero holds the lock; every rank stops on a refusal)."""
    error, lock = None, None
    if ranks.is_zero:
        try:
            lock = claim_run_folder(folder, option, resumes)
        except RunFolderError as refused:
            error = refused
    message = ranks.gather(str(error) if error else None)[0]
    if message is not None:
        raise error or RunFolderError(message)
    return lock


def copy_saved_config(recorder: RunRecorder, log_dir: str | None) -> None:
    """Copy the configuration LightningCLI saved (``config.yaml`` in the trainer's log folder) into the run folder."""
    saved_config = Path(log_dir or ".") / "config.yaml"
    if saved_config.exists() and saved_config.parent.resolve() != recorder.directory.resolve():
        recorder.copy_in(saved_config)


def git_commit() -> str | None:
    """The commit of the lit-edit checkout that runs (None outside a git checkout)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(name_or_path: str, editor: Editor, mode: dict, families: Sequence[str], edits: dict,
               downstream: dict | None, statistics: StatisticsConfig) -> dict:
    """``run.json``: what a reader needs to reproduce the run (docs/evaluation.md "Reproducibility of a run")."""
    import lightning
    import transformers

    stats_folder = Path(statistics.cache_dir) / str(name_or_path).replace("/", "_")
    return {
        "model": str(name_or_path), "model_fingerprint": model_fingerprint(name_or_path),
        "editor": {"name": editor.name, **editor.hyperparameters()},
        "mode": mode, "families": list(families), "edits": edits, "downstream": downstream,
        "statistics": {"config": vars(statistics), "files": sorted(str(p) for p in stats_folder.rglob("*.safetensors"))
                       if stats_folder.exists() else []},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "lightning": lightning.__version__, "transformers": transformers.__version__},
        "git_commit": git_commit(), "seed": torch.initial_seed(),
    }


def write_request_scores(recorder: RunRecorder, applied: Sequence[EditRequest], batch_sizes: Sequence[int],
                         request_scores: dict[str, dict[str, dict]]) -> Path:
    """``requests.csv``: every applied request's scores before editing, right after its step and at the end
    (written when the run ends or is interrupted; a run state carries the scores in between)."""
    steps = [step for step, size in enumerate(batch_sizes) for _ in range(size)]
    return recorder.write_csv("requests.csv", request_rows(applied, steps, request_scores))


def record_editor_report(recorder: RunRecorder, report: EditorReport | None, results: dict) -> None:
    """The editor's report: its files (``<name>.json``) into the run folder, its summary into ``results``
    (``metrics.json`` ``editor_report``)."""
    if report is None:
        return
    for name, content in report.files.items():
        recorder.write_json(f"{name}.json", content)
    results["editor_report"] = report.summary


def run_title(model: str, results: dict) -> str:
    """What every plot of a run is titled: the model's folder name, the method, the mode and the number of edits."""
    return f"{model} · {results['method']} · {results['mode']['name']} · {results['n_edits']} edits"


def plot_run(recorder: RunRecorder, results: dict, model: str, family: str, rollback: bool, pre_monitors: dict,
             downstream_curve: list[dict] | None, editor: Editor, report: EditorReport | None) -> None:
    """The run's PNG plots (``plots/``), each titled :func:`run_title`: the edit metrics against the number of
    edits, the retention of the first and latest cohorts, the monitors, the downstream curve (with the post-edit
    scores' bootstrap intervals) and the editor's own plots."""
    from lit_edit.plots import plot_downstream, plot_edit_metrics, plot_monitors, plot_retention, post_edit_intervals

    title = run_title(model, results)

    curve = ([{"n_edits": 0, "scores": flat(results["pre"])}] if results["pre"] else []) + results["periodic"]
    if not rollback and results["final"] is not None:
        curve.append({"n_edits": results["n_edits"], "scores": flat(results["final"])})
    plots = recorder.directory / "plots"
    plots.mkdir(exist_ok=True)
    if curve:
        plot_edit_metrics(curve, family, plots / "edit_metrics.png", title)
    if results["retention"]:
        plot_retention(results["retention"], f"{family}/reliability", plots / "retention.png", title)
    if recorder.steps:
        plot_monitors([{"n_edits": 0, **pre_monitors}] + recorder.steps, plots / "monitors.png", title)
    if downstream_curve is not None:
        at = (results.get("downstream_setup") or {}).get("post_n_edits")
        plot_downstream(downstream_curve, plots / "downstream.png", title,
                        post_edit_intervals(results.get("downstream")), at)
    if report is not None:
        editor.plot_report(report, plots)


def log_plot_images(loggers: list, plots_dir: Path, step: int) -> list[str]:
    """Each PNG of ``plots_dir`` as an image of every logger that takes images (TensorBoard's IMAGES tab), tagged
    ``plots/<file stem>`` at ``step`` (the number of edits); returns the tags logged."""
    takers = [logger.experiment.add_image for logger in loggers
              if callable(getattr(getattr(logger, "experiment", None), "add_image", None))]
    if not takers:
        return []
    from matplotlib.image import imread

    tags = []
    for path in sorted(plots_dir.glob("*.png")):
        pixels = imread(path)[..., :3]      # RGB of the RGBA PNG, floats in [0, 1]
        for add_image in takers:
            add_image(f"plots/{path.stem}", pixels, global_step=step, dataformats="HWC")
        tags.append(f"plots/{path.stem}")
    return tags


def nest(flat_scores: dict | None) -> dict | None:
    """``{"token/reliability": x}`` → ``{"token": {"reliability": x}}``."""
    if flat_scores is None:
        return None
    nested: dict = {}
    for key, value in flat_scores.items():
        family, metric = key.split("/", 1)
        nested.setdefault(family, {})[metric] = value
    return nested


def flat(nested: dict | None) -> dict:
    """``{"token": {"reliability": x}}`` → ``{"token/reliability": x}``."""
    return {f"{family}/{metric}": value for family, metrics in (nested or {}).items()
            for metric, value in metrics.items()}
