"""The downstream tasks an editing run scores: which records, how they are scored, and the cached pre-edit scores.

``DownstreamConfig`` is the ``model.downstream`` block of an editing config. :class:`DownstreamSuite` reads the
records once (this process's shard of them when several processes run), scores a model on every task with one
:class:`~lit_edit.tasks.metrics.DownstreamMetric` per task (gathered across processes), and keeps the pre-edit
scores on disk keyed by the model, the records and the scoring settings (``docs/evaluation.md``: computed once on the
unedited model).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from lit_edit.caches import read_cached
from lit_edit.distributed import SINGLE, Ranks
from lit_edit.io import atomic_write_text
from lit_edit.lengths import InputTooLongError, example_length, measuring
from lit_edit.tasks.evaluate import score_records
from lit_edit.tasks.formats import BadLines, TaskFormatError
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import TASK_FILES, TASK_NAMES, get_task, read_task
from lit_edit.tasks.summary import TaskScores

SCORING_VERSION = 3
"""Bumped whenever a change to prompts, decoding or counters makes cached pre-edit scores stale."""


@dataclass
class DownstreamConfig:
    """Downstream evaluation of an editing run.

    Args:
        root: the folder with the task files (``data/factworld/tasks``, or ``data/tasks`` under the data root).
        tasks: which tasks (names of ``lit_edit.tasks.registry.TASKS``); None: all 8.
        subset: examples per task, drawn with ``seed`` and kept in file order; None: all.
        seed: the subset's seed (also the bootstrap's).
        periodic: also score on the run's periodic schedule, every ``trainer.eval_every_n_batches`` edit batches
            (false: only before the first and after the last edit).
        generation_batch_size: the most prompts in one generation batch.
        generation_token_budget: the most tokens (prompt + new, padding included) in one generation batch; None:
            ``lit_edit.generation.default_token_budget`` of the model's device.
        choice_loglik: add the ``loglik`` mode to the choice tasks (options ranked by their log-likelihood).
        bootstrap_resamples: paired bootstrap resamples for the interval of each post − pre difference (0: none).
        on_bad_line: ``error`` or ``skip`` (skipped lines are counted and listed in the results).
        strict_length: refuse the run when an example needs more positions than the model has (default: such
            examples are left out and counted per task, ``too_long`` in the results; ``lit_edit.lengths``).
    """

    root: str = "data/factworld/tasks"
    tasks: list[str] | None = None
    subset: int | None = None
    seed: int = 0
    periodic: bool = False
    generation_batch_size: int = 32
    generation_token_budget: int | None = None
    choice_loglik: bool = False
    bootstrap_resamples: int = 1000
    on_bad_line: str = "error"
    strict_length: bool = False

    def __post_init__(self):
        self.tasks = list(TASK_NAMES) if self.tasks is None else list(self.tasks)
        for task in self.tasks:
            get_task(task)
        if self.subset is not None and self.subset < 1:
            raise ValueError(f"downstream.subset must be a positive number of examples or null, got {self.subset}")
        if self.bootstrap_resamples < 0:
            raise ValueError(f"downstream.bootstrap_resamples must be >= 0, got {self.bootstrap_resamples}")
        BadLines(self.on_bad_line)


def load_task_records(root: str | Path, task: str, subset: int | None = None, seed: int = 0,
                      bad: BadLines | None = None) -> list[tuple[int, dict]]:
    """``(position in the file, record)`` pairs of ``task`` (the reference view: what both modes need); with
    ``subset``, that many drawn with ``seed`` and kept in file order."""
    records = list(enumerate(read_task(root, task, reference_view=True, bad=bad)))
    if not records:
        skipped = f" ({len(bad.skipped)} malformed lines skipped)" if bad is not None and bad.skipped else ""
        raise TaskFormatError(f"task {task!r}: {Path(root) / TASK_FILES[task]} holds no examples{skipped}; fix the "
                              "file or leave the task out of the tasks option")
    if subset is not None and subset < len(records):
        keep = sorted(random.Random(seed).sample(range(len(records)), subset))
        records = [records[i] for i in keep]
    return records


def records_digest(records: list[tuple[int, dict]]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def drop_too_long(records: dict[str, list[tuple[int, dict]]], root: str | Path, tokenizer, limit: int | None,
                  choice_loglik: bool = False, strict: bool = False) -> dict[str, int]:
    """Leave out, in place, the examples of each task that need more than ``limit`` positions
    (:func:`lit_edit.lengths.example_length`; None: no limit) and return how many per task. ``strict`` refuses the
    first such example instead; a task left with no example is refused."""
    dropped = dict.fromkeys(records, 0)
    if limit is None:
        return dropped
    with measuring():   # the lengths are the point: no warning that they are too long
        for task, pairs in records.items():
            kept = []
            for index, record in pairs:
                length = example_length(tokenizer, get_task(task), record, choice_loglik)
                if length <= limit:
                    kept.append((index, record))
                elif strict:
                    raise InputTooLongError(f"task {task!r}: example {index} of {Path(root) / TASK_FILES[task]} needs "
                                            f"{length} positions, the model has {limit} (strict_length is true; false "
                                            "leaves such examples out and counts them)")
            if not kept:
                raise InputTooLongError(f"task {task!r}: none of its {len(pairs)} examples fits the model's {limit} "
                                        "positions; leave the task out of the tasks option")
            dropped[task] = len(pairs) - len(kept)
            pairs[:] = kept
    return dropped


def too_long_note(dropped: dict[str, int], records: dict[str, list], limit: int | None) -> str | None:
    """The console line about the examples left out for their length; None when none was."""
    if not any(dropped.values()):
        return None
    counts = ", ".join(f"{task} {n} of {n + len(records[task])}" for task, n in dropped.items() if n)
    return (f"[lit-edit] downstream examples longer than the model's {limit} positions are left out (counted as "
            f"too_long in the results; strict_length: true refuses them): {counts}")


class DownstreamSuite:
    """The records of every configured task and how to score a model on them (see the module docstring).

    ``ranks`` (``lit_edit.distributed``) shard the records: rank r scores ``records[r::world_size]`` (uneven shards
    are fine: the metric states are sums and concatenations) and the shards are gathered; ranks that do not share
    the work (a sharded model) each score every record and gather nothing."""

    def __init__(self, config: DownstreamConfig, ranks: Ranks = SINGLE):
        self.config, self.ranks = config, ranks
        self.bad_lines = BadLines(config.on_bad_line)
        self.records = {task: load_task_records(config.root, task, config.subset, config.seed, self.bad_lines)
                        for task in config.tasks}
        self.too_long: dict[str, int] = dict.fromkeys(config.tasks, 0)

    def drop_too_long(self, tokenizer, limit: int | None) -> dict[str, int]:
        """Leave out the examples that need more than ``limit`` positions (:func:`drop_too_long`); returns how many
        per task (also in :meth:`describe`)."""
        dropped = drop_too_long(self.records, self.config.root, tokenizer, limit, self.config.choice_loglik,
                                self.config.strict_length)
        self.too_long = {task: self.too_long[task] + n for task, n in dropped.items()}
        return self.too_long

    def describe(self) -> dict:
        return {**asdict(self.config), "examples": {task: len(r) for task, r in self.records.items()},
                "records_sha256": {task: records_digest(r) for task, r in self.records.items()},
                "skipped_lines": list(self.bad_lines.skipped), "too_long": dict(self.too_long),
                "scoring_version": SCORING_VERSION}

    def evaluate(self, model, tokenizer, after_edit: bool, progress: bool = False,
                 tasks: list[str] | None = None) -> dict[str, TaskScores]:
        """Per-example scores on ``model`` of ``tasks`` (default: all configured), all processes' shards gathered."""
        from tqdm.auto import tqdm

        was_training = model.training
        model.eval()
        scores = {}
        for task in tqdm(tasks or self.config.tasks, desc="downstream tasks", disable=not progress, leave=False):
            records = self.records[task]
            shard = [records[i] for i in self.ranks.mine(len(records))]
            metric = DownstreamMetric(task, sync_on_compute=self.ranks.world_size > 1 and self.ranks.shares_work)
            metric.update(score_records(model, tokenizer, get_task(task), [r for _, r in shard], after_edit,
                                        self.config.generation_batch_size, self.config.choice_loglik,
                                        self.config.generation_token_budget),
                          [i for i, _ in shard])
            scores[task] = metric.task_scores()
        model.train(was_training)
        return scores

    def cache_key(self, model_identity: str, task: str) -> str:
        settings = [model_identity, task, records_digest(self.records[task]), self.config.choice_loglik,
                    SCORING_VERSION]
        return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:20]

    def pre_edit(self, model, tokenizer, model_identity: str, cache_dir: str | Path, progress: bool = False,
                 write: bool = True) -> tuple[dict[str, TaskScores], list[str]]:
        """Pre-edit scores of every task, from ``cache_dir/downstream`` where present; returns them and the tasks
        that were read from the cache. ``write``: store the computed ones (the main process only). The model's dtype
        is part of the key: a bfloat16 model is scored apart from its float32 weights."""
        model_identity = f"{model_identity} {next(model.parameters()).dtype}"
        folder = Path(cache_dir) / "downstream"
        scores, cached, missing = {}, [], []
        for task in self.config.tasks:
            path = folder / f"{task}-{self.cache_key(model_identity, task)}.json"
            read = lambda file: TaskScores.from_dict(json.loads(file.read_text()))
            found = read_cached(path, read, f"cached pre-edit scores of {task!r}") if path.exists() else None
            if found is not None:
                scores[task] = found
                cached.append(task)
            else:
                missing.append(task)
        # every rank scores the same tasks (a rank that started late may see files another has just written)
        everyone = self.ranks.gather(missing)
        missing = [task for task in self.config.tasks if any(task in m for m in everyone)]
        cached = [task for task in cached if task not in missing]
        if missing:
            fresh = self.evaluate(model, tokenizer, after_edit=False, progress=progress, tasks=missing)
            for task, task_scores in fresh.items():
                scores[task] = task_scores
                if write:
                    path = folder / f"{task}-{self.cache_key(model_identity, task)}.json"
                    atomic_write_text(path, json.dumps(task_scores.to_dict()))
        return {task: scores[task] for task in self.config.tasks}, cached


def primary_values(summary: dict[str, dict], task: str) -> dict[str, float | None]:
    """The headline metric of each mode of one task's summary (``{mode: value}``)."""
    primary = get_task(task).primary
    return {mode: summary[mode].get(primary[mode]) for mode in summary if mode in primary}
