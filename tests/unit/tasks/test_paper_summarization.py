"""Paper-mode SAMSum score: the ``rouge`` 1.0.1 package called as the side-effects study's summarization script calls
it (``Rouge().get_scores(predict, summary)``, per pair, F of rouge-1/2/l averaged), on adversarial strings with
hand-computed values and on real SAMSum records against the package itself."""

import json

import pytest
from rouge import Rouge

from lit_edit.generation import Generation
from lit_edit.tasks import summarization
from lit_edit.tasks.registry import TASKS
from tests.conftest import SHARED_DATA

EOS = "<|endoftext|>"


def paper_score(continuation: str, summary: str, dialogue: str = "Amanda: hi\nJerry: hello") -> dict:
    """The registry's paper counters of one record whose generation is ``continuation`` after the real prompt."""
    record = {"dialogue": dialogue, "summary": summary}
    prompt = summarization.prompt(record)
    generation = Generation([], [], continuation.removesuffix(EOS), prompt + continuation)
    score = TASKS["summarization"].score(record, {"corrected": generation}, after_edit=False)
    return {"rouge_avg": score["paper/rouge_avg"], "unscorable": score["paper/unscorable"]}


# (continuation as generated, EOS spelled out; gold summary; hand-computed (R1 + R2 + RL) / 3 of the package)
HAND_COMPUTED = [
    # the leading space of every continuation is no word: each piece between dots is whitespace-normalised
    (" the cat sat" + EOS, "the cat sat", 1.0),
    # trailing spaces and a newline inside the text
    (" x.\ny z  " + EOS, "x y z", 1.0),
    # repeated words: n-grams and LCS words are sets. R1 P=3/3 R=3/4 -> 6/7; R2 {the cat, cat the, cat sat} vs
    # {the cat, cat sat, sat on, on the}: 2/3, 2/4 -> 4/7; RL: LCS "the cat the cat" is the word set {the, cat}:
    # 2 of 3 distinct hyp words, 2 of 4 distinct ref words -> 4/7
    (" the cat the cat sat" + EOS, "the cat sat on the cat", (6 / 7 + 4 / 7 + 4 / 7) / 3),
    # several sentences in another order: R1 1; R2 over the flattened words {a b, b c, c d} vs {c d, d a, a b}: 2/3;
    # RL: the union LCS of each reference sentence over both hypothesis sentences covers all 4 words -> 1
    (" a b. c d" + EOS, "c d. a b", (1 + 2 / 3 + 1) / 3),
    # LCS tie-breaking: ref "a b" vs hyp sentence "b a" has two LCS of length 1; the package keeps "b", so with
    # the second hypothesis sentence "a" the union is {a, b}: RL 1. R1 1, R2 {b a, a a} vs {a b}: 0
    ("b a. a" + EOS, "a b", (1 + 0 + 1) / 3),
    # the other way round the union is only {a} (1 of 2 ref words, 1 of 2 hyp words): RL 1/2
    ("a b" + EOS, "b a. a", (1 + 0 + 0.5) / 3),
    # case-sensitive: {The, cat} vs {the, cat}: R1 1/2; R2 0; RL: LCS "cat" -> 1/2
    ("The cat" + EOS, "the cat", (0.5 + 0 + 0.5) / 3),
    # whitespace only: one empty word, nothing in common
    ("   " + EOS, "the cat", 0.0),
    # a dot after a space: the piece " " becomes the empty word
    (" ." + EOS, "the cat", 0.0),
    # one character or nothing: the reference's own rule, 0 without calling the package; two characters are scored
    # (one word: R1 and RL 1, no bigram on either side: R2 0)
    ("a" + EOS, "a", 0.0),
    (" a" + EOS, "a", 2 / 3),
    (EOS, "a", 0.0),
]


@pytest.mark.parametrize("continuation, summary, expected", HAND_COMPUTED)
def test_paper_rouge_equals_a_hand_computation_of_the_package(continuation, summary, expected):
    assert paper_score(continuation, summary) == {"rouge_avg": pytest.approx(expected, abs=1e-6), "unscorable": 0}


def reference_rouge_avg(full_text: str, summary: str) -> float:
    """The reference script's lines, written out: the text after the last ``DR:``, its last 13 characters cut, 0 for
    at most one character, else the mean F of rouge-1/2/l of ``Rouge().get_scores(predict, summary)``."""
    predict = full_text.split("DR:")[-1][0:-13]
    if len(predict) <= 1:
        return 0.0
    score = Rouge().get_scores(predict, summary)
    return (score[0]["rouge-1"]["f"] + score[0]["rouge-2"]["f"] + score[0]["rouge-l"]["f"]) / 3


