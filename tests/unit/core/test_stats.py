import copy

import pytest
import torch

from lit_edit.hooks import record
from lit_edit.models import architecture_of, load_model_and_tokenizer, load_tokenizer
from lit_edit.stats import Provenance, collect_second_moments, corpus_sha256, load_moment, save_moment, token_batches
from tests.conftest import FACTWORLD

TEXTS = ["Alda Venkor was born in Torvale.", "Where does Bram Tosk live? Port Ivory",
         "The favorite food of Ziva Lorn is soup. Ziva Lorn plays the harp.", "Hi"]


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model_and_tokenizer(request, tmp_path_factory):
    from tests.conftest import make_tiny_model

    folder = make_tiny_model(request.param, tmp_path_factory.mktemp(f"stats-{request.param}"))
    return load_model_and_tokenizer(str(folder))


def direct_second_moment(model, tokenizer, layer):
    """Σ k kᵀ / N computed one document at a time (no padding), one layer per pass."""
    arch = architecture_of(model)
    keys = []
    for text in TEXTS:
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with record(model, [arch.ffn_out_at(layer)]) as seen:
            model(input_ids=ids)
        keys.append(seen[arch.ffn_out_at(layer)].input[0].double())
    k = torch.cat(keys)
    return k.T @ k / k.shape[0], k.shape[0]


def test_one_pass_equals_per_layer_direct_computation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    arch = architecture_of(model)
    batches = list(token_batches(tokenizer, TEXTS, max_length=64, tokens_per_batch=40))
    assert len(batches) > 1 and any((b["attention_mask"] == 0).any() for b in batches)  # padding is exercised
    moments = collect_second_moments(model, arch, [0, 2], batches, progress=False)
    for layer in (0, 2):
        expected, n = direct_second_moment(model, tokenizer, layer)
        assert moments[layer].count == n
        torch.testing.assert_close(moments[layer].mean(), expected, rtol=1e-5, atol=1e-6)


def test_max_tokens_stops_accumulation(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    arch = architecture_of(model)
    moments = collect_second_moments(model, arch, [1], token_batches(tokenizer, TEXTS, 64, 40), max_tokens=7,
                                     progress=False)
    assert moments[1].count == 7


def test_layer_out_of_range_is_refused(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(IndexError, match="out of range"):
        collect_second_moments(model, architecture_of(model), [5], [], progress=False)


def test_save_and_load_keep_values_and_provenance(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    arch = architecture_of(model)
    moment = collect_second_moments(model, arch, [1], token_batches(tokenizer, TEXTS, 64), progress=False)[1]
    provenance = Provenance(model="tiny", layer=1, module=arch.ffn_out_at(1), corpus="TEXTS",
                            corpus_sha256=corpus_sha256(TEXTS), tokens=moment.count, dtype="float64")
    save_moment(tmp_path / "c.safetensors", moment, provenance)
    loaded, loaded_provenance = load_moment(tmp_path / "c.safetensors")
    assert loaded_provenance == provenance
    assert loaded.count == moment.count and torch.equal(loaded.sum_kkt, moment.sum_kkt)
    assert not list(tmp_path.glob(".*tmp"))


def test_cache_computes_missing_layers_once_and_reuses_them(model_and_tokenizer, tmp_path, monkeypatch):
    import lit_edit.stats as stats

    model, tokenizer = model_and_tokenizer
    arch = architecture_of(model)
    calls = []
    real = stats.collect_second_moments
    monkeypatch.setattr(stats, "collect_second_moments", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    kwargs = dict(model=model, model_name="org/tiny", arch=arch, tokenizer=tokenizer, texts=TEXTS,
                  corpus_name="texts", max_length=64, progress=False)
    first = stats.cached_second_moments(tmp_path, layers=[0, 2], **kwargs)
    again = stats.cached_second_moments(tmp_path, layers=[0, 1, 2], **kwargs)
    assert calls == [[0, 2], [1]]  # one pass for both missing layers; cached ones are not recomputed
    assert torch.equal(first[2].sum_kkt, again[2].sum_kkt)
    # another corpus with the same name is not served from the cache
    with pytest.raises(stats.MissingStatisticsError, match=r"layers \[0\] of 'org/tiny'"):
        stats.cached_second_moments(tmp_path, layers=[0], compute_missing=False,
                                    **{**kwargs, "texts": TEXTS[:2]})


def test_cache_is_not_reused_for_other_weights_under_the_same_name(model_and_tokenizer, tmp_path):
    import lit_edit.stats as stats

    model, tokenizer = model_and_tokenizer
    arch = architecture_of(model)
    kwargs = dict(model_name="org/tiny", arch=arch, tokenizer=tokenizer, texts=TEXTS, corpus_name="texts",
                  max_length=64, progress=False)
    stats.cached_second_moments(tmp_path, model=model, layers=[0], **kwargs)
    stats.cached_second_moments(tmp_path, model=model, layers=[0], compute_missing=False, **kwargs)  # reused
    retrained = copy.deepcopy(model)
    with torch.no_grad():
        next(retrained.parameters()).add_(0.01)
    assert stats.weights_sha256(retrained) != stats.weights_sha256(model)
    with pytest.raises(stats.MissingStatisticsError, match=r"layers \[0\] of 'org/tiny'"):
        stats.cached_second_moments(tmp_path, model=retrained, layers=[0], compute_missing=False, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_statistics_read_from_the_cache_are_on_the_models_device(model_and_tokenizer, tmp_path):
    """A cached file loads on the CPU; ``second_moments_for`` must hand C over on the model's device (a MEMIT run
    on the GPU whose statistics were cached by an earlier run failed with a device mismatch)."""
    from lit_edit.stats import StatisticsConfig, second_moments_for

    model, tokenizer = model_and_tokenizer
    model = copy.deepcopy(model).cuda()
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS))
    config = StatisticsConfig(corpus=str(corpus), cache_dir=str(tmp_path / "stats"), max_length=64)
    for compute_missing in (True, False):   # computed, then read from the cache
        moments = second_moments_for(model, tokenizer, architecture_of(model), "org/tiny", [0, 1],
                                     StatisticsConfig(**{**vars(config), "compute_missing": compute_missing}),
                                     progress=False)
        assert {c.device.type for c in moments.values()} == {"cuda"}


@pytest.mark.parametrize("tokenizer_dir", ["tokenizer-gpt2", "tokenizer-llama"])
@pytest.mark.cli   # seconds, not milliseconds: outside the fast tier
def test_first_tokens_equal_whole_text_truncation_without_tokenizing_long_documents(tokenizer_dir, monkeypatch):
    from lit_edit.data.corpus import read_texts
    from lit_edit.stats import first_tokens

    tokenizer = load_tokenizer(str(FACTWORLD / tokenizer_dir))
    joined = " ".join(read_texts(FACTWORLD / "corpus" / "train.jsonl"))
    documents = [joined[:200_000], joined[777:90_000], "  a   b \n\n c" * 3000, "x" * 20_000, "short one"]
    for max_length in (1, 3, 16, 256, 4096):
        for document in documents:
            whole = tokenizer(document, truncation=True, max_length=max_length)["input_ids"]
            assert first_tokens(tokenizer, document, max_length) == whole, (max_length, document[:40])
    seen = []
    original = type(tokenizer).__call__
    monkeypatch.setattr(type(tokenizer), "__call__", lambda self, text, **kw: seen.append(len(text)) or
                        original(self, text, **kw))
    first_tokens(tokenizer, documents[0], 256)
    assert max(seen) <= 8 * 256 * 4   # a prefix of a few thousand characters, not the 200,000 of the document
