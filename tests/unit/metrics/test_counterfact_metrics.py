"""CounterFact's fluency and consistency (docs/evaluation.md §13): the formulas against hand computation, the readers
of the published reference files, top-k sampling, and the ``counterfact`` metric family."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lit_edit.editing.requests import EditRequest
from lit_edit.metrics import check_families, metric_keys, score_requests
from lit_edit.metrics.counterfact import (
    CounterFactReferences,
    consistency,
    cosine,
    fluency,
    ngram_entropy,
    read_attribute_snippets,
    read_counterfact_references,
    read_tfidf_statistics,
    text_fluency,
    tfidf_vector,
    word_tokens,
)
from lit_edit.metrics.counterfact_generation import GENERATION_LENGTH, TOP_K, sample_generations, sample_top_k
from lit_edit.models.loading import load_model_and_tokenizer, load_tokenizer
from tests.conftest import FACTWORLD
from tests.edit_configs import method_config

LOG2_3 = math.log2(3)


# ----------------------------------------------------------------------------------------------- fluency


def test_ngram_entropy_by_hand():
    tokens = "a b a b a".split()
    assert ngram_entropy(tokens, 2) == pytest.approx(1.0)               # (a,b)×2 (b,a)×2: two halves
    assert ngram_entropy(tokens, 3) == pytest.approx(LOG2_3 - 2 / 3)    # (a,b,a)×2 (b,a,b)×1: −⅔log₂⅔ − ⅓log₂⅓
    assert ngram_entropy(tokens, 6) == 0.0                               # no 6-gram in 5 tokens
    assert ngram_entropy("x y z w".split(), 2) == pytest.approx(LOG2_3)  # three distinct bigrams


def test_fluency_weights_two_thirds_and_four_thirds_and_averages_over_texts():
    # "a b a b a": H2 = 1, H3 = log2 3 − 2/3 → (2/3·1 + 4/3·(log2 3 − 2/3)) / 2 = 2/3·log2 3 − 1/9
    first = 2 / 3 * LOG2_3 - 1 / 9
    # "x y z w": H2 = log2 3, H3 = 1 → (2/3·log2 3 + 4/3) / 2 = 1/3·log2 3 + 2/3
    second = LOG2_3 / 3 + 2 / 3
    assert text_fluency("a b a b a".split()) == pytest.approx(first)
    assert fluency(["a b a b a", "x y z w"]) == pytest.approx((first + second) / 2)
    assert fluency([]) is None


def test_word_tokens_split_sentences_and_words_as_nltk_does():
    # a sentence-final period inside the text is its own token only when sentences are split first
    assert word_tokens("He went. She came.") == ["He", "went", ".", "She", "came", "."]
    assert word_tokens("It isn't, is it?") == ["It", "is", "n't", ",", "is", "it", "?"]
    # tokenisation changes the n-grams: "went." is two tokens, so the text has 5 bigrams, all distinct
    assert fluency(["He went. She came."]) == pytest.approx((2 / 3 * math.log2(5) + 4 / 3 * 2) / 2)


# ------------------------------------------------------------------------------------------- consistency


@pytest.fixture
def reference_folder(tmp_path):
    """The three published files, tiny: a 5-term vocabulary with hand-picked IDFs."""
    np.save(tmp_path / "idf.npy", np.array([1.0, 2.0, 3.0, 0.5, 7.0]))
    # "a" is never a term (one character), even where a vocabulary lists it
    (tmp_path / "tfidf_vocab.json").write_text(json.dumps({"paris": 0, "france": 1, "city": 2, "x2": 3, "a": 4}))
    (tmp_path / "attribute_snippets.json").write_text(json.dumps([
        {"name": "France", "relation_id": "P17", "target_id": "Q142",
         "samples": [{"name": "Lyon", "text": "France has Paris"}, {"name": "Nice", "text": "a b c"}]},
        {"name": "France", "relation_id": "P17", "target_id": "Q142",
         "samples": [{"name": "Metz", "text": "city"}]},
        {"name": "Italy", "relation_id": "P17", "target_id": "Q38", "samples": []},
    ]))
    return tmp_path


def test_tfidf_vector_counts_lowercased_terms_of_two_or_more_word_characters(reference_folder):
    stats = read_tfidf_statistics(reference_folder / "idf.npy", reference_folder / "tfidf_vocab.json")
    # paris ×2 (case folded), city ×1, "a" is one character, "is" is not in the vocabulary, x2 is a term
    vector = tfidf_vector("Paris is a city. PARIS! x2", stats)
    np.testing.assert_allclose(vector, [2 * 1.0, 0.0, 1 * 3.0, 1 * 0.5, 0.0])


def test_consistency_is_the_cosine_of_the_joined_texts(reference_folder):
    stats = read_tfidf_statistics(reference_folder / "idf.npy", reference_folder / "tfidf_vocab.json")
    # generations joined: paris 2, city 1 → (2, 0, 3, 0, 0); references joined: paris 1, france 1 → (1, 2, 0, 0, 0)
    # cos = (2·1) / (√13 · √5)
    value = consistency(["Paris is a city.", "PARIS!"], ["France has Paris", "a b c"], stats)
    assert value == pytest.approx(2 / math.sqrt(65))
    assert consistency(["nothing known"], ["Paris"], stats) == 0.0      # a zero vector: cosine 0
    assert consistency([], ["Paris"], stats) is None
    assert cosine(np.array([1.0, 0.0]), np.array([2.0, 0.0])) == pytest.approx(1.0)


def test_attribute_snippets_are_grouped_by_relation_and_object(reference_folder):
    snippets = read_attribute_snippets(reference_folder / "attribute_snippets.json")
    assert snippets == {("P17", "Q142"): ("France has Paris", "a b c", "city"), ("P17", "Q38"): ()}
    references = read_counterfact_references(reference_folder)
    assert references.snippets == snippets and references.stats.vocabulary["city"] == 2
    (reference_folder / "idf.npy").unlink()
    assert read_counterfact_references(reference_folder) is None


def test_reference_file_errors_name_the_file_and_the_field(tmp_path, reference_folder):
    idf, vocab = reference_folder / "idf.npy", reference_folder / "tfidf_vocab.json"
    vocab.write_text(json.dumps({"paris": 0, "rome": 5}))
    with pytest.raises(ValueError, match=r"tfidf_vocab.json: term 'rome' has column 5, not an integer in \[0, 5\)"):
        read_tfidf_statistics(idf, vocab)
    vocab.write_text(json.dumps({"paris": 0, "rome": 0}))
    with pytest.raises(ValueError, match="two terms share a column"):
        read_tfidf_statistics(idf, vocab)
    np.save(idf, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"idf.npy: expected a 1-D array"):
        read_tfidf_statistics(idf, vocab)
    bad = tmp_path / "snippets.json"
    bad.write_text(json.dumps([{"relation_id": "P17", "target_id": "Q1", "samples": [{"name": "x"}]}]))
    with pytest.raises(ValueError, match=r"snippets.json\[0\]: field 'samples\[0\].text' missing"):
        read_attribute_snippets(bad)
    bad.write_text(json.dumps([{"relation_id": "P17", "samples": []}]))
    with pytest.raises(ValueError, match=r"snippets.json\[0\]: field 'target_id' missing"):
        read_attribute_snippets(bad)


# ------------------------------------------------------------------------------------ sampling, metric family


class CycleModel(nn.Module):
    """Next-token logits depend only on the current token (a hand-written table); takes and returns a cache."""

    def __init__(self, vocab: int):
        super().__init__()
        self.table = nn.Parameter(torch.zeros(vocab, vocab))

    def forward(self, input_ids, past_key_values=None, use_cache=False, **_):
        return type("Out", (), {"logits": self.table[input_ids], "past_key_values": ()})()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(FACTWORLD / "tokenizer-gpt2")


def _cycle_model(tokenizer) -> CycleModel:
    """" is" → " a" → " city" → " is", each with all but certain probability."""
    model = CycleModel(len(tokenizer))
    step = {274: 266, 266: 557, 557: 274}
    with torch.no_grad():
        for now, after in step.items():
            model.table[now, after] = 60.0
    return model


def test_sampling_continues_to_the_full_length_from_the_prompt(tokenizer):
    assert tokenizer("Paris is")["input_ids"] == [49, 294, 333, 274]
    texts = sample_generations(_cycle_model(tokenizer), tokenizer, ["Paris is", "Paris is"], batch_size=1)
    expected = "Paris is" + " a city is" * ((GENERATION_LENGTH - 4) // 3)
    assert texts == [expected, expected]
    assert len(tokenizer(expected)["input_ids"]) == GENERATION_LENGTH


def test_sampling_draws_only_from_the_top_k_and_is_seeded(tokenizer):
    model = CycleModel(len(tokenizer))
    top5, sixth = [266, 557, 274, 15, 310], 359
    with torch.no_grad():
        model.table[:, top5] = 5.0
        model.table[:, sixth] = 4.9                       # almost as likely, never drawn with k = 5
    prompt = torch.tensor([[49, 294, 333, 274]] * 4)
    drawn = sample_top_k(model, prompt, 60, TOP_K, torch.Generator().manual_seed(0))
    assert drawn.shape == (4, 60) and set(drawn.flatten().tolist()) == set(top5)
    texts = sample_generations(model, tokenizer, ["Paris is"] * 4, length=60)
    assert sample_generations(model, tokenizer, ["Paris is"] * 4, length=60) == texts
    assert sample_generations(model, tokenizer, ["Paris is"] * 4, length=60, seed=1) != texts


def test_counterfact_family_scores_fluency_and_consistency(tokenizer, reference_folder, monkeypatch):
    stats = read_tfidf_statistics(reference_folder / "idf.npy", reference_folder / "tfidf_vocab.json")
    references = CounterFactReferences(read_attribute_snippets(reference_folder / "attribute_snippets.json"), stats)
    monkeypatch.setattr("lit_edit.metrics.counterfact_generation._references", lambda folder: references)
    about_paris = EditRequest("{} is in", "Paris", "France", "Italy", generation_prompts=("Paris is", "Paris is"),
                              relation="P17", target_new_id="Q142", record_id="cf:0")
    no_snippets = EditRequest("{} is in", "Paris", "Italy", "France", generation_prompts=("Paris is",),
                              relation="P17", target_new_id="Q38", record_id="cf:1")
    no_prompts = EditRequest("{} is in", "Paris", "Spain", "France", record_id="cf:2")
    [first, second, third] = score_requests(_cycle_model(tokenizer), tokenizer, [about_paris, no_snippets, no_prompts],
                                            ["probability", "counterfact"], reference=None)
    # each generation is "Paris is" + " a city is" × 32 (100 tokens)
    # words: Paris, is, then (a, city, is) × 32 → bigrams (Paris,is) ×1 and 3 cycle bigrams × 32;
    # trigrams (Paris,is,a) ×1 and 3 cycle trigrams with counts 32, 32, 31
    h2 = -(1 / 97 * math.log2(1 / 97) + 3 * 32 / 97 * math.log2(32 / 97))
    h3 = -(1 / 96 * math.log2(1 / 96) + 2 * 32 / 96 * math.log2(32 / 96) + 31 / 96 * math.log2(31 / 96))
    assert first["counterfact/fluency"] == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 2)
    # generations joined: paris 2, city 64 → (2, 0, 192, 0, 0); references: paris, france, city once → (1, 2, 3, 0, 0)
    expected = (2 + 576) / (math.sqrt(4 + 192 ** 2) * math.sqrt(14))
    assert first["counterfact/consistency"] == pytest.approx(expected)
    assert second["counterfact/fluency"] == pytest.approx(first["counterfact/fluency"])
    assert second["counterfact/consistency"] is None
    assert third["counterfact/fluency"] is None and third["counterfact/consistency"] is None
    assert first["probability/reliability"] is not None


def test_missing_reference_files_warn_once_naming_the_fetch_command(tmp_path):
    from lit_edit.metrics.counterfact_generation import _references

    with pytest.warns(UserWarning, match=r"lacks attribute_snippets.json.*fetch_data counterfact"):
        assert _references(str(tmp_path)) is None
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        assert _references(str(tmp_path)) is None     # read once per folder, so warned once
    assert again == []


def test_counterfact_family_keys_and_its_place():
    assert metric_keys(["token", "counterfact"]) == [
        "token/reliability", "token/generality", "token/locality", "token/portability",
        "counterfact/fluency", "counterfact/consistency"]
    with pytest.raises(ValueError, match="'counterfact' .* cannot come first: list it after one of"):
        check_families(["counterfact"])


ADVERSARIAL_TEXTS = ["Paris, PARIS and paris-ville: l'été à Paris_2 — 42 km², x", "Éclair café naïve 3d 3D _ __",
                     "it's isn't don't won't", "", "Über Straße İstanbul ﬁne", "a b c d e f g"]


def test_consistency_equals_scikit_learn_on_its_own_statistics(tmp_path):
    """The reference computes consistency with scikit-learn's TfidfVectorizer; here its IDF and vocabulary are
    written as the published files and read back, and every pair of awkward texts scores as scikit-learn does."""
    text = pytest.importorskip("sklearn.feature_extraction.text")
    vectorizer = text.TfidfVectorizer().fit(ADVERSARIAL_TEXTS[:3] + ["paris is a city", "Straße und Café"])
    np.save(tmp_path / "idf.npy", vectorizer.idf_)
    (tmp_path / "tfidf_vocab.json").write_text(json.dumps({t: int(c) for t, c in vectorizer.vocabulary_.items()}))
    stats = read_tfidf_statistics(tmp_path / "idf.npy", tmp_path / "tfidf_vocab.json")
    for a in ADVERSARIAL_TEXTS:
        for b in ADVERSARIAL_TEXTS:
            encoded = vectorizer.transform([a, b]).toarray()
            norms = np.linalg.norm(encoded, axis=1)
            expected = float(encoded[0] @ encoded[1] / norms.prod()) if norms.all() else 0.0
            assert consistency([a], [b], stats) == pytest.approx(expected), (a, b)


def test_fluency_equals_nltk_frequency_distributions():
    """n-gram entropy from nltk's own n-grams and FreqDist, as the reference counts them."""
    import nltk

    for sample in ADVERSARIAL_TEXTS + ["The cat sat. The cat sat. The cat sat on the mat, didn't it?"]:
        tokens = word_tokens(sample)
        entropies = []
        for n in (2, 3):
            counts = np.array(list(nltk.FreqDist(nltk.ngrams(tokens, n)).values()), dtype=float)
            freqs = counts / counts.sum() if counts.size else counts
            entropies.append(float(-(freqs * np.log(freqs) / np.log(2)).sum()))
        assert text_fluency(tokens) == pytest.approx(np.mean([2 / 3 * entropies[0], 4 / 3 * entropies[1]])), sample


