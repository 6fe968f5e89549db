"""The 8 downstream tasks: what to generate for a record, and how one generation is scored in both modes.

A task turns a record into :class:`Query` objects (a prompt variant and its decoding length); queries with the
same prompt and length are generated once and shared by the two modes. :meth:`DownstreamTask.score` turns the
generations of one record into counter increments: ``paper/...`` counters follow the reference harness with its
quirks (:mod:`lit_edit.tasks.legacy`), the others the corrected rules (:mod:`lit_edit.tasks.parsing`).
:meth:`DownstreamTask.summarize` turns summed counters into the reported numbers. Sums make the scores
shard-safe: :class:`lit_edit.tasks.metrics.DownstreamMetric` adds them across processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rouge_score import rouge_scorer

from lit_edit.generation import Generation
from lit_edit.tasks import legacy, parsing, prompts

TASK_NAMES = ("reasoning", "nli", "open_domain_qa", "closed_domain_qa", "dialogue", "summarization", "ner",
              "sentiment")


@dataclass(frozen=True)
class Query:
    """One generation a record needs: ``variant`` names it for the scorer; decoding stops after
    ``max_new_tokens`` or once the new text contains ``stop`` (the scorer would cut there anyway)."""

    variant: str
    prompt: str
    max_new_tokens: int
    stop: str | None = None


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


class DownstreamTask:
    """Base class; subclasses name their counters and implement the three steps."""

    name: str
    counters: tuple[str, ...]
    ordered: tuple[str, ...] = ()   # per-example tuples replayed in file order (the NQ reference's global flag)
    primary: dict[str, str]         # the headline metric of each mode (plots, the README tables)

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


class ChoiceTask(DownstreamTask):
    """A one-token answer from a fixed set (BoolQ, RTE, SST-2, MuTual).

    corrected: ``acc_all`` = correct / all examples (primary), ``acc_parsed``, ``parse_rate``, one parser before
    and after editing; paper: the reference's ``accuracy`` (over parsed) and ``total_accuracy`` (over all);
    loglik (only when asked for): the option with the lowest summed NLL after the corrected prompt, ``acc_all``.

    ``option_texts`` are the answers in the parsed space's order; ``gold_option`` picks the gold one's index."""

    counters = ("n", "correct", "parsed", "paper/correct", "paper/parsed", "loglik/n", "loglik/correct")
    primary = {"corrected": "acc_all", "paper": "total_accuracy", "loglik": "acc_all"}

    def __init__(self, name: str, paper_prompt: Callable[[dict], str], legacy_score: Callable[..., dict],
                 option_texts: list[str], gold_option: Callable[[dict], int]):
        self.name, self._paper_prompt, self._legacy_score = name, paper_prompt, legacy_score
        self.option_texts, self._gold_option = option_texts, gold_option

    def options(self, record: dict) -> tuple[str, list[str]]:
        return getattr(prompts, self.name)(record), list(self.option_texts)

    def queries(self, record: dict) -> list[Query]:
        corrected = getattr(prompts, self.name)(record)
        paper = self._paper_prompt(record)
        queries = [Query("corrected", corrected, parsing.MAX_NEW_TOKENS[self.name])]
        return queries + ([Query("paper", paper, parsing.MAX_NEW_TOKENS[self.name])] if paper != corrected else [])

    def score(self, record: dict, generations: Mapping[str, Generation], after_edit: bool,
              option_nll: Sequence[float] | None = None) -> dict:
        corrected = generations["corrected"]
        paper = generations.get("paper", corrected)
        parsed = parsing.PARSERS[self.name](corrected.continuation)
        legacy_counts = self._legacy_score(paper.reference_text, record, after_edit)
        out = {"n": 1, "correct": int(parsed is not None and parsed == parsing.gold_label(self.name, record)),
               "parsed": int(parsed is not None), "paper/correct": legacy_counts["correct"],
               "paper/parsed": legacy_counts["parsed"]}
        if option_nll is not None:
            if len(option_nll) != len(self.option_texts):
                raise ValueError(f"{self.name}: {len(option_nll)} option NLLs for {len(self.option_texts)} options")
            best = min(range(len(option_nll)), key=lambda i: option_nll[i])   # ties: the first option
            out.update({"loglik/n": 1, "loglik/correct": int(best == self._gold_option(record))})
        return out

    def summarize(self, sums, ordered=None):
        modes = {"corrected": {"acc_all": _ratio(sums["correct"], sums["n"]),
                               "acc_parsed": _ratio(sums["correct"], sums["parsed"]),
                               "parse_rate": _ratio(sums["parsed"], sums["n"])},
                 "paper": {"accuracy": _ratio(sums["paper/correct"], sums["paper/parsed"]),
                           "total_accuracy": _ratio(sums["paper/correct"], sums["n"])}}
        if sums.get("loglik/n"):
            modes["loglik"] = {"acc_all": _ratio(sums["loglik/correct"], sums["loglik/n"])}
        return modes


def _nli_paper_prompt(record: dict) -> str:
    return prompts.nli({**record, "sentence1": record.get("paper_sentence1", record["sentence1"]),
                        "sentence2": record.get("paper_sentence2", record["sentence2"])})


class ReasoningTask(DownstreamTask):
    """GSM8K. corrected: the question alone (no solution in the prompt), the first number compared numerically;
    paper: the reference's prompt with the gold solution (labelled ``hinted``), raw substring match."""

    name = "reasoning"
    counters = ("n", "correct", "parsed", "paper/correct")
    primary = {"corrected": "acc_all", "paper": "accuracy_hinted"}

    def queries(self, record):
        length = parsing.MAX_NEW_TOKENS["reasoning"]
        return [Query("corrected", prompts.reasoning(record, hinted=False), length),
                Query("paper", prompts.reasoning(record, hinted=True), length)]

    def score(self, record, generations, after_edit, option_nll=None):
        parsed = parsing.parse_number(generations["corrected"].continuation)
        gold = record["answer"].split("#### ")[-1].strip()
        return {"n": 1, "parsed": int(parsed is not None),
                "correct": int(parsed is not None and parsed == parsing.gold_label("reasoning", record)),
                "paper/correct": legacy.reasoning(generations["paper"].reference_text, gold)["correct"]}

    def summarize(self, sums, ordered=None):
        return {"corrected": {"acc_all": _ratio(sums["correct"], sums["n"]),
                              "parse_rate": _ratio(sums["parsed"], sums["n"])},
                "paper": {"accuracy_hinted": _ratio(sums["paper/correct"], sums["n"])}}


