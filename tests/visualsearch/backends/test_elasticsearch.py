"""The Elasticsearch backend against a real server (scripts/services.sh start): same contract as every backend,
ANN recall against exact search, alias swaps under concurrent writes, and an unreachable or frozen server."""
from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import numpy as np
import pytest
from elasticsearch import ApiError

from tests.services import delete_indexes, elasticsearch_url
from visualsearch.backends.base import IndexEntry, IndexUnavailable, SearchFilters
from visualsearch.backends.elasticsearch import ElasticsearchIndex
from visualsearch.backends.elasticsearch.backend import version_tuple

from .contract import DIM, IndexContract, load
from .reference import random_entries, random_unit_vectors, reference_search

pytestmark = pytest.mark.services


def make_index(dim: int = DIM, **options) -> ElasticsearchIndex:
    return ElasticsearchIndex(
        extractor_id="test-model", dim=dim, hosts=[elasticsearch_url()], alias=f"t{uuid.uuid4().hex[:10]}", **options
    )


@pytest.fixture
def es_index():
    created = []

    def make(**options) -> ElasticsearchIndex:
        created.append(make_index(**options))
        return created[-1]

    yield make
    for index in created:
        delete_indexes(index.client, f"{index.read_alias}__*")
        index.close()


class TestElasticsearchIndex(IndexContract):
    @pytest.fixture
    def index(self, es_index):
        return es_index()


def test_an_index_built_before_price_and_stock_existed_takes_them_on_first_write(es_index):
    """The mapping is strict: a live index from an older release would reject every write carrying the new fields
    (every photo left pending) until a full reindex. The first write puts them on it instead."""
    index = es_index()
    current = index.mapping
    index.mapping = {**current, "properties": {k: v for k, v in current["properties"].items()
                                               if k not in ("price", "in_stock")}}
    old, new = random_entries(2, DIM, products=2, seed=1)
    [target] = index.aliases.write_targets()  # created as the older release did, and written by it:
    index.client.index(index=target, id=str(old.image_id), refresh=True, document={
        "image_id": old.image_id, "product_id": old.product_id, "category": old.category, "is_active": True,
        "indexed_at_us": 1, "vector": old.vector.tolist()})
    assert "price" not in index.client.indices.get_mapping(index=index.read_alias).body.popitem()[1]["mappings"]["properties"]

    restarted = make_index()  # a process of the new release on the same alias
    restarted.read_alias, restarted.aliases = index.read_alias, index.aliases
    load(restarted, [replace(new, price=12.5, in_stock=False)])
    assert [h.image_id for h in restarted.search(new.vector, limit=5, filters=SearchFilters(
        active_only=False, min_price=10.0))] == [new.image_id]
    in_stock = restarted.search(new.vector, limit=5, filters=SearchFilters(active_only=False, in_stock_only=True))
    assert [h.image_id for h in in_stock] == [old.image_id]  # written without the field: counts as in stock
    restarted.close()


def test_knn_recall_against_exact_search(es_index):
    """recall@10 ≥ 0.98 on a few thousand random 1280-d unit vectors, one photo per product."""
    dim = 1280
    index = es_index(dim=dim)
    vectors = random_unit_vectors(3000, dim, seed=42)
    entries = [IndexEntry(i + 1, i + 1, vectors[i]) for i in range(len(vectors))]
    load(index, entries)
    recalls = []
    for query in random_unit_vectors(50, dim, seed=43):
        exact = {h.image_id for h in reference_search(entries, query, limit=10)}
        found = {h.image_id for h in index.search(query, limit=10)}
        recalls.append(len(exact & found) / 10)
    assert np.mean(recalls) >= 0.98


@pytest.mark.parametrize("packed", [True, False], ids=["base64 (9.3+)", "float arrays (older clusters)"])
def test_vectors_arrive_bit_exact_in_either_encoding(es_index, packed):
    """Each photo's own vector finds it with the score of an exact match: base64 packing loses no bit (a byte-order
    slip would score ~0), and the float arrays older clusters get still work."""
    index = es_index(quantization="hnsw")  # unquantised: the score is the stored float32s' own dot product
    index._packs_vectors = packed
    entries = random_entries(20, DIM, products=20, seed=7)
    load(index, entries)
    for entry in entries:
        [best] = index.search(entry.vector, limit=1, filters=SearchFilters(active_only=False))
        assert (best.image_id, round(best.score, 5)) == (entry.image_id, 1.0)


def test_this_cluster_gets_base64_vectors_in_orjson_encoded_bulk_bodies(es_index):
    index = es_index()
    load(index, random_entries(2, DIM, products=2, seed=8))
    [node] = index.client.nodes.info(filter_path="nodes.*.version")["nodes"].values()
    assert index._packs_vectors is (version_tuple(node["version"]) >= (9, 3))
    ndjson = index.client.transport.serializers.get_serializer("application/x-ndjson")
    assert ndjson.dumps([{"vector": np.float32([0.5]).tolist()}]) == b'{"vector":[0.5]}\n'  # orjson: no spaces


