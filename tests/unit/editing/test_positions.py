"""The fact-token position rule (docs/methods.md §0.3) against a direct incremental tokenisation."""

from __future__ import annotations

import re

import pytest
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from lit_edit.editing import RULES, read_counterfact, read_zsre, subject_token_index, subject_token_indices
from lit_edit.models import load_tokenizer
from tests.conftest import FACTWORLD, SHARED_DATA

ZSRE_REAL = SHARED_DATA / "zsre" / "zsre_mend_eval_portability_gpt4.json"

CASES = [  # (template, subject): start, middle, end, whole prompt, punctuation, possessive, digits
    ("{} was born in", "Giodes Heatilios"),
    ("Where was {} born?", "Hathio Mafubral"),
    ("The favorite food of {}", "Polal Teagiogain"),
    ("{}", "Paris"),
    ("Which corporation created {}?", "USS Leedstown (APA-56)"),
    ("What is {}'s job?", "Kahipu Miboraith"),
    ("{} was a good year", "1998"),
    ("In the city of {}, people say", "Le Mans"),
]


def _sentencepiece_like(layout: str) -> PreTrainedTokenizerFast:
    """A tiny LLaMA-style BPE with a "▁" word marker and a BOS, in the two layouts LLaMA tokenizer.json files use:
    a Metaspace pre-tokenizer, or LLaMA-2's normaliser (prepend "▁", replace spaces) without pre-tokenizer."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    # words and punctuation apart, so no merge spans a subject boundary (as in the real vocabularies); "1998" only
    # inside a word, so there is no "▁1" and the prompt "1998 ..." starts with a bare "▁"
    words = [w for t, s in CASES if s != "1998" for w in re.findall(r"\w+|[^\w\s]", t.format(s))]
    corpus = [" ".join(words), "year1998", "Parisian"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(corpus * 5, trainer)
    if layout == "llama2-normalizer":
        tok.pre_tokenizer = None
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module", params=["gpt2", "llama", "metaspace", "llama2-normalizer"])
def tokenizer(request):
    if request.param in ("gpt2", "llama"):
        return load_tokenizer(str(FACTWORLD / f"tokenizer-{request.param}"))
    return _sentencepiece_like(request.param)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=True)["input_ids"]


@pytest.mark.parametrize("template,subject", CASES)
def test_subject_tokens_match_incremental_tokenisation(tokenizer, template, subject):
    prefix, suffix = template.split("{}")
    full = _ids(tokenizer, template.format(subject))
    with_subject = _ids(tokenizer, prefix + subject)
    last = subject_token_index(tokenizer, template, subject, "subject_last")
    first = subject_token_index(tokenizer, template, subject, "subject_first")
    assert last == len(with_subject) - 1 and full[: last + 1] == with_subject
    reaches_subject = [len(tokenizer.decode(full[: i + 1], skip_special_tokens=True).rstrip()) > len(prefix.rstrip())
                       for i in range(len(full))]
    assert first == reaches_subject.index(True)
    piece = tokenizer.decode([full[last]]).strip()
    assert piece and subject.endswith(piece)
    assert tokenizer.decode(full[first: last + 1]).strip() == subject
    after = subject_token_index(tokenizer, template, subject, "subject_first_after_last")
    assert after == (last + 1 if suffix else last)
    assert subject_token_index(tokenizer, template, subject, "last") == len(full) - 1


def test_bos_is_never_a_subject_token():
    gpt2, llama = (load_tokenizer(str(FACTWORLD / f"tokenizer-{n}")) for n in ("gpt2", "llama"))
    assert _ids(llama, "x")[0] == llama.bos_token_id and _ids(gpt2, "x")[0] != gpt2.bos_token_id
    assert subject_token_index(gpt2, "{} was born in", "Giodes", "subject_first") == 0
    assert subject_token_index(llama, "{} was born in", "Giodes", "subject_first") == 1
    # with BOS every index shifts by exactly one
    for template, subject in CASES:
        for rule in RULES:
            assert (subject_token_index(llama, template, subject, rule)
                    == subject_token_index(gpt2, template, subject, rule) + 1)


def test_bare_word_marker_before_a_subject_at_the_start_is_skipped():
    tokenizer = _sentencepiece_like("llama2-normalizer")
    encoded = tokenizer("1998 was a good year", return_offsets_mapping=True)
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][1]) == "▁" and encoded["offset_mapping"][1] == (0, 1)
    first = subject_token_index(tokenizer, "{} was a good year", "1998", "subject_first")
    assert first == 2 and tokenizer.decode(encoded["input_ids"][first]).startswith("1")


def test_token_straddling_the_subject_end_is_a_subject_token():
    tokenizer = _sentencepiece_like("metaspace")
    ids = _ids(tokenizer, "Parisian food")
    assert tokenizer.convert_ids_to_tokens(ids[1]) == "▁Parisian"
    assert subject_token_index(tokenizer, "{}ian food", "Paris", "subject_last") == 1
    assert subject_token_index(tokenizer, "{}ian food", "Paris", "subject_first_after_last") == 2


def test_template_without_slot_uses_first_occurrence(tokenizer):
    assert (subject_token_index(tokenizer, "Where was Hathio Mafubral born?", "Hathio Mafubral")
            == subject_token_index(tokenizer, "Where was {} born?", "Hathio Mafubral"))
    prompt = "Paris or Paris?"
    assert subject_token_index(tokenizer, prompt, "Paris") == subject_token_index(tokenizer, "{} or Paris?", "Paris")


def test_batch_equals_single(tokenizer):
    templates, subjects = zip(*CASES, strict=True)
    for rule in RULES:
        assert subject_token_indices(tokenizer, templates, subjects, rule) == [
            subject_token_index(tokenizer, t, s, rule) for t, s in CASES]


def test_errors_name_what_is_wrong():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-gpt2"))
    with pytest.raises(ValueError, match=r"subject 'Alice' does not occur in prompt 'Where was Bob born\?'"):
        subject_token_index(tokenizer, "Where was Bob born?", "Alice")
    with pytest.raises(ValueError, match=r"unknown fact-token rule 'subject_middle'; known: \['subject_first', "):
        subject_token_index(tokenizer, "{} was born in", "Bob", "subject_middle")
    with pytest.raises(ValueError, match="2 '{}' slots"):
        subject_token_index(tokenizer, "{} met {}", "Bob")
    with pytest.raises(ValueError, match="subject is empty"):
        subject_token_index(tokenizer, "{} was born in", "")
    with pytest.raises(ValueError, match="2 prompt templates but 1 subjects"):
        subject_token_indices(tokenizer, ["{} a", "{} b"], ["Bob"])


def test_slow_tokenizer_is_refused():
    class SlowTokenizer:
        is_fast = False

    with pytest.raises(TypeError, match="not a fast tokenizer"):
        subject_token_index(SlowTokenizer(), "{} was born in", "Bob")


def _assert_subject_last_is_incremental(tokenizer, requests):
    indices = subject_token_indices(tokenizer, [r.prompt for r in requests], [r.subject for r in requests])
    for request, index in zip(requests, indices, strict=True):
        with_subject = _ids(tokenizer, request.prompt.split("{}")[0] + request.subject)
        assert index == len(with_subject) - 1, request.record_id
        assert _ids(tokenizer, request.text)[: index + 1] == with_subject, request.record_id


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_every_factworld_request(name):
    tokenizer = load_tokenizer(str(FACTWORLD / f"tokenizer-{name}"))
    _assert_subject_last_is_incremental(tokenizer, read_zsre(FACTWORLD / "zsre" / "zsre_factworld.json").requests)
    counterfact = read_counterfact(FACTWORLD / "counterfact" / "counterfact_factworld.json").requests
    _assert_subject_last_is_incremental(tokenizer, counterfact)


@pytest.mark.skipif(not ZSRE_REAL.exists(), reason=f"real ZsRE data not found at {ZSRE_REAL}")
def test_every_real_zsre_request():
    tokenizer = load_tokenizer(str(FACTWORLD / "tokenizer-llama"))
    _assert_subject_last_is_incremental(tokenizer, read_zsre(ZSRE_REAL).requests)