def span_exact_match(continuation: str, answers: list[str]) -> bool:
    """Some contiguous word n-gram of the normalised continuation equals a normalised gold answer."""
    words = parsing.normalize_answer(continuation.split("\n")[0]).split()
    golds = {parsing.normalize_answer(a) for a in answers}
    return any(" ".join(words[i:j]) in golds for i in range(len(words)) for j in range(i + 1, len(words) + 1))


class OpenDomainQATask(DownstreamTask):
    """NQ with a generated passage. corrected: the prompt ends in `` Answer:``, the continuation is cut at the
    first newline, ``em`` (SQuAD-normalised exact match, primary) and ``span_em``; paper: the reference's prompt
    without the cue and its scan over prompt + continuation with the global flag (replayed in file order)."""

    name = "open_domain_qa"
    counters = ("n", "em", "span_em")
    ordered = ("paper/scan",)
    primary = {"corrected": "em", "paper": "em"}

    def queries(self, record):
        length = parsing.MAX_NEW_TOKENS["open_domain_qa"]
        return [Query("corrected", prompts.open_domain_qa(record, answer_cue=True), length, stop="\n"),
                Query("paper", prompts.open_domain_qa(record, answer_cue=False), length)]

    def score(self, record, generations, after_edit, option_nll=None):
        continuation = generations["corrected"].continuation
        return {"n": 1, "em": int(parsing.open_qa_exact_match(continuation, record["answer"])),
                "span_em": int(span_exact_match(continuation, record["answer"])),
                "paper/scan": legacy.open_domain_qa_outcomes(generations["paper"].reference_text, record["answer"])}

    def summarize(self, sums, ordered=None):
        scans = (ordered or {}).get("paper/scan", [])
        return {"corrected": {"em": _ratio(sums["em"], sums["n"]), "span_em": _ratio(sums["span_em"], sums["n"])},
                "paper": {"em": _ratio(legacy.replay_open_domain_qa(scans), sums["n"]) if scans else None}}


