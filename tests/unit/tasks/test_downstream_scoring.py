"""Downstream scoring against hand-computed examples: the reference's quirks in paper mode, the corrected values."""

import pytest
import torch

from lit_edit.generation import Generation, clean_up_tokenization
from lit_edit.tasks import closed_domain_qa, dialogue, ner, nli, open_domain_qa, reasoning, sentiment, summarization
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.open_domain_qa import span_exact_match
from lit_edit.tasks.registry import TASKS


def gen(continuation, reference_text=None):
    return Generation([], [], continuation, reference_text if reference_text is not None else continuation)


def test_boolq_paper_rule_is_exact_before_and_substring_after_editing():
    text = "passage: x question: y. answer: not"
    assert closed_domain_qa.paper_counts(text, gold=False, after_edit=False) == {"correct": 0, "parsed": 0}
    assert closed_domain_qa.paper_counts(text, gold=False, after_edit=True) == {"correct": 1, "parsed": 1}   # " not" ∋ "no"
    assert closed_domain_qa.paper_counts("q. answer: yes", gold=True, after_edit=False) == {"correct": 1, "parsed": 1}
    # corrected: one rule; " not" is unparsed before and after
    record = {"passage": "p", "question": "q", "answer": False}
    for after in (False, True):
        score = TASKS["closed_domain_qa"].score(record, {"corrected": gen(" not", text)}, after)
        assert (score["correct"], score["parsed"], score["paper/correct"]) == (0, 0, int(after))


def test_mutual_paper_letter_substring_and_chi_rule():
    assert dialogue.paper_counts("... the answer is According", "A", after_edit=False) == {"correct": 1, "parsed": 1}
    assert dialogue.paper_counts("... the answer is Chioces", "C", after_edit=False) == {"correct": 1, "parsed": 1}
    assert dialogue.paper_counts("... the answer is Chioces", "C", after_edit=True) == {"correct": 0, "parsed": 0}
    record = {"article": "a", "options": ["w", "x", "y", "z"], "answers": "A"}
    score = TASKS["dialogue"].score(record, {"corrected": gen(" According", "the answer is According")}, False)
    assert (score["correct"], score["parsed"], score["paper/correct"]) == (0, 0, 1)


def test_rte_and_sst2_substring_rules():
    assert nli.paper_counts("x. True or False? answer: untrue", gold_entailment=True) == {"correct": 1, "parsed": 1}
    assert sentiment.paper_counts("text: a answer: negatively", gold_positive=False) == {"correct": 1, "parsed": 1}
    assert sentiment.paper_counts("text: a answer: meh", gold_positive=False) == {"correct": 0, "parsed": 0}


def test_gsm8k_paper_substring_and_corrected_numeric():
    marker = "Therefore, the answer (arabic numerals) is:"
    record = {"question": "q", "answer": "steps\n#### 1"}
    assert reasoning.paper_counts("Therefore, the answer (arabic numerals) is: 10", "1")["correct"] == 1   # " 10" ∋ "1"
    score = TASKS["reasoning"].score(record, {"corrected": gen(" 10"), "paper": gen("", marker + " 10")}, False)
    assert (score["correct"], score["paper/correct"]) == (0, 1)
    record = {"question": "q", "answer": "s\n#### 2,125"}
    score = TASKS["reasoning"].score(record, {"corrected": gen(" 2125 apples"), "paper": gen("", marker + " 2125")}, False)
    assert (score["correct"], score["paper/correct"]) == (1, 0)


def test_nq_paper_scan_global_flag_replayed_in_file_order():
    # example 0: a two-word gold inside the text sets the global flag; afterwards only words[0]/words[-1] count
    first = open_domain_qa.paper_outcomes("refer to new york city now", ["New York"])
    second = open_domain_qa.paper_outcomes("refer to paris now", ["Paris"])
    assert first == (1, 1, 0)
    assert second[0] == 1 and second[2] == 0
    assert open_domain_qa.replay_paper_scan([first, second]) == 1          # flag set by the first hides the second
    assert open_domain_qa.replay_paper_scan([second, first]) == 2
    metric = DownstreamMetric("open_domain_qa")
    for index, outcome in [(1, second), (0, first)]:                  # shards arrive out of order
        metric.update([{"n": 1, "em": 0, "span_em": 0, "paper/scan": outcome}], [index])
    assert metric.compute()["paper"]["em"] == pytest.approx(0.5)


