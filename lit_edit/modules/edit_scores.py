"""The edit-metric scores of an editing run (``lit_edit.metrics``, docs/evaluation.md): each request's scores at
each stage (``pre``, ``immediate``, ``final``: the columns of ``requests.csv``), the running mean of the immediate
scores, and the means ``metrics.json`` records (``pre``, ``periodic``, ``retention``, ``final``)."""

from __future__ import annotations

from collections.abc import Sequence

from lit_edit.distributed import SINGLE, Ranks, map_chunks
from lit_edit.editing.requests import EditRequest
from lit_edit.metrics import MeanScores, PreEditReference, metric_keys, score_requests


class EditScores:
    """Scores requests on the model as it is now and keeps what a run records of them.

    Args:
        families: the edit-metric families.
        max_new_tokens: generation length of the ``generation`` family.
        batch_size: prompts per forward pass; also requests per chunk shared between the ranks
            (``lit_edit.distributed``).
    """

    def __init__(self, families: Sequence[str], max_new_tokens: int, batch_size: int):
        self.families, self.max_new_tokens, self.batch_size = families, max_new_tokens, batch_size
        self.reference: PreEditReference | None = None     # set before the first score
        self.ranks: Ranks = SINGLE
        self.immediate = MeanScores(metric_keys(families), sync_on_compute=False)   # every rank has all scores
        self.by_request: dict[str, dict[str, dict]] = {"pre": {}, "immediate": {}}   # stage → record id → scores
        self.latest: tuple[int, list[dict]] | None = None   # the last periodic point: how many edits, their scores

    def score(self, model, tokenizer, requests: Sequence[EditRequest]) -> list[dict]:
        """Every request's scores, in request order on every rank (the ranks share the chunks)."""
        def score(chunk):
            return score_requests(model, tokenizer, chunk, self.families, self.reference, self.max_new_tokens,
                                  self.batch_size)

        return map_chunks(score, requests, self.batch_size, self.ranks)

    def mean(self, scores: list[dict]) -> dict:
        metric = MeanScores(metric_keys(self.families), sync_on_compute=False)
        metric.update(scores)
        return metric.compute()

    def of_stage(self, stage: str, model, tokenizer, requests: Sequence[EditRequest],
                 scores: list[dict] | None = None) -> dict:
        """Score ``requests`` as the ``stage`` (``pre`` or ``final``) of every one of them (or take their ``scores``,
        made on the model as it is now); returns the mean."""
        scores = self.score(model, tokenizer, requests) if scores is None else scores
        self.by_request[stage] = {r.record_id: own for r, own in zip(requests, scores)}
        return self.mean(scores)

    def after_step(self, model, tokenizer, batch: Sequence[EditRequest]) -> dict:
        """The immediate scores of the batch just applied (added to the running mean); returns their mean."""
        scores = self.score(model, tokenizer, batch)
        self.immediate.update(scores)
        self.by_request["immediate"].update({r.record_id: own for r, own in zip(batch, scores)})
        return self.mean(scores)

    def immediate_mean(self) -> dict | None:
        """The mean of every immediate score so far (None before the first)."""
        return self.immediate.compute() if self.immediate.counts.sum() > 0 else None

    def periodic(self, model, tokenizer, applied: Sequence[EditRequest], batch_sizes: Sequence[int],
                 cohort_batches: int) -> tuple[dict, dict]:
        """All edits so far: the ``periodic`` point and the ``retention`` point (the first and the latest cohort
        of ``cohort_batches`` batches)."""
        scores = self.score(model, tokenizer, applied)
        self.latest = (len(applied), scores)
        first, latest = sum(batch_sizes[:cohort_batches]), sum(batch_sizes[-cohort_batches:])
        n_edits = len(applied)
        return ({"n_edits": n_edits, "scores": self.mean(scores)},
                {"n_edits": n_edits, "first_cohort": self.mean(scores[:first]),
                 "latest_cohort": self.mean(scores[-latest:])})

    def final(self, model, tokenizer, applied: Sequence[EditRequest], rollback: bool, evaluate: bool) -> dict:
        """``final`` and ``final_source`` of ``metrics.json``: with rollback the immediate scores (each edit was
        scored before its rollback), else all edits scored now (``evaluate``), else None. Edits accumulate without
        rollback, so when the last periodic point scored as many edits as ``applied`` holds, no edit came after it:
        its scores are those of the model as it is now and are taken as they are."""
        if rollback:
            self.by_request["final"] = self.by_request["immediate"]
            return {"final": self.immediate_mean(),
                    "final_source": "immediate scores (the model is restored after every step)"}
        if evaluate and applied:
            scores = self.latest[1] if self.latest is not None and self.latest[0] == len(applied) else None
            return {"final": self.of_stage("final", model, tokenizer, applied, scores),
                    "final_source": "all edits scored after the last step"}
        return {"final": None}