class SummarizationTask(DownstreamTask):
    """SAMSum. corrected: ROUGE-1/2/L F (``rouge-score``, stemming) of the continuation cut at EOS (no newline
    cut, as the reference); paper: the mean of R1/R2/RL from the ``rouge`` 1.0.1 package on the reference's
    13-character cut, and ``unscorable``: how many predictions the package refused (dots only; scored 0)."""

    name = "summarization"
    counters = ("n", "rouge1", "rouge2", "rougeL", "paper/rouge_avg", "paper/unscorable")
    primary = {"corrected": "rougeL", "paper": "rouge_avg"}

    def __init__(self):
        self._scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)

    def queries(self, record):
        return [Query("corrected", prompts.summarization(record), parsing.MAX_NEW_TOKENS["summarization"])]

    def score(self, record, generations, after_edit, option_nll=None):
        generation = generations["corrected"]
        scores = self._scorer.score(record["summary"], generation.continuation)
        paper = legacy.summarization(generation.reference_text.split("DR:")[-1], record["summary"])
        return {"n": 1, **{k: scores[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")},
                "paper/rouge_avg": paper["rouge_avg"], "paper/unscorable": paper["unscorable"]}

    def summarize(self, sums, ordered=None):
        return {"corrected": {k: _ratio(sums[k], sums["n"]) for k in ("rouge1", "rouge2", "rougeL")},
                "paper": {"rouge_avg": _ratio(sums["paper/rouge_avg"], sums["n"]),
                          "unscorable": int(round(sums["paper/unscorable"]))}}


class NERTask(DownstreamTask):
    """CoNLL-2003, four prompts per sentence. corrected: entity-level F1 from IOB2 spans, gold and listed items
    through one normalisation (:func:`parsing.normalize_entity`), each distinct entity of a sentence counted once,
    ``-DOCSTART-`` skipped: per type (``f1_PER`` ...), ``micro_f1`` over all entities of all types (primary, CoNLL's
    usual headline) and ``macro_f1``, the mean of the four types; paper: the reference's per-type substring hit
    rate with its span bug and MISC denominator, and their mean."""

    name = "ner"
    counters = ("n",) + tuple(f"{c}/{t}" for t in prompts.NER_TYPES for c in ("tp", "fp", "fn")) + tuple(
        f"paper/{c}/{t}" for t in prompts.NER_TYPES for c in ("hits", "total"))
    primary = {"corrected": "micro_f1", "paper": "acc_total"}

    def queries(self, record):
        return [Query(kind, prompts.ner(record, kind), parsing.MAX_NEW_TOKENS["ner"]) for kind in prompts.NER_TYPES]

    def score(self, record, generations, after_edit, option_nll=None):
        docstart = record.get("docstart", False)
        out = {"n": int(not docstart)}
        for kind in prompts.NER_TYPES:
            generation = generations[kind]
            if not docstart:
                predicted = parsing.parse_entities(generation.continuation)
                gold = parsing.gold_entities(record["tokens"], record["tags"], kind)
                for name, value in zip(("tp", "fp", "fn"), parsing.ner_counts(predicted, gold)):
                    out[f"{name}/{kind}"] = value
            counts = legacy.ner(generation.reference_text, record["tokens"], record["tags"], kind)
            out[f"paper/hits/{kind}"], out[f"paper/total/{kind}"] = counts["hits"], counts["total"]
        return out

    def summarize(self, sums, ordered=None):
        kinds = prompts.NER_TYPES
        f1 = {kind: parsing.entity_f1(sums[f"tp/{kind}"], sums[f"fp/{kind}"], sums[f"fn/{kind}"]) for kind in kinds}
        micro = parsing.entity_f1(*(sum(sums[f"{c}/{kind}"] for kind in kinds) for c in ("tp", "fp", "fn")))
        hit_rate = {kind: _ratio(sums[f"paper/hits/{kind}"], sums[f"paper/total/{kind}"]) for kind in prompts.NER_TYPES}
        rates = [r for r in hit_rate.values() if r is not None]
        return {"corrected": {"micro_f1": micro, "macro_f1": sum(f1.values()) / len(f1),
                              **{f"f1_{k}": v for k, v in f1.items()}},
                "paper": {"acc_total": sum(rates) / len(rates) if rates else None,
                          **{f"acc_{k}": v for k, v in hit_rate.items()}}}


TASKS: dict[str, DownstreamTask] = {
    "closed_domain_qa": ChoiceTask("closed_domain_qa", prompts.closed_domain_qa,
                                   lambda text, r, after: legacy.closed_domain_qa(
                                       text, parsing.gold_label("closed_domain_qa", r), after),
                                   ["yes", "no"], lambda r: 0 if parsing.gold_label("closed_domain_qa", r) else 1),
    "nli": ChoiceTask("nli", _nli_paper_prompt, lambda text, r, after: legacy.nli(text, r["label"] == "entailment"),
                      ["True", "False"], lambda r: 0 if parsing.gold_label("nli", r) else 1),
    "sentiment": ChoiceTask("sentiment", prompts.sentiment,
                            lambda text, r, after: legacy.sentiment(text, int(r["label"]) == 1),
                            ["negative", "positive"], lambda r: parsing.gold_label("sentiment", r)),
    "dialogue": ChoiceTask("dialogue", prompts.dialogue,
                           lambda text, r, after: legacy.dialogue(text, r["answers"], after),
                           ["A", "B", "C", "D"], lambda r: "ABCD".index(parsing.gold_label("dialogue", r))),
    "reasoning": ReasoningTask(),
    "open_domain_qa": OpenDomainQATask(),
    "summarization": SummarizationTask(),
    "ner": NERTask(),
}
"""One registry: task name -> its scorer."""


def get_task(name: str) -> DownstreamTask:
    if name not in TASKS:
        raise KeyError(f"unknown downstream task {name!r}; known: {sorted(TASKS)}")
    return TASKS[name]
