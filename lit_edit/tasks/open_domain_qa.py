"""Open-domain QA: Natural Questions with a generated passage (``docs/tasks.md`` §7). A short answer, compared with
the gold answers after SQuAD normalisation."""

from __future__ import annotations

from pathlib import Path

from lit_edit.answer_match import normalize_answer
from lit_edit.tasks.base import DownstreamTask, Query, ratio
from lit_edit.tasks.formats import BadLines, GoldCheck, read_jsonl, write_jsonl

FILE = "test-OpenDomainQA.jsonl"
GOLD = GoldCheck("answer", "a non-empty list of strings",
                 lambda v: isinstance(v, list) and bool(v) and all(isinstance(a, str) for a in v))


def read(path: Path, reference_view: bool, bad: BadLines) -> list[dict]:
    return read_jsonl(path, ("question", "answer", "output"), bad, GOLD)


def prompt(record: dict, answer_cue: bool = True) -> str:
    """``answer_cue`` appends `` Answer:`` (the corrected form; the reference's prompt has none)."""
    prompt = (f"Refer to the passage below and answer the following question. Passage: {record['output'][0]} "
              f"Question: {record['question']}")
    return prompt + " Answer:" if answer_cue else prompt


def gold_label(record: dict) -> list[str]:
    return list(record["answer"])


def exact_match(continuation: str, answers: list[str]) -> bool:
    """The continuation up to its first newline, normalised, equals a normalised gold answer."""
    prediction = normalize_answer(continuation.split("\n")[0])
    return any(prediction == normalize_answer(a) for a in answers)


def span_exact_match(continuation: str, answers: list[str]) -> bool:
    """Some contiguous word n-gram of the normalised continuation equals a normalised gold answer."""
    words = normalize_answer(continuation.split("\n")[0]).split()
    golds = {normalize_answer(a) for a in answers}
    return any(" ".join(words[i:j]) in golds for i in range(len(words)) for j in range(i + 1, len(words) + 1))


def paper_scan(full_text: str, answers: list[str], flagged: bool) -> tuple[int, bool]:
    """One example of the reference's scan: ``(count added, flag afterwards)``.

    ``flagged`` is the reference's *global* flag, set by the first multi-word match and never reset; once it is
    set, only words[0], words[-1] and n-grams starting at words[0] are tried. Without ``Answer:`` in the text
    the scan runs over the whole prompt + continuation."""
    predict = normalize_answer(full_text.split("Answer:")[-1].replace("\n", " "))
    golds = {normalize_answer(a) for a in answers}
    words = predict.split(" ")
    if words[0] in golds or words[-1] in golds:
        return 1, flagged
    count = 0
    for i in range(len(words) - 1):
        output = words[i]
        if output in golds:
            count += 1
            continue
        for j in range(i + 1, len(words)):
            output += " " + words[j]
            if output in golds:
                count += 1
                flagged = True
                break
        if flagged:
            break
    return count, flagged


def paper_outcomes(full_text: str, answers: list[str]) -> tuple[int, int, int]:
    """The two possible outcomes of :func:`paper_scan`, so that examples can be scored apart (and on several
    processes) and the global flag replayed in file order afterwards: ``(count if the flag is still down, 1 if this
    example sets it, count if it is already up)``."""
    count_down, flag_after = paper_scan(full_text, answers, False)
    count_up, _ = paper_scan(full_text, answers, True)
    return count_down, int(flag_after), count_up


def replay_paper_scan(outcomes: list[tuple[int, int, int]]) -> int:
    """The reference's total count over examples in file order, from :func:`paper_outcomes`."""
    total, flagged = 0, False
    for count_down, sets_flag, count_up in outcomes:
        if flagged:
            total += count_up
        else:
            total += count_down
            flagged = bool(sets_flag)
    return total


class OpenDomainQATask(DownstreamTask):
    """corrected: the prompt ends in `` Answer:``, the continuation is cut at the first newline, ``em``
    (SQuAD-normalised exact match, primary) and ``span_em``; paper: the reference's prompt without the cue and its
    scan over prompt + continuation with the global flag (replayed in file order)."""

    counters = ("n", "em", "span_em")
    ordered = ("paper/scan",)
    primary = {"corrected": "em", "paper": "em"}

    def queries(self, record):
        return [Query("corrected", prompt(record, answer_cue=True), self.max_new_tokens, stop="\n"),
                Query("paper", prompt(record, answer_cue=False), self.max_new_tokens)]

    def score(self, record, generations, after_edit, option_nll=None):
        continuation = generations["corrected"].continuation
        return {"n": 1, "em": int(exact_match(continuation, record["answer"])),
                "span_em": int(span_exact_match(continuation, record["answer"])),
                "paper/scan": paper_outcomes(generations["paper"].reference_text, record["answer"])}

    def summarize(self, sums, ordered=None):
        scans = (ordered or {}).get("paper/scan", [])
        return {"corrected": {"em": ratio(sums["em"], sums["n"]), "span_em": ratio(sums["span_em"], sums["n"])},
                "paper": {"em": ratio(replay_paper_scan(scans), sums["n"]) if scans else None}}


TASK = OpenDomainQATask(name="open_domain_qa", file=FILE, max_new_tokens=20, read=read, write=write_jsonl,
                        prompt=prompt, gold_label=gold_label)
