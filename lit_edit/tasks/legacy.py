"""The reference harness's parsers and scores, quirks included (``docs/tasks.md`` §2-9), for ``paper`` mode.

Every function takes what the reference looked at: ``full_text``, the decode of prompt + continuation with
the tokenizer's clean-up and the EOS token spelled out, and returns that example's contribution to the
reference's counters. The corrected rules live in :mod:`lit_edit.tasks.parsing`; both are computed from the same
generation.
"""

from __future__ import annotations

from rouge import Rouge

from lit_edit.tasks.parsing import normalize_answer

_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def clean_up_tokenization(text: str) -> str:
    """The decode clean-up of the reference's transformers (4.30; ``docs/tasks.md`` §1): `` ,`` → ``,``, `` 's`` →
    ``'s``, ... Newer transformers skip it for BPE tokenizers, so it is applied here explicitly."""
    for before, after in _CLEAN_UP:
        text = text.replace(before, after)
    return text


def _after(full_text: str, marker: str, index: int) -> str:
    """``full_text.split(marker)[index]`` for index 1 or -1 (empty when the marker is missing)."""
    parts = full_text.split(marker)
    if index == -1:
        return parts[-1]
    return parts[index] if len(parts) > index else ""


def _four_counters(says_positive: bool, says_negative: bool, gold_positive: bool) -> dict[str, int]:
    """The reference's ``if``/``elif`` over (positive & gold, negative & not gold, negative & gold, positive & not
    gold): parsed when either word was found, correct when the gold's word was — so an answer holding both words is
    correct whatever the gold."""
    if not (says_positive or says_negative):
        return {"correct": 0, "parsed": 0}
    return {"correct": int(says_positive if gold_positive else says_negative), "parsed": 1}


def closed_domain_qa(full_text: str, gold: bool, after_edit: bool) -> dict[str, int]:
    """BoolQ (§2): the text between the first ``answer:`` and the next; exact `` yes``/`` no`` before editing,
    substring after.

    Returns the reference's counters: ``correct`` (its TP + "FN"), ``parsed`` (TP+FN+TN+FP)."""
    predict = _after(full_text, "answer:", 1).lower()
    if after_edit:
        return _four_counters("yes" in predict, "no" in predict, gold)
    return _four_counters(predict == " yes", predict == " no", gold)


def _substring_pair(predict: str, positive: str, negative: str, gold_positive: bool) -> dict[str, int]:
    predict = predict.lower()
    return _four_counters(positive in predict, negative in predict, gold_positive)


def nli(full_text: str, gold_entailment: bool) -> dict[str, int]:
    """RTE (§3): substring ``true`` / ``false`` in the text after the last ``answer:`` (``untrue`` is true). The
    reference's two ``if`` (not ``elif``) add an answer holding both words to two of its counters; here it is one
    parsed answer (a one-token answer never holds both)."""
    return _substring_pair(_after(full_text, "answer:", -1), "true", "false", gold_entailment)


def sentiment(full_text: str, gold_positive: bool) -> dict[str, int]:
    """SST-2 (§4): substring ``positive`` / ``negative`` after the last ``answer:``."""
    return _substring_pair(_after(full_text, "answer:", -1), "positive", "negative", gold_positive)


def dialogue(full_text: str, gold_letter: str, after_edit: bool) -> dict[str, int]:
    """MuTual (§5): any capital A-D anywhere in the text after the last ``the answer is`` parses (`` According``
    is an A); correct iff the gold letter is in it; after editing only, text containing ``Chi`` is unparsed."""
    predict = _after(full_text, "the answer is", -1)
    if after_edit and "Chi" in predict:
        return {"correct": 0, "parsed": 0}
    if not any(letter in predict for letter in "ABCD"):
        return {"correct": 0, "parsed": 0}
    return {"correct": int(gold_letter in predict), "parsed": 1}


def reasoning(full_text: str, gold_answer: str) -> dict[str, int]:
    """GSM8K (§6): correct iff the raw gold string (``2,125``) is a substring of the continuation (``1`` is in
    `` 10``). Nothing counts as unparsed."""
    predict = _after(full_text, "Therefore, the answer (arabic numerals) is:", 1)
    return {"correct": int(gold_answer in predict), "parsed": 1}


