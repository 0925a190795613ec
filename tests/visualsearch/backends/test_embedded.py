from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from visualsearch.backends import embedded
from visualsearch.backends.base import IndexEntry, SearchFilters
from visualsearch.backends.embedded import EmbeddedIndex

from .contract import DIM, IndexContract, load
from .reference import random_entries, random_unit_vectors


class TestEmbeddedIndex(IndexContract):
    @pytest.fixture
    def index(self):
        return EmbeddedIndex(extractor_id="test", dim=DIM)


def test_searches_stay_consistent_during_concurrent_writes():
    """Readers never see a half-applied write: every hit's product matches the entry it came from."""
    index = EmbeddedIndex(extractor_id="test", dim=DIM)
    entries = random_entries(500, DIM, products=100, seed=1)
    load(index, entries[:250])
    truth = {e.image_id: e.product_id for e in entries}
    errors: list[Exception] = []

    def write():
        for start in range(250, 500, 25):
            index.upsert(entries[start : start + 25])
            index.delete([e.image_id for e in entries[start - 250 : start - 225]])

    def read():
        try:
            for query in random_unit_vectors(60, DIM, seed=2):
                for hit in index.search(query, limit=10):
                    assert truth[hit.image_id] == hit.product_id
        except Exception as exc:  # surfaced in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert index.image_ids() == {e.image_id for e in entries[250:]}


def test_a_write_read_before_the_last_rebuild_is_ignored():
    """A sync that read the database before a reload finished loading must not overwrite the reloaded row."""
    index = EmbeddedIndex(extractor_id="test", dim=DIM)
    vector = random_unit_vectors(1, DIM, seed=3)[0]
    before = time.time_ns() // 1000
    index.rebuild([IndexEntry(1, 1, vector, "new", True)])
    index.upsert([IndexEntry(1, 1, vector, "old", True)], version=before)
    index.delete([1], version=before)
    assert index.search(vector, limit=1, filters=SearchFilters(category="new"))[0].image_id == 1


def test_delete_tombstones_expire():
    """Tombstones are kept as long as Elasticsearch keeps its own (gc_deletes), not forever."""
    index = EmbeddedIndex(extractor_id="test", dim=DIM)
    start = 10**15
    index.delete(list(range(1, 1001)), version=start)
    index.delete([5000], version=start + embedded.TOMBSTONE_TTL_US + 1)
    assert index.tombstone_count() == 1


def big_index(rows: int = 20_000) -> EmbeddedIndex:
    index = EmbeddedIndex(extractor_id="test", dim=DIM)
    vectors = random_unit_vectors(rows, DIM, seed=4)
    index.rebuild(IndexEntry(i + 1, i + 1, vectors[i]) for i in range(rows))
    return index


def test_writes_into_a_big_index_do_not_copy_the_matrix():
    index = big_index()
    before = index._snapshot.matrix
    new, replaced = random_unit_vectors(2, DIM, seed=5)
    index.upsert([IndexEntry(10**6, 10**6, new), IndexEntry(7, 7, replaced)])
    index.delete([8])
    assert np.shares_memory(before, index._snapshot.matrix)
    assert index.count() == 20_000
    assert index.search(replaced, limit=1)[0].image_id == 7
    assert 8 not in index.image_ids()


def test_a_write_does_not_change_what_an_earlier_snapshot_sees():
    index = big_index(1_000)
    snapshot = index._snapshot
    rows, live = snapshot.matrix.copy(), snapshot.live.copy()
    index.upsert([IndexEntry(7, 7, random_unit_vectors(1, DIM, seed=6)[0])])
    index.delete([9])
    assert np.array_equal(snapshot.matrix, rows) and np.array_equal(snapshot.live, live)


def test_growth_is_amortised():
    """Single-photo writes reallocate the matrix a logarithmic number of times, not once per write."""
    index = EmbeddedIndex(extractor_id="test", dim=DIM)
    buffers = set()
    for i, vector in enumerate(random_unit_vectors(3_000, DIM, seed=7)):
        index.upsert([IndexEntry(i % 2_000 + 1, i + 1, vector)])  # the last thousand replace earlier photos
        buffers.add(index._snapshot.matrix.__array_interface__["data"][0])
    assert index.count() == 2_000
    assert len(buffers) < 30
