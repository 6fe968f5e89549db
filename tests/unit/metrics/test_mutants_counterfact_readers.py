"""CounterFact's reference readers on broken files (each message names the file and what is wrong), and the cosine
of short vectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_edit.metrics.counterfact import cosine, read_attribute_snippets, read_tfidf_statistics


def test_cosine_of_short_vectors_is_not_taken_for_zero():
    """‖a‖‖b‖ = 0.25 < 1: still a cosine of 1 (only a zero vector gives 0)."""
    assert cosine(np.array([0.5, 0.0]), np.array([0.5, 0.0])) == pytest.approx(1.0)
    assert cosine(np.array([0.3, 0.4]) / 10, np.array([0.4, -0.3]) / 10) == pytest.approx(0.0, abs=1e-12)
    assert cosine(np.zeros(2), np.array([1.0, 0.0])) == 0.0


@pytest.fixture
def vocabulary(tmp_path):
    path = tmp_path / "tfidf_vocab.json"
    path.write_text(json.dumps({"paris": 0, "london": 1}), encoding="utf-8")
    return path


def test_an_integer_idf_array_is_read_as_float64(tmp_path, vocabulary):
    np.save(tmp_path / "idf.npy", np.array([2, 3]))
    stats = read_tfidf_statistics(tmp_path / "idf.npy", vocabulary)
    assert stats.idf.dtype == np.float64 and stats.idf.tolist() == [2.0, 3.0]


def test_a_pickled_idf_file_is_refused_not_unpickled(tmp_path, vocabulary):
    path = tmp_path / "idf.npy"
    np.save(path, np.array([{"not": "numbers"}, 1.0], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a NumPy array file") as error:
        read_tfidf_statistics(path, vocabulary)
    assert str(error.value).startswith(f"{path}: ")
    assert str(error.value).endswith("fetch it again with `lit-edit-tools fetch_data counterfact`")


@pytest.mark.parametrize("idf", [np.array([1.0, np.nan]), np.array([1.0, np.inf]), np.array(["a", "b"])])
def test_non_finite_or_non_numeric_idf_values_are_refused(tmp_path, vocabulary, idf):
    np.save(tmp_path / "idf.npy", idf)
    with pytest.raises(ValueError, match="expected a 1-D array of finite IDF values"):
        read_tfidf_statistics(tmp_path / "idf.npy", vocabulary)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "tfidf_vocab.json: not valid JSON"),
    ("[1, 2]", "expected a JSON object {term: column}, found list"),
    ('{"paris": "0"}', "term 'paris' has column '0', not an integer in [0, 2)"),
])
def test_broken_vocabularies_are_refused_with_what_is_wrong(tmp_path, text, message):
    np.save(tmp_path / "idf.npy", np.array([1.0, 2.0]))
    (tmp_path / "tfidf_vocab.json").write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        read_tfidf_statistics(tmp_path / "idf.npy", tmp_path / "tfidf_vocab.json")
    assert message in str(error.value)


@pytest.mark.parametrize(("content", "message"), [
    ("[{", "attribute_snippets.json: not valid JSON"),
    ('{"records": []}', "attribute_snippets.json: expected a JSON list of records, found dict"),
    ("[7]", "attribute_snippets.json[0]: expected a JSON object, found int"),
    ('[{"relation_id": "P17", "target_id": "Q30"}]', "attribute_snippets.json[0]: field 'samples' missing"),
])
def test_broken_snippet_files_are_refused_with_the_record_at_fault(tmp_path, content, message):
    path = tmp_path / "attribute_snippets.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as error:
        read_attribute_snippets(path)
    assert message in str(error.value)