def open_domain_qa_scan(full_text: str, answers: list[str], flagged: bool) -> tuple[int, bool]:
    """NQ (§7), one example of the reference's scan: ``(count added, flag afterwards)``.

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


def open_domain_qa_outcomes(full_text: str, answers: list[str]) -> tuple[int, int, int]:
    """The two possible outcomes of :func:`open_domain_qa_scan`, so that examples can be scored apart (and on
    several processes) and the global flag replayed in file order afterwards: ``(count if the flag is still
    down, 1 if this example sets it, count if it is already up)``."""
    count_down, flag_after = open_domain_qa_scan(full_text, answers, False)
    count_up, _ = open_domain_qa_scan(full_text, answers, True)
    return count_down, int(flag_after), count_up


def replay_open_domain_qa(outcomes: list[tuple[int, int, int]]) -> int:
    """The reference's total count over examples in file order, from :func:`open_domain_qa_outcomes`."""
    total, flagged = 0, False
    for count_down, sets_flag, count_up in outcomes:
        if flagged:
            total += count_up
        else:
            total += count_down
            flagged = bool(sets_flag)
    return total


def summarization_prediction(continuation_with_eos: str) -> str:
    """SAMSum (§8): the continuation with its last 13 characters cut, meant for ``<|endoftext|>`` (correct
    only when EOS was generated)."""
    return continuation_with_eos[0:-13]


def rouge_package_f(hypothesis: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F of one pair, from the ``rouge`` 1.0.1 package called as the reference's summarization script
    calls it (``docs/fidelity.md``): ``Rouge().get_scores(hypothesis, reference)`` with its defaults (one score per
    pair, n-grams and LCS words as sets), the ``f`` of ``rouge-1``, ``rouge-2``, ``rouge-l``. Raises the package's
    ``ValueError`` when either text has nothing but dots."""
    score = Rouge().get_scores(hypothesis, reference)[0]
    return {"rouge1": score["rouge-1"]["f"], "rouge2": score["rouge-2"]["f"], "rougeL": score["rouge-l"]["f"]}


def summarization(continuation_with_eos: str, reference: str) -> dict[str, float]:
    """The reference's per-example score: (R1 + R2 + RL) / 3 of :func:`rouge_package_f`, 0 for a prediction of ≤ 1
    character. A prediction the package cannot score (dots only: ``ValueError: Hypothesis is empty.``, which stops
    the reference's run) scores 0 and sets ``unscorable``, so that a run can say how many there were."""
    predict = summarization_prediction(continuation_with_eos)
    if len(predict) <= 1:
        return {"rouge_avg": 0.0, "unscorable": 0}
    try:
        scores = rouge_package_f(predict, reference)
    except ValueError:
        return {"rouge_avg": 0.0, "unscorable": 1}
    return {"rouge_avg": (scores["rouge1"] + scores["rouge2"] + scores["rougeL"]) / 3, "unscorable": 0}


def ner_gold(words: list[str], tags: list[str], entity_type: str) -> list[str]:
    """The reference's gold entities of one type (docs/tasks.md §9): a span runs from ``B-X`` to the next ``O`` (so
    it swallows an adjacent entity and drops the last token of a sentence-final one, which can leave an empty string)."""
    entities, k = [], 0
    while k < len(tags):
        if tags[k] == f"B-{entity_type}":
            m = k
            for m in range(k, len(tags)):
                if tags[m] == "O":
                    break
            text = ""
            while k < m:
                text += " " + words[k]
                k += 1
            entities.append(text[1:])
            k = m
        k += 1
    return entities


def ner(full_text: str, words: list[str], tags: list[str], entity_type: str) -> dict[str, int]:
    """One sentence and type of the reference's NER "accuracy" (docs/tasks.md §9): ``hits`` gold strings found as
    substrings of the text after ``Entity:``, over ``total`` = the number of gold strings; for MISC only, a sentence without
    gold MISC adds 1 to the total; an empty continuation with no gold is a hit out of 1."""
    predict = _after(full_text, "Entity:", 1)
    gold = ner_gold(words, tags, entity_type)
    if not gold:
        if len(predict) == 0:
            return {"hits": 1, "total": 1}
        return {"hits": 0, "total": int(entity_type == "MISC")}
    return {"hits": sum(entity in predict for entity in gold), "total": len(gold)}

