"""Summarization: SAMSum (``docs/tasks.md`` §8). A one-line summary of a chat, scored with ROUGE. Its test set is
one JSON list of dialogues."""

from __future__ import annotations

import json
from pathlib import Path

from rouge import Rouge
from rouge_score import rouge_scorer

from lit_edit.tasks.base import DownstreamTask, Query, ratio
from lit_edit.tasks.formats import BadLines, GoldCheck, TaskFormatError, record_problem

FILE = "test-summarization.json"
GOLD = GoldCheck("summary", "a string with more than dots (the paper score's ROUGE cannot read one of dots only)",
                 lambda v: isinstance(v, str) and v.replace(".", "") != "")
CORRECTED_SCORER = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TaskFormatError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(records, list):
        raise TaskFormatError(f"{path}: expected a JSON list of dialogues, found {type(records).__name__}")
    kept = []
    for i, record in enumerate(records):
        problem = record_problem(record, ("summary", "dialogue"), GOLD, f"{path}[{i}]")
        if problem:
            bad(problem)
        else:
            kept.append(record)
    return kept


def write(path: Path, records) -> None:
    path.write_text(json.dumps(records, indent=2, ensure_ascii=False), encoding="utf-8")


def prompt(record: dict) -> str:
    return f"{record['dialogue']}\nTL;DR:"


def gold_label(record: dict) -> str:
    return record["summary"]


def paper_prediction(continuation_with_eos: str) -> str:
    """The reference's prediction: the continuation with its last 13 characters cut, meant for ``<|endoftext|>``
    (correct only when EOS was generated)."""
    return continuation_with_eos[0:-13]


def rouge_package_f(hypothesis: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F of one pair, from the ``rouge`` 1.0.1 package called as the reference's summarization script
    calls it (``docs/fidelity.md``): ``Rouge().get_scores(hypothesis, reference)`` with its defaults (one score per
    pair, n-grams and LCS words as sets), the ``f`` of ``rouge-1``, ``rouge-2``, ``rouge-l``. Raises the package's
    ``ValueError`` when either text has nothing but dots."""
    score = Rouge().get_scores(hypothesis, reference)[0]
    return {"rouge1": score["rouge-1"]["f"], "rouge2": score["rouge-2"]["f"], "rougeL": score["rouge-l"]["f"]}


def paper_score(continuation_with_eos: str, reference: str) -> dict[str, float]:
    """The reference's per-example score: (R1 + R2 + RL) / 3 of :func:`rouge_package_f`, 0 for a prediction of ≤ 1
    character. A prediction the package cannot score (dots only: ``ValueError: Hypothesis is empty.``, which stops
    the reference's run) scores 0 and sets ``unscorable``, so that a run can say how many there were."""
    predict = paper_prediction(continuation_with_eos)
    if len(predict) <= 1:
        return {"rouge_avg": 0.0, "unscorable": 0}
    try:
        scores = rouge_package_f(predict, reference)
    except ValueError:
        return {"rouge_avg": 0.0, "unscorable": 1}
    return {"rouge_avg": (scores["rouge1"] + scores["rouge2"] + scores["rougeL"]) / 3, "unscorable": 0}


class SummarizationTask(DownstreamTask):
    """corrected: ROUGE-1/2/L F (``rouge-score``, stemming) of the continuation cut at EOS (no newline cut, as the
    reference); paper: the mean of R1/R2/RL from the ``rouge`` 1.0.1 package on the reference's 13-character cut,
    and ``unscorable``: how many predictions the package refused (dots only; scored 0)."""

    counters = ("n", "rouge1", "rouge2", "rougeL", "paper/rouge_avg", "paper/unscorable")
    primary = {"corrected": "rougeL", "paper": "rouge_avg"}

    def queries(self, record):
        return [Query("corrected", prompt(record), self.max_new_tokens)]

    def score(self, record, generations, after_edit, option_nll=None):
        generation = generations["corrected"]
        scores = CORRECTED_SCORER.score(record["summary"], generation.continuation)
        paper = paper_score(generation.reference_text.split("DR:")[-1], record["summary"])
        return {"n": 1, **{k: scores[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")},
                "paper/rouge_avg": paper["rouge_avg"], "paper/unscorable": paper["unscorable"]}

    def summarize(self, sums, ordered=None):
        return {"corrected": {k: ratio(sums[k], sums["n"]) for k in ("rouge1", "rouge2", "rougeL")},
                "paper": {"rouge_avg": ratio(sums["paper/rouge_avg"], sums["n"]),
                          "unscorable": int(round(sums["paper/unscorable"]))}}


TASK = SummarizationTask(name="summarization", file=FILE, max_new_tokens=25, read=read, write=write, prompt=prompt,
                         gold_label=gold_label)
