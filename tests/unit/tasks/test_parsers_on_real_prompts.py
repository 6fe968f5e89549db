"""Both modes' parsers read the real prompt + continuation of each of the 8 tasks.

The prompts come from the registry (each task's module, :mod:`lit_edit.tasks.registry`) and contain the markers and
words the paper parsers look for ("answer", "positive"/"negative", "(A)…(D)", the gold number in GSM8K's hint).
Every expected value is worked out by hand from the side-effects study's scripts (github:JasonForJoy/Model-Editing-Hurt,
``test-task-code/test-<Task>.py`` before editing and ``test-task-after-code/test-<Task>-after.py`` after): which
split of the decoded text they read (first or last marker), whether they scan it by substring, and the order of their
``if``/``elif`` counters. The corrected expectations follow ``docs/fidelity.md``."""

from types import SimpleNamespace

import pytest
import torch

from lit_edit.generation import Generation
from lit_edit.models.loading import load_tokenizer
from lit_edit.tasks.evaluate import score_records
from lit_edit.tasks.metrics import DownstreamMetric
from lit_edit.tasks.registry import TASKS
from tests.conftest import FACTWORLD

EOS = "<|endoftext|>"


def generations(task: str, record: dict, outputs: str | dict[str, str]) -> dict[str, Generation]:
    """Each query's generation: ``outputs`` (one text, or one per variant) after the query's real prompt; the EOS
    text is spelled out in the reference reading only, as the reference's decode does."""
    made = {}
    for query in TASKS[task].queries(record):
        text = outputs if isinstance(outputs, str) else outputs[query.variant]
        made[query.variant] = Generation([], [], text.removesuffix(EOS), query.prompt + text)
    return made


def score(task: str, record: dict, outputs: str | dict[str, str], after_edit: bool = False) -> dict:
    return TASKS[task].score(record, generations(task, record, outputs), after_edit)


def choice(task: str, record: dict, output: str | dict[str, str], after_edit: bool = False) -> tuple[int, ...]:
    """(corrected correct, corrected parsed, paper correct, paper parsed)."""
    s = score(task, record, output, after_edit)
    return s["correct"], s["parsed"], s["paper/correct"], s["paper/parsed"]


# ---------------------------------------------------------------------------------------------------------- BoolQ
# reference: predict = text.split("answer:")[1], the text between the FIRST "answer:" and the next one; before
# editing predict.lower() == " yes" / " no"; after editing "yes" in / "no" in; counters in the order yes&gold -> TP,
# no&!gold -> FN, no&gold -> TN, yes&!gold -> FP; accuracy = (TP + FN) / all.
PASSAGE_ANSWERS_YES = {"passage": "The museum opens daily. A guide may answer: yes, most days.",
                       "question": "is there no entry fee on sundays", "answer": False}
PASSAGE_ANSWERS_NO = {"passage": "Asked again, the guide gave this answer: no.",
                      "question": "is the museum open on sundays", "answer": True}
PLAIN_BOOLQ = {"passage": "Tickets are sold at the gate.", "question": "is the museum open on sundays", "answer": True}


@pytest.mark.parametrize(("record", "output", "after_edit", "expected"), [
    # predict is " yes, most days. question: is there no entry fee on sundays. " (up to the prompt's own "answer:"),
    # whatever the model says: never " no" before editing
    (PASSAGE_ANSWERS_YES, " no", False, (1, 1, 0, 0)),
    # after editing it holds "yes" and "no"; gold False: the first branch fails, the second (FN) counts it correct
    (PASSAGE_ANSWERS_YES, " no", True, (1, 1, 1, 1)),
    (PASSAGE_ANSWERS_YES, " yes", True, (0, 1, 1, 1)),
    # predict is " no. question: is the museum open on sundays. ": unparsed before editing, "no" after (TN)
    (PASSAGE_ANSWERS_NO, " yes", False, (1, 1, 0, 0)),
    (PASSAGE_ANSWERS_NO, " yes", True, (1, 1, 0, 1)),
    (PASSAGE_ANSWERS_NO, " no", True, (0, 1, 0, 1)),
    (PLAIN_BOOLQ, " Yes", False, (1, 1, 1, 1)),
    (PLAIN_BOOLQ, " yes.", False, (1, 1, 0, 0)),
    (PLAIN_BOOLQ, " yes.", True, (1, 1, 1, 1)),
    (PLAIN_BOOLQ, " know", True, (0, 0, 0, 1)),              # " know" holds "no": TN
    (PLAIN_BOOLQ, " know", False, (0, 0, 0, 0)),
    (PLAIN_BOOLQ, EOS, True, (0, 0, 0, 0)),                  # "<|endoftext|>" holds neither
])
def test_boolq(record, output, after_edit, expected):
    assert choice("closed_domain_qa", record, output, after_edit) == expected