def test_cached_sampling_draws_what_full_forward_passes_draw(tiny_gpt2_dir):
    """The KV-cached sampler against recomputing every prefix, with the same generator draws."""
    model, tokenizer = load_model_and_tokenizer(str(tiny_gpt2_dir))
    prompt = torch.tensor([tokenizer("Giodes Heatilios works as")["input_ids"]] * 2)
    cached = sample_top_k(model, prompt, 12, TOP_K, torch.Generator().manual_seed(3))
    generator, sequence = torch.Generator().manual_seed(3), prompt
    with torch.no_grad():
        for _ in range(12):
            top = model(input_ids=sequence).logits[:, -1].float().softmax(-1).topk(TOP_K, dim=-1)
            choice = torch.multinomial(top.values / top.values.sum(-1, keepdim=True), 1, generator=generator)
            sequence = torch.cat([sequence, top.indices.gather(1, choice)], 1)
    assert torch.equal(cached, sequence[:, prompt.shape[1]:])


@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_an_editing_run_reports_fluency_and_consistency(tmp_path, monkeypatch):
    """FT on two fact-world CounterFact edits with reference files in the data root: both numbers land in
    metrics.json and requests.csv, consistency only for the request whose relation and object have texts."""
    from tests.conftest import run_edit_cli

    folder = tmp_path / "data" / "counterfact"
    folder.mkdir(parents=True)
    np.save(folder / "idf.npy", np.array([1.0, 2.0]))
    (folder / "tfidf_vocab.json").write_text(json.dumps({"marrowfield": 0, "giodes": 1}))
    (folder / "attribute_snippets.json").write_text(json.dumps([{"relation_id": "birth_city", "target_id": "cities/4",
                                                                 "samples": [{"name": "x", "text": "Marrowfield"}]}]))
    monkeypatch.setenv("LIT_EDIT_DATA", str(tmp_path / "data"))
    run_edit_cli(tmp_path, *method_config("ft"),
                 "--data.init_args.path", "counterfact/counterfact_factworld.json", "--data.init_args.n", "2",
                 "--model.init_args.families", "[probability, counterfact]", "--trainer.eval_every_n_batches", "0",
                 "--trainer.eval_pre", "false", "--trainer.eval_immediate", "false")
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["counterfact"]
    rows = (tmp_path / "run" / "requests.csv").read_text().splitlines()
    header = rows[0].split(",")
    first, second = (dict(zip(header, row.split(","))) for row in rows[1:3])
    assert 0 < float(first["final/counterfact/fluency"]) and 0 <= float(first["final/counterfact/consistency"]) <= 1
    assert second["final/counterfact/consistency"] == "" and float(second["final/counterfact/fluency"]) > 0
    assert final["consistency"] == pytest.approx(float(first["final/counterfact/consistency"]))
    assert final["fluency"] == pytest.approx((float(first["final/counterfact/fluency"])
                                              + float(second["final/counterfact/fluency"])) / 2)
