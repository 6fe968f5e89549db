"""Edit metrics: reliability, generality, locality, portability in three labelled families (docs/evaluation.md).

- ``token`` (ZsRE / EasyEdit style): teacher-forced token accuracy of ``prompt + " " + answer``; locality is
  the fraction of argmax tokens on ``locality prompt + answer`` equal to the *pre-edit* model's.
- ``probability`` (CounterFact style): reliability / generality = [NLL(new) < NLL(true)] with mean per-token NLL,
  locality = [NLL(locality answer) < NLL(new)], each with its magnitude e^{−NLL(expected)} − e^{−NLL(other)}.
  Needs ``target_true``; portability has no alternative answer and is not scored.
- ``generation`` (strict): greedy generation (≤ ``max_new_tokens``, stop at newline/EOS, no length hint),
  SQuAD-normalised exact match; locality = generation equal to the pre-edit generation.
- ``counterfact`` (CounterFact's generation prompts): ``counterfact/fluency`` and ``counterfact/consistency`` of
  sampled generations (``lit_edit.metrics.counterfact_generation``; docs/evaluation.md §13). It adds to the
  other families and is listed after one of them.

A request's generality / locality / portability is the mean over its prompts; a metric a request cannot have
(no rephrases, no ``target_true``) is None and is left out of the averages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lit_edit.answer_match import exact_match, normalize_answer
from lit_edit.editing.requests import EditRequest
from lit_edit.generation import greedy_continuations
from lit_edit.metrics.counterfact_generation import METRIC_KEYS as COUNTERFACT_KEYS
from lit_edit.metrics.counterfact_generation import score_counterfact_generation
from lit_edit.scoring import score_answers

FAMILIES = ("token", "probability", "generation", "counterfact")
METRICS = ("reliability", "generality", "locality", "portability")


def metric_keys(families: Sequence[str]) -> list[str]:
    """``family/metric`` for every metric, plus the probability family's magnitudes."""
    keys = [f"{family}/{metric}" for family in families if family != "counterfact" for metric in METRICS]
    if "probability" in families:
        keys += [f"probability/{metric}_magnitude" for metric in ("reliability", "generality", "locality")]
    if "counterfact" in families:
        keys += list(COUNTERFACT_KEYS)
    return keys


def check_families(families: Sequence[str]) -> tuple[str, ...]:
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown edit-metric families {unknown}; choose from {FAMILIES}")
    if families[0] == "counterfact":
        raise ValueError("the edit-metric family 'counterfact' (fluency and consistency) adds to another family and "
                         f"cannot come first: list it after one of {FAMILIES[:-1]}, e.g. [probability, counterfact]")
    return tuple(families)


@dataclass
class PreEditReference:
    """The unedited model's outputs on every locality prompt, keyed by request id."""

    locality_tokens: dict[str, list[list[int]]] = field(default_factory=dict)
    locality_generations: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"locality_tokens": self.locality_tokens, "locality_generations": self.locality_generations}

    @classmethod
    def from_dict(cls, data: dict) -> PreEditReference:
        return cls(data["locality_tokens"], data["locality_generations"])


def pre_edit_reference(model, tokenizer, requests: Sequence[EditRequest], families: Sequence[str],
                       max_new_tokens: int = 32, batch_size: int = 64) -> PreEditReference:
    """What locality compares against, computed once on the unedited model."""
    probes = [(r.record_id, p) for r in requests for p in r.locality]
    reference = PreEditReference({r.record_id: [] for r in requests}, {r.record_id: [] for r in requests})
    if not probes:
        return reference
    if "token" in families:
        scores = score_answers(model, tokenizer, [p.prompt for _, p in probes], [p.answer for _, p in probes],
                               batch_size)
        for (rid, _), score in zip(probes, scores):
            reference.locality_tokens[rid].append(score.predicted)
    if "generation" in families:
        texts = greedy_continuations(model, tokenizer, [p.prompt for _, p in probes], max_new_tokens, batch_size,
                                     stop_at_newline=True)
        for (rid, _), text in zip(probes, texts):
            reference.locality_generations[rid].append(text)
    return reference


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def score_requests(model, tokenizer, requests: Sequence[EditRequest], families: Sequence[str],
                   reference: PreEditReference | None, max_new_tokens: int = 32, batch_size: int = 64
                   ) -> list[dict[str, float | None]]:
    """Per request, every metric of ``metric_keys(families)`` on the model as it is now."""
    results = [dict.fromkeys(metric_keys(families)) for _ in requests]
    if "token" in families or "probability" in families:
        _teacher_forced(model, tokenizer, requests, families, reference, results, batch_size)
    if "generation" in families:
        _generated(model, tokenizer, requests, reference, results, max_new_tokens, batch_size)
    if "counterfact" in families:
        score_counterfact_generation(model, tokenizer, requests, results, batch_size)
    return results