# ------------------------------------------------------------------------------------------------------------ RTE
# reference: predict = text.split("answer:")[-1] (the LAST); "true" in / "false" in; not_entailment: true -> FP,
# false -> FN; entailment: true -> TP, false -> TN; accuracy = (TP + FN) / all.
RTE = {"sentence1": "Officials gave the answer: true figures were hidden", "sentence2": "figures were hidden",
       "label": "not_entailment"}


@pytest.mark.parametrize(("output", "expected"), [
    (" True", (0, 1, 0, 1)),        # the sentence's "answer: true ... False?" is before the last "answer:"
    (" false", (1, 1, 1, 1)),
    (" untrue", (0, 0, 0, 1)),      # "untrue" holds "true"
    (EOS, (0, 0, 0, 0)),
])
def test_rte(output, expected):
    assert choice("nli", RTE, output) == expected


def test_rte_paper_prompt_reads_the_quote_stripped_sentences():
    record = {"sentence1": '"Yes" he said', "sentence2": "he spoke", "label": "entailment",
              "paper_sentence1": 'Yes" he said', "paper_sentence2": "he spoke"}
    variants = {q.variant: q.prompt for q in TASKS["nli"].queries(record)}
    assert variants["paper"].startswith('Yes" he said entails') and variants["corrected"].startswith('"Yes"')
    assert choice("nli", record, {"corrected": " False", "paper": " True"}) == (0, 1, 1, 1)


# ---------------------------------------------------------------------------------------------------------- SST-2
# reference: predict = text.split("answer:")[-1]; positive&1 -> TP, negative&0 -> FN, negative&1 -> TN,
# positive&0 -> FP (if/elif); the prompt itself says "positive or negative" twice.
def sst2(label: str) -> dict:
    return {"sentence": "the critics gave the answer: negative but i loved it", "label": label}


@pytest.mark.parametrize(("label", "output", "expected"), [
    ("1", " positive", (1, 1, 1, 1)),
    ("1", " meh", (0, 0, 0, 0)),                  # the prompt's own "positive"/"negative" are not read
    ("1", " Negatively.", (0, 0, 0, 1)),
    ("0", " positive", (0, 1, 0, 1)),             # the sentence's "answer: negative" is before the last "answer:"
    ("0", "negative", (1, 1, 1, 1)),
    # both words (a forced output): the if/elif order makes it correct whatever the gold
    ("0", " positive or negative", (0, 1, 1, 1)),
    ("1", " positive or negative", (1, 1, 1, 1)),
])
def test_sst2(label, output, expected):
    assert choice("sentiment", sst2(label), output) == expected


# --------------------------------------------------------------------------------------------------------- MuTual
# reference: predict = text.split("the answer is")[-1]; parsed when a capital A-D is in it, correct when the gold
# letter is; after editing, "Chi" in it is unparsed. The prompt is full of "(A)…(D)" and says "the answer is" itself.
MUTUAL = {"article": "m: which one? f: the answer is D", "options": ["a cat", "a dog", "a bird", "a fish"],
          "answers": "B"}


@pytest.mark.parametrize(("output", "after_edit", "expected"), [
    (" B", False, (1, 1, 1, 1)),
    (" D", False, (0, 1, 0, 1)),             # the article's "the answer is D" is not the last one
    (" Among", False, (0, 0, 0, 1)),         # "Among" holds an A
    (" (B)", False, (1, 1, 1, 1)),
    (" Both B and C", False, (0, 0, 1, 1)),
    (" Chioces", False, (0, 0, 0, 1)),
    (" Chioces", True, (0, 0, 0, 0)),
    (EOS, False, (0, 0, 0, 0)),
])
def test_mutual(output, after_edit, expected):
    assert choice("dialogue", MUTUAL, output, after_edit) == expected


# ---------------------------------------------------------------------------------------------------------- GSM8K
# reference: the prompt carries the gold solution; predict = text.split("Therefore, the answer (arabic numerals)
# is:")[1] (the FIRST); correct when the raw gold string after "#### " is a substring. Corrected: the question alone,
# the first number compared numerically.
GSM = {"question": "Janet sells 16 eggs and eats 3. How many are left?",
       "answer": "She has 16 - 3 = 13 eggs left.\n#### 13"}
MARKER = "Therefore, the answer (arabic numerals) is:"


