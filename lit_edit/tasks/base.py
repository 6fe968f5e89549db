"""What a downstream task is, as the registry holds it: its file, prompt, parser, scorers and summary.

A task turns a record into :class:`Query` objects (a prompt variant and its decoding length); queries with the
same prompt and length are generated once and shared by the two modes. :meth:`DownstreamTask.score` turns the
generations of one record into counter increments: ``paper/...`` counters follow the reference harness with its
quirks (``docs/tasks.md`` §1-9), the others the corrected rules (``docs/tasks.md`` §11).
:meth:`DownstreamTask.summarize` turns summed counters into the reported numbers. Sums make the scores
shard-safe: :class:`lit_edit.tasks.metrics.DownstreamMetric` adds them across processes.

Each task is one module of this package holding one :class:`DownstreamTask` named ``TASK``
(``docs/adding-a-task.md``); :class:`ChoiceTask` serves the four tasks whose answer comes from a fixed set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lit_edit.generation import Generation
from lit_edit.tasks.formats import BadLines


@dataclass(frozen=True)
class Query:
    """One generation a record needs: ``variant`` names it for the scorer; decoding stops after
    ``max_new_tokens`` or once the new text contains ``stop`` (the scorer would cut there anyway)."""

    variant: str
    prompt: str
    max_new_tokens: int
    stop: str | None = None


def ratio(numerator: float, denominator: float) -> float | None:
    """``numerator / denominator``; None when there is nothing to divide by."""
    return numerator / denominator if denominator else None


@dataclass(kw_only=True, eq=False)
class DownstreamTask:
    """One downstream task; subclasses name their counters and implement :meth:`queries`, :meth:`score` and
    :meth:`summarize`."""

    name: str
    """The task's name in configs, results and the registry (also its module's name)."""
    file: str
    """The test set's file (or folder) name in a task root."""
    max_new_tokens: int
    """Tokens generated after each prompt."""
    read: Callable[[Path, bool, BadLines], list[dict]]
    """``read(path, reference_view, bad)``: the records of the file; ``reference_view`` keeps what the reference
    harness saw beside the corrected reading (:func:`lit_edit.tasks.registry.read_task`)."""
    write: Callable[[Path, Sequence[dict]], None]
    """``write(path, records)``: the records in the published format (the fact-world mini tasks)."""
    prompt: Callable[..., str]
    """The task's prompt of a record (the reference's wording, its defaults)."""
    parse: Callable[[str], object] | None = None
    """The corrected parser of a continuation, for tasks with one parsed answer (None: could not parse)."""
    gold_label: Callable[[dict], object] | None = None
    """The gold answer of a record in the parsed space."""

    counters: ClassVar[tuple[str, ...]]
    ordered: ClassVar[tuple[str, ...]] = ()   # per-example tuples replayed in file order (the NQ reference's flag)
    primary: ClassVar[dict[str, str]]         # the headline metric of each mode (plots, the README tables)

    def is_correct(self, continuation: str, record: dict) -> bool:
        """Whether the corrected parse of ``continuation`` is the record's gold answer (unparsed: wrong)."""
        if self.parse is None or self.gold_label is None:
            raise KeyError(f"task {self.name!r} has no single parsed answer")
        parsed = self.parse(continuation)
        return parsed is not None and parsed == self.gold_label(record)

    def queries(self, record: dict) -> list[Query]:
        raise NotImplementedError

    def options(self, record: dict) -> tuple[str, list[str]] | None:
        """For tasks with a fixed answer set: the prompt and the option texts whose log-likelihood can be
        compared (the ``loglik`` mode); None for the others."""
        return None

    def score(self, record: dict, generations: Mapping[str, Generation], after_edit: bool,
              option_nll: Sequence[float] | None = None) -> dict:
        """Counter increments of one record; ``option_nll`` is the summed NLL of each of :meth:`options`."""
        raise NotImplementedError

    def summarize(self, sums: Mapping[str, float], ordered: Mapping[str, list] | None = None) -> dict[str, dict]:
        raise NotImplementedError


@dataclass(kw_only=True, eq=False)
class ChoiceTask(DownstreamTask):
    """A one-token answer from a fixed set (BoolQ, RTE, SST-2, MuTual).

    corrected: ``acc_all`` = correct / all examples (primary), ``acc_parsed``, ``parse_rate``, one parser before
    and after editing; paper: the reference's ``accuracy`` (over parsed) and ``total_accuracy`` (over all);
    loglik (only when asked for): the option with the lowest summed NLL after the corrected prompt, ``acc_all``."""

    paper_prompt: Callable[[dict], str]
    """The reference's prompt of a record (the corrected one but for what the reference read differently)."""
    paper_counts: Callable[[str, dict, bool], dict[str, int]]
    """``paper_counts(reference_text, record, after_edit)``: the reference's ``correct`` and ``parsed``."""
    option_texts: tuple[str, ...]
    """The answers in the parsed space's order."""
    gold_option: Callable[[dict], int]
    """The index of a record's gold answer in :attr:`option_texts`."""

    counters = ("n", "correct", "parsed", "paper/correct", "paper/parsed", "loglik/n", "loglik/correct")
    primary = {"corrected": "acc_all", "paper": "total_accuracy", "loglik": "acc_all"}

    def options(self, record: dict) -> tuple[str, list[str]]:
        return self.prompt(record), list(self.option_texts)

    def queries(self, record: dict) -> list[Query]:
        corrected = self.prompt(record)
        paper = self.paper_prompt(record)
        queries = [Query("corrected", corrected, self.max_new_tokens)]
        return queries + ([Query("paper", paper, self.max_new_tokens)] if paper != corrected else [])

    def score(self, record: dict, generations: Mapping[str, Generation], after_edit: bool,
              option_nll: Sequence[float] | None = None) -> dict:
        corrected = generations["corrected"]
        paper = generations.get("paper", corrected)
        parsed = self.parse(corrected.continuation)
        paper_counts = self.paper_counts(paper.reference_text, record, after_edit)
        out = {"n": 1, "correct": int(parsed is not None and parsed == self.gold_label(record)),
               "parsed": int(parsed is not None), "paper/correct": paper_counts["correct"],
               "paper/parsed": paper_counts["parsed"]}
        if option_nll is not None:
            if len(option_nll) != len(self.option_texts):
                raise ValueError(f"{self.name}: {len(option_nll)} option NLLs for {len(self.option_texts)} options")
            best = min(range(len(option_nll)), key=lambda i: option_nll[i])   # ties: the first option
            out.update({"loglik/n": 1, "loglik/correct": int(best == self.gold_option(record))})
        return out

    def summarize(self, sums, ordered=None):
        modes = {"corrected": {"acc_all": ratio(sums["correct"], sums["n"]),
                               "acc_parsed": ratio(sums["correct"], sums["parsed"]),
                               "parse_rate": ratio(sums["parsed"], sums["n"])},
                 "paper": {"accuracy": ratio(sums["paper/correct"], sums["paper/parsed"]),
                           "total_accuracy": ratio(sums["paper/correct"], sums["n"])}}
        if sums.get("loglik/n"):
            modes["loglik"] = {"acc_all": ratio(sums["loglik/correct"], sums["loglik/n"])}
        return modes