def _teacher_forced(model, tokenizer, requests, families, reference, results, batch_size) -> None:
    # one list of (request index, role, prompt, answer); scored in one batched pass
    pairs = []
    for i, r in enumerate(requests):
        for role, prompt in [("reliability", r.text)] + [("generality", p) for p in r.rephrase_prompts]:
            pairs.append((i, role, prompt, r.target_new))
            if "probability" in families and r.target_true is not None:
                pairs.append((i, role + "_true", prompt, r.target_true))
        for probe in r.locality:
            pairs.append((i, "locality", probe.prompt, probe.answer))
            if "probability" in families:
                pairs.append((i, "locality_new", probe.prompt, r.target_new))
        for probe in r.portability:
            pairs.append((i, "portability", probe.prompt, probe.answer))
    scores = score_answers(model, tokenizer, [p[2] for p in pairs], [p[3] for p in pairs], batch_size)
    by_request: list[dict[str, list]] = [{} for _ in requests]
    for (i, role, _, _), score in zip(pairs, scores):
        by_request[i].setdefault(role, []).append(score)
    for i, (r, roles) in enumerate(zip(requests, by_request)):
        out = results[i]
        if "token" in families:
            out["token/reliability"] = roles["reliability"][0].token_accuracy
            out["token/generality"] = _mean([s.token_accuracy for s in roles.get("generality", [])])
            out["token/portability"] = _mean([s.token_accuracy for s in roles.get("portability", [])])
            if reference is not None and roles.get("locality"):
                pre = reference.locality_tokens[r.record_id]
                out["token/locality"] = _mean([sum(a == b for a, b in zip(s.predicted, before)) / len(before)
                                               for s, before in zip(roles["locality"], pre)])
        if "probability" in families:
            if r.target_true is not None:
                for metric in ("reliability", "generality"):
                    new, true = roles.get(metric, []), roles.get(metric + "_true", [])
                    if new:
                        out[f"probability/{metric}"] = _mean([float(n.mean_nll < t.mean_nll) for n, t in zip(new, true)])
                        out[f"probability/{metric}_magnitude"] = _mean(
                            [math.exp(-n.mean_nll) - math.exp(-t.mean_nll) for n, t in zip(new, true)])
            kept, new = roles.get("locality", []), roles.get("locality_new", [])
            if kept:
                out["probability/locality"] = _mean([float(k.mean_nll < n.mean_nll) for k, n in zip(kept, new)])
                out["probability/locality_magnitude"] = _mean(
                    [math.exp(-k.mean_nll) - math.exp(-n.mean_nll) for k, n in zip(kept, new)])


def _generated(model, tokenizer, requests, reference, results, max_new_tokens, batch_size) -> None:
    prompts = []
    for i, r in enumerate(requests):
        prompts += [(i, "reliability", r.text, r.target_new)]
        prompts += [(i, "generality", p, r.target_new) for p in r.rephrase_prompts]
        prompts += [(i, "portability", p.prompt, p.answer) for p in r.portability]
        prompts += [(i, "locality", p.prompt, None) for p in r.locality]
    texts = greedy_continuations(model, tokenizer, [p[2] for p in prompts], max_new_tokens, batch_size,
                                 stop_at_newline=True)
    hits: list[dict[str, list[float]]] = [{} for _ in requests]
    for (i, role, _, answer), text in zip(prompts, texts):
        if role == "locality":
            continue
        hits[i].setdefault(role, []).append(float(exact_match(text, answer)))
    for i, r in enumerate(requests):
        for role in ("reliability", "generality", "portability"):
            results[i][f"generation/{role}"] = _mean(hits[i].get(role, []))
        if reference is not None and r.locality:
            now = [text for (j, role, _, _), text in zip(prompts, texts) if j == i and role == "locality"]
            before = reference.locality_generations[r.record_id]
            results[i]["generation/locality"] = _mean(
                [float(normalize_answer(a) == normalize_answer(b)) for a, b in zip(now, before)])