ADVERSARIAL = [" Amanda will bring Jerry cookies.  She baked them." + EOS,           # double space after a dot
               "\nAmanda: cookies\nJerry: yes\n" + EOS,                                 # newlines, colons
               " a a a a. a a. a" + EOS,                                               # repeats across sentences
               " Jerry and Amanda. . . will meet" + EOS,                               # empty pieces between dots
               " Amanda will bring Jerry some cookies tomorrow morning",                # no EOS: 13 real chars cut
               " TL;DR: Amanda baked." + EOS]                                           # the marker again


@pytest.mark.parametrize("continuation", ADVERSARIAL)
def test_paper_rouge_equals_the_package_on_adversarial_outputs(continuation):
    summary = "Amanda baked cookies and will bring Jerry some tomorrow."
    full = summarization.prompt({"dialogue": "Amanda: hi", "summary": summary}) + continuation
    assert paper_score(continuation, summary, "Amanda: hi")["rouge_avg"] == pytest.approx(
        reference_rouge_avg(full, summary), abs=1e-12)


@pytest.mark.parametrize("continuation", ["..." + EOS, ".." + EOS, "......." + EOS])
def test_a_prediction_of_dots_only_is_unscorable_and_counted(continuation):
    """The package raises ``ValueError("Hypothesis is empty.")`` on a prediction made of dots, and the reference script
    does not catch it (its run stops there); such an example scores 0 and is counted apart."""
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        Rouge().get_scores(continuation.removesuffix(EOS), "the cat")
    assert paper_score(continuation, "the cat") == {"rouge_avg": 0.0, "unscorable": 1}


def test_dots_after_a_space_are_scorable():
    """`` ...``: the piece before the first dot is a space, which the package keeps as one empty word."""
    assert Rouge().get_scores(" ...", "the cat")[0]["rouge-1"]["f"] == 0.0
    assert paper_score(" ..." + EOS, "the cat") == {"rouge_avg": 0.0, "unscorable": 0}


def test_unscorable_examples_are_reported_in_the_summary():
    from lit_edit.tasks.metrics import DownstreamMetric

    scores = [TASKS["summarization"].score({"dialogue": "d", "summary": "the cat"},
                                           {"corrected": Generation([], [], c, "d\nTL;DR:" + c + EOS)}, False)
              for c in ["...", " the cat", "..."]]
    metric = DownstreamMetric("summarization")
    metric.update(scores, range(3))
    paper = metric.compute()["paper"]
    assert paper["unscorable"] == 2 and paper["rouge_avg"] == pytest.approx(1 / 3, abs=1e-6)


SUMMARIES = SHARED_DATA / "tasks" / "test-summarization.json"


@pytest.mark.skipif(not SUMMARIES.exists(), reason=f"real SAMSum data not found at {SUMMARIES}")
def test_paper_rouge_equals_the_package_on_real_samsum_records():
    records = json.loads(SUMMARIES.read_text())[:40]
    checked = 0
    for i, record in enumerate(records):
        dialogue_words = " ".join(record["dialogue"].split(" ")[:25])
        outputs = [" " + record["summary"] + EOS,                      # near-gold, as a continuation starts
                   " " + records[i - 1]["summary"] + EOS,               # another record's summary
                   " " + dialogue_words + EOS,                          # copying the dialogue: newlines, names
                   " " + record["summary"]]                             # no EOS: the cut eats real characters
        for output in outputs:
            full = summarization.prompt(record) + output
            assert paper_score(output, record["summary"], record["dialogue"])["rouge_avg"] == pytest.approx(
                reference_rouge_avg(full, record["summary"]), abs=1e-12), (i, output)
            checked += 1
    assert checked == 160


@pytest.mark.parametrize("summary", ["", "...", "."])
def test_a_gold_summary_the_package_cannot_read_is_refused_on_reading(tmp_path, summary):
    from lit_edit.tasks import formats, registry

    (tmp_path / "test-summarization.json").write_text(json.dumps([{"summary": "ok", "dialogue": "d"},
                                                                  {"summary": summary, "dialogue": "d"}]))
    with pytest.raises(formats.TaskFormatError, match=r"test-summarization.json\[1\]: field 'summary' must be a string "
                                                      r"with more than dots"):
        registry.read_task(tmp_path, "summarization")