def test_nq_corrected_em_and_span_em():
    assert span_exact_match("it is the New York city\nmore", ["new york"])
    assert not span_exact_match("newyork", ["new york"])
    score = TASKS["open_domain_qa"].score({"question": "q", "answer": ["Paris"], "output": ["p"]},
                                          {"corrected": gen(" Paris.\nQuestion"), "paper": gen("", "refer x")}, False)
    assert (score["em"], score["span_em"]) == (1, 1)


def test_rouge_package_f_matches_a_hand_computation():
    # hyp words: [the, cat, sat] ; ref words: [the, cat, ran] (sets); R1: 2/3 each -> F=2/3; R2: {the cat} 1/2
    scores = summarization.rouge_package_f("the cat sat", "the cat ran")
    assert scores["rouge1"] == pytest.approx(2 / 3, abs=1e-6)
    assert scores["rouge2"] == pytest.approx(0.5, abs=1e-6)
    assert scores["rougeL"] == pytest.approx(2 / 3, abs=1e-6)
    assert summarization.rouge_package_f("The cat", "the cat")["rouge1"] == pytest.approx(0.5, abs=1e-6)   # case-sensitive
    with pytest.raises(ValueError, match="Hypothesis is empty"):
        summarization.rouge_package_f("...", "the cat")
    assert summarization.paper_score("...<|endoftext|>", "the cat") == {"rouge_avg": 0.0, "unscorable": 1}
    # the 13-character cut assumes "<|endoftext|>" ends the text
    assert summarization.paper_prediction(" the cat sat<|endoftext|>") == " the cat sat"
    assert summarization.paper_score(" ab", "the cat")["rouge_avg"] == 0.0                          # ≤ 1 character


def test_ner_reference_spans_and_metrics():
    words = ["Australian", "Tom", "Moody", "met", "John"]
    tags = ["B-MISC", "B-PER", "I-PER", "O", "B-PER"]
    assert ner.paper_gold(words, tags, "MISC") == ["Australian Tom Moody"]    # runs to the next O
    assert ner.paper_gold(words, tags, "PER") == ["Tom Moody", ""]             # sentence-final entity is empty
    counts = ner.paper_counts("Text: ... Entity: Tom Moody", words, tags, "PER")
    assert counts == {"hits": 2, "total": 2}                                    # "" is always a hit
    assert ner.paper_counts("Entity: x", ["a"], ["O"], "MISC") == {"hits": 0, "total": 1}   # MISC-only denominator
    assert ner.paper_counts("Entity: x", ["a"], ["O"], "PER") == {"hits": 0, "total": 0}
    record = {"tokens": words, "tags": tags}
    generations = {kind: gen(" none", "Entity: none") for kind in ("PER", "LOC", "ORG", "MISC")}
    generations["PER"] = gen(" Tom Moody, Bob", "Entity: Tom Moody, Bob")
    score = TASKS["ner"].score(record, generations, False)
    assert (score["tp/PER"], score["fp/PER"], score["fn/PER"]) == (1, 1, 1)     # gold {Tom Moody, John}
    assert (score["tp/MISC"], score["fp/MISC"], score["fn/MISC"]) == (0, 0, 1)
    metric = DownstreamMetric("ner")
    metric.update([score], [0])
    result = metric.compute()
    assert result["corrected"]["f1_PER"] == pytest.approx(0.5)
    assert result["corrected"]["f1_LOC"] == 0.0 and result["corrected"]["f1_MISC"] == 0.0
    assert result["paper"]["acc_PER"] == pytest.approx(1.0)                    # "Tom Moody" and "" both found