@pytest.mark.parametrize(("record", "corrected", "paper", "expected"), [
    (GSM, " 13.", " 13", (1, 1, 1)),
    (GSM, " 113", " 113 eggs", (0, 1, 1)),        # "13" in "113"
    (GSM, " 7", " 7", (0, 1, 0)),                 # the hint's "13" is before the marker
    (GSM, " 5. " + MARKER + " 13", " 5. " + MARKER + " 13", (0, 1, 0)),   # the text between the 1st and 2nd marker
    (GSM, EOS, EOS, (0, 0, 0)),
    ({"question": "q", "answer": "It is 2,125.\n#### 2,125"}, " 2125", " 2125", (1, 1, 0)),
    ({"question": "q", "answer": "It is 2,125.\n#### 2,125"}, " 2,125", " 2,125", (1, 1, 1)),
])
def test_gsm8k(record, corrected, paper, expected):
    s = score("reasoning", record, {"corrected": corrected, "paper": paper})
    assert (s["correct"], s["parsed"], s["paper/correct"]) == expected


def test_gsm8k_paper_prompt_holds_the_solution_and_the_corrected_one_does_not():
    prompts = {q.variant: q.prompt for q in TASKS["reasoning"].queries(GSM)}
    assert "= 13 eggs left.\n " + MARKER in prompts["paper"] and "13 eggs" not in prompts["corrected"]


# ------------------------------------------------------------------------------------------------------------- NQ
# reference: predict = normalize(text.split("Answer:")[-1]) over prompt + continuation (its prompt has no "Answer:");
# +1 if words[0] or words[-1] is a gold; else +1 for every single word at positions 0..len-2 that is a gold, and the
# first multi-word n-gram match sets a global flag that is never reset; once set, only n-grams from words[0] count.
FRANCE = {"question": "what is the capital of france", "answer": ["Paris"],
          "output": ["Paris is the capital of France."]}
NEW_YORK = {"question": "where does she live", "answer": ["New York"], "output": ["She moved last year."]}
LONDON = {"question": "which city is it", "answer": ["London"], "output": ["Answer: London is big."]}


@pytest.mark.parametrize(("record", "outputs", "scan", "em", "span_em"), [
    # "refer to passage below and answer following question passage paris is capital of france question what is
    # capital of france paris of course": "paris" at two inner positions -> 2; with the flag up only n-grams from
    # "refer" are tried -> 0
    (FRANCE, {"corrected": " Paris, of course", "paper": " Paris, of course"}, (2, 0, 0), 0, 1),
    (FRANCE, {"corrected": " Paris", "paper": " Answer: the Paris"}, (1, 0, 1), 1, 1),   # words[0] after "Answer:"
    # "new york" is an n-gram inside the text: +1 and the flag goes up
    (NEW_YORK, {"corrected": " New York.", "paper": " She lives in New York now"}, (1, 1, 0), 1, 1),
    # the passage's "Answer:" is the last one: predict starts with "london"
    (LONDON, {"corrected": " Paris", "paper": " Paris"}, (1, 0, 1), 0, 0),
    # the continuation's "Answer:" is the last one: predict is "paris" alone
    (LONDON, {"corrected": " Paris", "paper": " Answer: Paris"}, (0, 0, 0), 0, 0),
])
def test_nq(record, outputs, scan, em, span_em):
    s = score("open_domain_qa", record, outputs)
    assert (s["paper/scan"], s["em"], s["span_em"]) == (scan, em, span_em)


def test_nq_global_flag_depends_on_file_order_and_the_count_can_exceed_the_examples():
    first = score("open_domain_qa", NEW_YORK, {"corrected": " x", "paper": " She lives in New York now"})
    second = score("open_domain_qa", FRANCE, {"corrected": " x", "paper": " Paris, of course"})
    for order, expected in [((0, 1), 1 / 2), ((1, 0), 3 / 2)]:     # flag set first hides France's 2; else 2 + 1
        metric = DownstreamMetric("open_domain_qa")
        metric.update([first, second], order)
        assert metric.compute()["paper"]["em"] == pytest.approx(expected)


# --------------------------------------------------------------------------------------------------------- SAMSum
# reference: predict = text.split("DR:")[-1][0:-13]; 0 for <= 1 character; else the mean F of rouge 1.0.1's
# rouge-1/2/l (test_paper_summarization.py checks the package call itself).
SAMSUM = {"dialogue": "Ann: TL;DR: we meet at 5\nBob: ok", "summary": "Ann and Bob meet at 5."}


