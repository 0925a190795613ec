from __future__ import annotations

import threading

import pytest

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