def test_a_user_who_may_not_read_node_versions_still_writes_with_float_arrays(es_index, monkeypatch):
    """An API key without the monitor privilege (or a serverless project) is refused the version query."""
    index = es_index()

    def refuse(**kwargs):
        meta = type("Meta", (), {"status": 403})()
        raise ApiError("action [cluster:monitor/nodes/info] is unauthorized", meta=meta, body={})

    monkeypatch.setattr(index.client.nodes, "info", refuse)
    [entry] = random_entries(1, DIM, products=1, seed=9)
    load(index, [entry])
    assert index._packs_vectors is False
    assert index.search(entry.vector, limit=1, filters=SearchFilters(active_only=False))[0].image_id == entry.image_id


@pytest.mark.parametrize(("version", "expected"),
                         [("8.19.2", (8, 19)), ("9.3.0-SNAPSHOT", (9, 3)), ("10.0.1", (10, 0))])
def test_version_tuple(version, expected):
    assert version_tuple(version) == expected


def test_rebuild_swaps_atomically_and_keeps_the_previous_index_for_rollback(es_index):
    index = es_index()
    first = random_entries(100, DIM, products=30, seed=1)
    load(index, first)
    second = [IndexEntry(e.image_id + 1000, e.product_id, e.vector) for e in first[:60]]
    index.rebuild(iter(second), expected_count=60)
    assert index.image_ids() == {e.image_id for e in second}
    index.rollback()
    index.refresh()
    assert index.image_ids() == {e.image_id for e in first}


@pytest.mark.parametrize("max_segments", [1, 3])
def test_a_rebuilt_index_goes_live_merged_into_its_configured_segments(es_index, max_segments):
    """Searches visit every segment: a bulk-loaded index is merged before the alias swap (into one by default;
    a very large catalog may keep a few, see ELASTICSEARCH_REBUILD_MAX_SEGMENTS)."""
    index = es_index(bulk_chunk=10, rebuild_max_segments=max_segments)

    def entries_with_refreshes():  # a refresh after each bulk request: one more segment each time
        for n, entry in enumerate(random_entries(200, DIM, products=50, seed=3)):
            if n and n % 10 == 0:
                index.refresh()
            yield entry

    index.rebuild(entries_with_refreshes(), expected_count=200)
    shards = index.client.indices.segments(index=index.read_alias)["indices"]
    (only,) = shards.values()
    assert [copy["num_search_segments"] for copies in only["shards"].values() for copy in copies] == [max_segments]


def test_a_force_merge_that_never_finishes_does_not_hold_the_rebuild_back(es_index, monkeypatch, caplog):
    """The merge only buys speed: one stuck on the server (never reported complete) must not keep the lock and the
    new index waiting for ever. The rebuild goes live unmerged after the timeout and says so."""
    index = es_index(rebuild_merge_timeout=0.5)
    monkeypatch.setattr(type(index.aliases), "_task_completed", lambda self, task: False)
    entries = random_entries(30, DIM, products=10, seed=4)

    assert index.rebuild(entries, expected_count=30) == 30

    assert index.image_ids() == {e.image_id for e in entries}
    assert "has not finished after 0.5 s" in caplog.text
    index.aliases.lock.acquire()  # released: the next rebuild can start at once
    index.aliases.lock.release()


def test_writes_during_a_rebuild_are_not_lost(es_index):
    """Photos written and deleted while a rebuild streams the old state end up exactly as the 'database' says."""
    index = es_index(bulk_chunk=50)
    database = {e.image_id: e for e in random_entries(1500, DIM, products=300, seed=2)}
    load(index, list(database.values()))
    victims = list(database)
    lock = threading.Lock()

    def slow_entries():
        with lock:  # like iter_entries: the database is read lazily, once the new index receives live writes
            snapshot = list(database.values())
        for n, entry in enumerate(snapshot):
            yield entry
            if n % 100 == 0:
                threading.Event().wait(0.02)  # leave room for concurrent writes between bulk chunks

    def writer():
        extra = random_entries(100, DIM, products=50, seed=3)
        for n, entry in enumerate(extra):
            with lock:
                new = IndexEntry(entry.image_id + 10_000, entry.product_id, entry.vector)
                database[new.image_id] = new
                index.upsert([new])
                victim = victims[n * 7]
                database.pop(victim, None)
                index.delete([victim])

    thread = threading.Thread(target=writer)
    thread.start()
    index.rebuild(slow_entries(), expected_count=lambda: len(database))
    thread.join()
    index.refresh()
    assert index.image_ids() == set(database)


def test_unreachable_server_raises_index_unavailable_quickly():
    index = ElasticsearchIndex(extractor_id="x", dim=DIM, hosts=["http://127.0.0.1:9"], timeout=1.0)
    with pytest.raises(IndexUnavailable):
        index.search(random_unit_vectors(1, DIM, seed=1)[0], limit=5)
    with pytest.raises(IndexUnavailable):
        index.upsert(random_entries(3, DIM, products=3))
    assert index.check()


def test_a_bulk_item_refused_for_what_it_is_fails_alone(es_index):
    """Elasticsearch refuses a vector that is not unit length for dot_product (400): only that entry fails, with
    the server's reason; the rest of the write is stored."""
    from visualsearch.backends.base import EntriesRejected

    index = es_index()
    good = random_entries(3, DIM, products=3, seed=9)
    broken = IndexEntry(99, 99, np.zeros(DIM, dtype=np.float32))
    with pytest.raises(EntriesRejected) as caught:
        index.upsert([good[0], broken, good[1], good[2]])
    assert set(caught.value.rejected) == {99} and "unit" in caught.value.rejected[99].lower()
    index.refresh()
    assert index.image_ids() == {e.image_id for e in good}
