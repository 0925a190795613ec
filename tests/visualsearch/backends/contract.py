"""The contract every vector-index backend must pass, checked against the brute-force reference.

A backend's test module subclasses ``IndexContract`` and provides an ``index`` fixture (an empty index of
dimension ``DIM``). Approximate backends (``index.exact`` False) are held to recall instead of equality.
"""
from __future__ import annotations

import numpy as np
import pytest

from visualsearch.backends.base import IndexEntry, SearchFilters

from .reference import (
    clustered_entries, entries_with_words, passes, priced, random_entries, random_unit_vectors, reference_search,
    reference_word_search,
)

DIM = 32


def load(index, entries) -> None:
    index.upsert(entries)
    index.refresh()


def product_ids(hits) -> list[int]:
    return [hit.product_id for hit in hits]


class IndexContract:
    # --- visual words (the candidate stage of recognition) ---------------------------------------------------------

    def test_word_search_agrees_with_brute_force_bm25(self, index):
        entries = entries_with_words(300, DIM, products=80, seed=4)
        load(index, entries)
        rng = np.random.default_rng(8)
        for _ in range(10):
            query = entries[int(rng.integers(len(entries)))].words[:40]
            got = index.search_words(query, limit=10)
            want = reference_word_search(entries, query, limit=10)
            if index.exact:
                assert [h.image_id for h in got] == [h.image_id for h in want]
                assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-4)
            else:  # Lucene stores lengths lossily (one byte) and drops BM25's constant (k1 + 1): same photos
                assert len({h.image_id for h in got} & {h.image_id for h in want}) >= 8

    def test_word_search_applies_filters_before_ranking(self, index):
        entries = entries_with_words(200, DIM, products=60, seed=6)
        load(index, entries)
        query = entries[3].words[:30]
        filters = SearchFilters(active_only=True, category="shoes", exclude_image_ids=frozenset({4}))
        got = index.search_words(query, limit=20, filters=filters)
        allowed = {e.image_id for e in entries if e.is_active and e.category == "shoes" and e.image_id != 4}
        assert got and {h.image_id for h in got} <= allowed
        want = reference_word_search(entries, query, limit=20, filters=filters)
        assert len({h.image_id for h in got} & {h.image_id for h in want}) >= 0.9 * len(want)

    def test_photos_without_words_are_never_word_candidates(self, index):
        entries = entries_with_words(50, DIM, products=10, seed=2)
        plain = [IndexEntry(e.image_id + 1000, e.product_id, e.vector, e.category, True) for e in entries[:10]]
        load(index, entries + plain)
        got = index.search_words(entries[0].words, limit=100, filters=SearchFilters(active_only=False))
        assert got and all(h.image_id < 1000 for h in got)

    def test_replaced_and_deleted_photos_leave_the_word_index(self, index):
        entries = entries_with_words(40, DIM, products=10, seed=9)
        load(index, entries)
        target = entries[5]
        index.delete([entries[6].image_id])
        moved = IndexEntry(target.image_id, target.product_id, target.vector, target.category, True,
                           np.array([100_000, 100_001], dtype=np.int64))
        load(index, [moved])
        found = {h.image_id for h in index.search_words(entries[6].words, limit=100,
                                                       filters=SearchFilters(active_only=False))}
        assert entries[6].image_id not in found
        assert [h.image_id for h in index.search_words([100_000], limit=5)] == [target.image_id]

    # --- vectors ---------------------------------------------------------------------------------------------------
    def test_empty_index_finds_nothing(self, index):
        assert index.search(random_unit_vectors(1, DIM, 1)[0], limit=5) == []
        assert index.count() == 0

    def test_upsert_counts_and_lists_ids(self, index):
        load(index, random_entries(50, DIM, products=10))
        assert index.count() == 50
        assert index.image_ids() == set(range(1, 51))

    def test_results_agree_with_brute_force(self, index):
        entries = random_entries(600, DIM, products=150, seed=3)
        load(index, entries)
        for query in random_unit_vectors(15, DIM, seed=99):
            got = index.search(query, limit=10)
            want = reference_search(entries, query, limit=10)
            self._assert_same_ranking(index, got, want)

    def _assert_same_ranking(self, index, got, want):
        if index.exact:
            assert [(h.product_id, h.image_id) for h in got] == [(h.product_id, h.image_id) for h in want]
            assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-5)
        else:
            overlap = len(set(product_ids(got)) & set(product_ids(want)))
            assert overlap >= 0.9 * len(want)

    def test_one_hit_per_product_with_its_best_photo(self, index):
        entries = clustered_entries(n_products=20, per_product=5, dim=DIM)
        load(index, entries)
        query = entries[7].vector  # photo 8 = product 2's third photo
        hits = index.search(query, limit=10)
        assert len(product_ids(hits)) == len(set(product_ids(hits)))
        assert hits[0].product_id == 2 and hits[0].image_id == 8
        assert hits[0].score == pytest.approx(1.0, abs=0.02)

    def test_scores_are_cosine_similarities_best_first(self, index):
        entries = random_entries(200, DIM, products=200, seed=5)
        load(index, entries)
        query = random_unit_vectors(1, DIM, seed=6)[0]
        hits = index.search(query, limit=20, filters=SearchFilters(active_only=False))
        by_id = {e.image_id: e for e in entries}
        for hit in hits:
            assert hit.score == pytest.approx(float(by_id[hit.image_id].vector @ query), abs=0.02)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    def test_threshold_drops_weaker_products(self, index):
        entries = random_entries(300, DIM, products=100, seed=8)
        load(index, entries)
        query = random_unit_vectors(1, DIM, seed=9)[0]
        hits = index.search(query, limit=100, threshold=0.2)
        assert hits and all(hit.score >= 0.2 - 0.01 for hit in hits)
        want = reference_search(entries, query, limit=100, threshold=0.2)
        assert abs(len(hits) - len(want)) <= max(1, len(want) // 20)

    def test_pages_are_consistent(self, index):
        entries = random_entries(400, DIM, products=120, seed=11)
        load(index, entries)
        query = random_unit_vectors(1, DIM, seed=12)[0]
        first, second = index.search(query, limit=10), index.search(query, limit=10, offset=10)
        both = index.search(query, limit=20)
        assert product_ids(first) + product_ids(second) == product_ids(both)
        assert not set(product_ids(first)) & set(product_ids(second))

    def test_pages_stay_consistent_when_many_products_share_one_photo(self, index):
        placeholder = random_unit_vectors(1, DIM, seed=30)[0]
        load(index, [IndexEntry(i, i, placeholder) for i in range(1, 301)])
        pages = [index.search(placeholder, limit=20, offset=o) for o in range(0, 300, 20)]
        seen = [hit.product_id for page in pages for hit in page]
        if index.exact:
            assert seen == list(range(1, 301))  # ties broken by image id
        else:
            assert len(seen) == len(set(seen))

    def test_inactive_products_are_hidden_by_default(self, index):
        entries = random_entries(200, DIM, products=40, seed=13)
        load(index, entries)
        inactive = {e.product_id for e in entries if not e.is_active}
        hits = index.search(random_unit_vectors(1, DIM, seed=14)[0], limit=40)
        assert inactive and not inactive & set(product_ids(hits))
        everything = index.search(random_unit_vectors(1, DIM, seed=14)[0], limit=40,
                                  filters=SearchFilters(active_only=False))
        assert inactive & set(product_ids(everything))

    def test_category_filter(self, index):
        entries = random_entries(300, DIM, products=300, seed=15)
        load(index, entries)
        hits = index.search(random_unit_vectors(1, DIM, seed=16)[0], limit=30,
                            filters=SearchFilters(category="bags"))
        bags = {e.image_id for e in entries if e.category == "bags"}
        assert hits and all(hit.image_id in bags for hit in hits)

    @pytest.mark.parametrize("filters", [
        SearchFilters(min_price=20.0), SearchFilters(max_price=50.0), SearchFilters(in_stock_only=True),
        SearchFilters(min_price=20.0, max_price=50.0, in_stock_only=True, category="shoes"),
    ], ids=["min_price", "max_price", "in_stock", "all"])
    def test_price_and_stock_filters_apply_before_ranking(self, index, filters):
        entries = priced(random_entries(400, DIM, products=150, seed=31), seed=32)
        load(index, entries)
        by_id = {e.image_id: e for e in entries}
        vector = random_unit_vectors(1, DIM, seed=33)[0]
        got = index.search(vector, limit=15, filters=filters)
        want = reference_search(entries, vector, limit=15, filters=filters)
        assert len(want) >= 5 and all(passes(by_id[h.image_id], filters) for h in got)
        if index.exact:
            assert [(h.product_id, h.image_id) for h in got] == [(h.product_id, h.image_id) for h in want]
        else:
            assert len(set(product_ids(got)) & set(product_ids(want))) >= 0.9 * len(want)

    def test_word_search_applies_price_and_stock_filters(self, index):
        entries = priced(entries_with_words(200, DIM, products=60, seed=6), seed=7)
        load(index, entries)
        filters = SearchFilters(min_price=10.0, max_price=80.0, in_stock_only=True)
        got = index.search_words(entries[3].words[:30], limit=20, filters=filters)
        want = reference_word_search(entries, entries[3].words[:30], limit=20, filters=filters)
        by_id = {e.image_id: e for e in entries}
        assert want and all(passes(by_id[h.image_id], filters) for h in got)
        assert len({h.image_id for h in got} & {h.image_id for h in want}) >= 0.9 * len(want)

    def test_excluded_photos_leave_their_product_to_its_other_photos(self, index):
        entries = clustered_entries(n_products=10, per_product=3, dim=DIM)
        load(index, entries)
        query = entries[4]  # product 2, photo 5
        hits = index.search(query.vector, limit=3, filters=SearchFilters(exclude_image_ids=frozenset({5})))
        assert hits[0].product_id == 2 and hits[0].image_id in {4, 6}
        assert 5 not in {hit.image_id for hit in hits}

    def test_upsert_replaces_an_entry(self, index):
        entries = random_entries(20, DIM, products=20, seed=17)
        load(index, entries)
        moved = IndexEntry(1, 999, entries[5].vector, "hats", True)
        load(index, [moved])
        assert index.count() == 20
        hits = index.search(entries[5].vector, limit=2, filters=SearchFilters(active_only=False))
        assert {(h.product_id, h.image_id) for h in hits} >= {(999, 1)}

    def test_deactivating_by_upsert_hides_the_product(self, index):
        entries = random_entries(20, DIM, products=20, seed=18)
        load(index, entries)
        target = entries[3]
        load(index, [IndexEntry(target.image_id, target.product_id, target.vector, target.category, False)])
        assert target.product_id not in product_ids(index.search(target.vector, limit=20))

    def test_delete_removes_and_ignores_unknown_ids(self, index):
        entries = random_entries(30, DIM, products=30, seed=19)
        load(index, entries)
        index.delete([1, 2, 12345])
        index.refresh()
        assert index.count() == 28
        assert not {1, 2} & index.image_ids()

    def test_last_entry_in_a_batch_wins(self, index):
        v1, v2 = random_unit_vectors(2, DIM, seed=20)
        load(index, [IndexEntry(1, 1, v1), IndexEntry(1, 2, v2)])
        assert index.count() == 1
        assert index.search(v2, limit=1)[0].product_id == 2

    def test_rebuild_replaces_everything(self, index):
        load(index, random_entries(40, DIM, products=10, seed=21))
        fresh = random_entries(25, DIM, products=5, seed=22)
        fresh = [IndexEntry(e.image_id + 1000, e.product_id, e.vector, e.category, e.is_active) for e in fresh]
        assert index.rebuild(iter(fresh), expected_count=25) == 25
        index.refresh()
        assert index.image_ids() == {e.image_id for e in fresh}

    def test_wrong_dimension_is_rejected(self, index):
        with pytest.raises(ValueError):
            index.upsert([IndexEntry(1, 1, np.ones(DIM + 1, dtype=np.float32))])

    # --- versions: writes may arrive out of order (two workers, a rebuild racing live saves); the newest wins ---

    def test_an_older_upsert_after_a_newer_one_is_ignored(self, index):
        vector = random_unit_vectors(1, DIM, seed=23)[0]
        index.upsert([IndexEntry(1, 1, vector, "new", True)], version=2_000)
        index.upsert([IndexEntry(1, 1, vector, "old", True)], version=1_000)
        index.refresh()
        assert index.search(vector, limit=1, filters=SearchFilters(category="new"))[0].image_id == 1
        assert index.search(vector, limit=1, filters=SearchFilters(category="old")) == []

    def test_an_older_upsert_after_a_newer_delete_is_ignored(self, index):
        vector = random_unit_vectors(1, DIM, seed=24)[0]
        index.upsert([IndexEntry(1, 1, vector)], version=1_000)
        index.delete([1], version=3_000)
        index.upsert([IndexEntry(1, 1, vector)], version=2_000)
        index.refresh()
        assert index.count() == 0 and index.image_ids() == set()