def test_docstart_sentences_count_only_in_paper_mode():
    record = {"tokens": ["-DOCSTART-"], "tags": ["O"], "docstart": True}
    generations = {kind: gen(" x", "Entity: x") for kind in ("PER", "LOC", "ORG", "MISC")}
    score = TASKS["ner"].score(record, generations, False)
    assert score["n"] == 0 and "tp/PER" not in score
    assert score["paper/total/MISC"] == 1 and score["paper/total/PER"] == 0


def test_decode_clean_up_of_the_reference():
    assert clean_up_tokenization("Lord 's house , he said .") == "Lord's house, he said."


def test_choice_metric_sums_like_a_direct_count():
    metric = DownstreamMetric("sentiment")
    scores = [{"n": 1, "correct": c, "parsed": p, "paper/correct": c, "paper/parsed": 1}
              for c, p in [(1, 1), (0, 1), (0, 0), (1, 1)]]
    metric.update(scores, range(4))
    result = metric.compute()
    assert result["corrected"] == {"acc_all": 0.5, "acc_parsed": pytest.approx(2 / 3), "parse_rate": 0.75}
    assert result["paper"]["total_accuracy"] == 0.5
    assert isinstance(metric.sum_0, torch.Tensor) and metric.sum_0.dtype == torch.float64


def test_loglik_mode_picks_the_option_with_the_lowest_nll():
    task = TASKS["dialogue"]
    record = {"answers": "C", "options": ["a", "b", "c", "d"], "article": "m : hi"}
    prompt, options = task.options(record)
    assert options == ["A", "B", "C", "D"] and prompt.endswith("the answer is")
    generations = {"corrected": gen(" B")}
    right = task.score(record, generations, after_edit=False, option_nll=[3.0, 2.5, 0.7, 4.0])
    wrong = task.score(record, generations, after_edit=False, option_nll=[3.0, 0.2, 0.7, 4.0])
    assert (right["loglik/correct"], wrong["loglik/correct"], right["correct"]) == (1, 0, 0)
    metric = DownstreamMetric("dialogue")
    metric.update([right, wrong, right], range(3))
    assert metric.compute()["loglik"] == {"acc_all": pytest.approx(2 / 3)}
    # without option scores there is no loglik mode at all
    plain = DownstreamMetric("dialogue")
    plain.update([task.score(record, generations, after_edit=False)], [0])
    assert "loglik" not in plain.compute()
    with pytest.raises(ValueError, match="3 option NLLs for 4 options"):
        task.score(record, generations, after_edit=False, option_nll=[1.0, 2.0, 3.0])


def test_boolq_nli_sentiment_option_order_matches_their_gold_labels():
    assert TASKS["closed_domain_qa"].score({"question": "q", "passage": "p", "answer": False}, {"corrected": gen(" no")},
                                           False, option_nll=[2.0, 1.0])["loglik/correct"] == 1
    assert TASKS["nli"].score({"sentence1": "a", "sentence2": "b", "label": "entailment"}, {"corrected": gen(" True")},
                              False, option_nll=[1.0, 2.0])["loglik/correct"] == 1
    assert TASKS["sentiment"].score({"sentence": "s", "label": "1"}, {"corrected": gen(" positive")}, False,
                                    option_nll=[1.0, 2.0])["loglik/correct"] == 0


def test_task_scores_rows_give_the_same_summary_as_the_sums():
    task = TASKS["ner"]
    record = {"tokens": ["Anna", "met", "Bob", "in", "Paris", "."], "tags": ["B-PER", "O", "B-PER", "O", "B-LOC", "O"]}
    generations = {"PER": gen(" Anna, Carl"), "LOC": gen(" Paris"), "ORG": gen(" none"), "MISC": gen(" none")}
    docstart = {"tokens": ["-DOCSTART-"], "tags": ["O"], "docstart": True}
    scores = [task.score(record, generations, False), task.score({**docstart}, {k: gen(" x") for k in generations},
                                                                   False)]
    metric = DownstreamMetric("ner")
    metric.update(scores, [5, 2])
    rows = metric.task_scores()
    assert rows.indices == [2, 5] and rows.summary() == metric.compute()
    assert rows.summary()["corrected"]["f1_PER"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
