from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from visualsearch.recognition.inverted_file import B, K1, InvertedFile

VOCABULARY = 60


def bm25_reference(word_lists, query, *, max_terms=None, k1=K1, b=B) -> list[float]:
    """BM25 with plain loops: distinct query words (the rarest ``max_terms`` of those in the index, ties by word)."""
    n = len(word_lists)
    counts = [Counter(int(w) for w in words) for words in word_lists]
    average = sum(len(words) for words in word_lists) / n
    df = Counter(word for photo in counts for word in photo)
    terms = sorted({int(w) for w in query if df.get(int(w), 0) > 0})
    if max_terms is not None:
        terms = sorted(terms, key=lambda w: (df[w], w))[:max_terms]
    scores = []
    for photo, words in zip(counts, word_lists):
        score = 0.0
        for word in terms:
            tf = photo.get(word, 0)
            if not tf:
                continue
            idf = math.log(1 + (n - df[word] + 0.5) / (df[word] + 0.5))
            score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(words) / average))
        scores.append(score)
    return scores


def random_photos(seed: int, n: int = 25) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    # Skewed word frequencies (some common words, a long tail) and varied lengths, one photo without features.
    popularity = rng.zipf(1.6, VOCABULARY).astype(float)
    popularity /= popularity.sum()
    photos = [rng.choice(VOCABULARY, size=rng.integers(1, 60), p=popularity) for _ in range(n - 1)]
    return [*photos[:3], np.empty(0, np.int64), *photos[3:]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_brute_force_bm25(seed):
    photos = random_photos(seed)
    index = InvertedFile.build(photos, VOCABULARY)
    rng = np.random.default_rng(100 + seed)
    for _ in range(5):
        query = rng.integers(0, VOCABULARY, rng.integers(1, 40))
        scores = index.scores(query)
        assert scores.dtype == np.float32 and scores.shape == (len(photos),)
        np.testing.assert_allclose(scores, bm25_reference(photos, query), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("max_terms", [1, 3, 10])
def test_max_terms_keeps_the_rarest_words(max_terms):
    photos = random_photos(3)
    index = InvertedFile.build(photos, VOCABULARY)
    query = np.arange(VOCABULARY)
    np.testing.assert_allclose(index.scores(query, max_terms=max_terms),
                               bm25_reference(photos, query, max_terms=max_terms), rtol=1e-5, atol=1e-6)
    assert not np.allclose(index.scores(query, max_terms=max_terms), index.scores(query))


def test_words_absent_from_the_index_do_not_use_up_max_terms():
    photos = [np.array([1, 1, 2]), np.array([2, 3]), np.array([3, 3, 3, 4])]
    index = InvertedFile.build(photos, 10)
    query = np.array([0, 5, 6, 7, 4])  # only word 4 is indexed
    assert index.scores(query, max_terms=1)[2] > 0
    np.testing.assert_allclose(index.scores(query, max_terms=1), bm25_reference(photos, query), rtol=1e-6)


def test_query_words_count_once():
    photos = random_photos(4)
    index = InvertedFile.build(photos, VOCABULARY)
    np.testing.assert_array_equal(index.scores(np.array([5, 5, 5, 9, 9])), index.scores(np.array([9, 5])))


def test_out_of_range_query_words_are_ignored():
    photos = random_photos(5)
    index = InvertedFile.build(photos, VOCABULARY)
    np.testing.assert_array_equal(index.scores(np.array([-1, 3, VOCABULARY, 10**9, 7])), index.scores(np.array([3, 7])))


def test_document_frequency_and_postings():
    photos = [np.array([1, 1, 2]), np.array([2, 3]), np.array([], np.int64)]
    index = InvertedFile.build(photos, 5)
    assert index.photos == 3
    assert index.document_frequency.tolist() == [0, 1, 2, 1, 0]
    assert index.postings.shape == (5, 3)
    assert index.postings.nnz == 4


def test_idf_formula():
    index = InvertedFile.build([np.array([1]), np.array([1, 2]), np.array([3])], 4)
    expected = [math.log(1 + (3 - 2 + 0.5) / (2 + 0.5)), math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))]
    np.testing.assert_allclose(index.idf(np.array([1, 2])), expected, rtol=1e-6)


def test_saturation_and_length_normalisation():
    # A burst of one word scores less than proportionally; a longer photo with the same tf scores less.
    photos = [np.array([1] + [9] * 9), np.array([1] * 5 + [9] * 5), np.array([1] + [9] * 29)]
    scores = InvertedFile.build(photos, 10).scores(np.array([1]))
    assert scores[1] < 5 * scores[0]
    assert scores[2] < scores[0]


def test_no_match_and_empty_inputs_score_zero():
    photos = [np.array([1, 2]), np.array([2, 3])]
    index = InvertedFile.build(photos, 10)
    np.testing.assert_array_equal(index.scores(np.array([5, 6])), [0, 0])
    np.testing.assert_array_equal(index.scores(np.array([], np.int64)), [0, 0])
    empty = InvertedFile.build([], 10)
    assert empty.photos == 0 and empty.scores(np.array([1, 2])).shape == (0,)
    blank = InvertedFile.build([np.array([], np.int64)] * 2, 10)
    np.testing.assert_array_equal(blank.scores(np.array([1])), [0, 0])