def test_samsum_reads_after_the_last_marker_and_cuts_13_characters():
    s = score("summarization", SAMSUM, " Ann and Bob meet at 5." + EOS)
    assert s["paper/rouge_avg"] == pytest.approx(1.0, abs=1e-6) and s["rougeL"] == pytest.approx(1.0)
    # no EOS: the cut leaves " Ann and Bob meet at 5 pm on t" (9 words; the summary's 6 are all in it):
    # R1 P 6/9 R 1 -> 0.8; R2 5 of 8 bigrams, all 5 of the summary -> 10/13; RL 6/9, 6/6 -> 0.8
    s = score("summarization", SAMSUM, " Ann and Bob meet at 5 pm on the roof today")
    assert s["paper/rouge_avg"] == pytest.approx((0.8 + 10 / 13 + 0.8) / 3, abs=1e-6)


# ------------------------------------------------------------------------------------------------------------ NER
# reference: predict = text.split("Entity:")[1] (the FIRST after the prompt's own "Entity:"); a gold span runs from
# B-X to the next "O" (a sentence-final entity becomes ""); hits = gold strings found as substrings; total = number
# of gold strings, +1 for MISC when there is none.
NER = {"tokens": ["Salomon", "Bros", ".", "hired", "John", "Smith", "in", "Paris"],
       "tags": ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-LOC"]}


def test_ner_prompt_and_both_modes():
    outputs = {"PER": " John Smith, Bob", "ORG": " Salomon Bros.", "LOC": " Rome", "MISC": " none"}
    prompts = {q.variant: q.prompt for q in TASKS["ner"].queries(NER)}
    assert prompts["ORG"] == ("Please identify Organization Entity from the given text. Text: Salomon Bros. hired "
                              "John Smith in Paris Entity:")
    s = score("ner", NER, outputs)
    paper = {k: (s[f"paper/hits/{k}"], s[f"paper/total/{k}"]) for k in outputs}
    corrected = {k: (s[f"tp/{k}"], s[f"fp/{k}"], s[f"fn/{k}"]) for k in outputs}
    # ORG gold "Salomon Bros ." is not in " Salomon Bros."; LOC gold is "" (sentence-final), found in anything
    assert paper == {"PER": (1, 1), "ORG": (0, 1), "LOC": (1, 1), "MISC": (0, 1)}
    assert corrected == {"PER": (1, 1, 0), "ORG": (1, 0, 0), "LOC": (0, 1, 1), "MISC": (0, 0, 0)}


@pytest.mark.parametrize(("output", "paper", "corrected"), [
    (" none\nEntity: John Smith", (0, 1), (0, 0, 1)),   # the text up to the second "Entity:"; corrected cuts at \n
    (EOS, (0, 1), (0, 0, 1)),
    (' "John Smith"', (1, 1), (1, 0, 0)),
])
def test_ner_person(output, paper, corrected):
    s = score("ner", NER, {"PER": output, "ORG": " none", "LOC": " none", "MISC": " none"})
    assert (s["paper/hits/PER"], s["paper/total/PER"]) == paper
    assert (s["tp/PER"], s["fp/PER"], s["fn/PER"]) == corrected


# ------------------------------------------------------------------------- the real generation path, end to end
class ScriptedModel(torch.nn.Module):
    """A causal LM that emits ``script`` one token per step, whatever the prompt."""

    def __init__(self, vocab_size: int, script: list[int]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.vocab_size, self.script = vocab_size, script

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=None):
        step = getattr(cache, "scripted_steps", 0)        # the decoder passes one cache object to every step
        if cache is not None:
            cache.scripted_steps = step + 1
        logits = torch.zeros(input_ids.shape[0], input_ids.shape[1], self.vocab_size)
        logits[:, -1, self.script[min(step, len(self.script) - 1)]] = 1.0
        return SimpleNamespace(logits=logits, cache=cache)


def scripted(tokenizer, text: str) -> ScriptedModel:
    script = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return ScriptedModel(len(tokenizer), script)


def test_generated_text_reaches_both_parsers_with_the_prompt_and_the_eos_text():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-gpt2"))
    model = scripted(tokenizer, " Paris, of course\nQuestion")
    [s] = score_records(model, tokenizer, TASKS["open_domain_qa"], [FRANCE], after_edit=False)
    # paper: "... france paris of course questionendoftext": "paris" twice inside the text; corrected: cut at the
    # newline, " Paris, of course"
    assert (s["paper/scan"], s["em"], s["span_em"]) == ((2, 0, 0), 0, 1)
    # SAMSum: the EOS text is what the 13-character cut removes; the corrected continuation stops before EOS
    model = scripted(tokenizer, " Ann and Bob meet at 5.")
    [s] = score_records(model, tokenizer, TASKS["summarization"], [SAMSUM], after_edit=False)
    assert s["paper/rouge_avg"] == pytest.approx(1.0, abs=1e-6) and s["rougeL"] == pytest.approx(1.0)
