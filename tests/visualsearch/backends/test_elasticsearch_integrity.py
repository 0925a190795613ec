"""Rebuild integrity on a real Elasticsearch (scripts/services.sh start): rebuilds are serialised across processes,
dropped index names are never re-created by late writes, refusals from the server become IndexUnavailable, and a
rollback's rejected index is not kept as the next rollback target."""
from __future__ import annotations

import threading
import time
import uuid

import pytest
from elasticsearch import ApiError

from tests.services import delete_indexes, elasticsearch_url
from visualsearch.backends.base import IndexUnavailable, SearchFilters
from visualsearch.backends.elasticsearch import ElasticsearchIndex

from .contract import DIM, load
from .reference import random_entries, random_unit_vectors

pytestmark = pytest.mark.services


@pytest.fixture
def make_index():
    """``make_index(prefix)``: a client of the index behind ``prefix``; two with one prefix act like two processes."""
    created = []

    def make(prefix: str | None = None, **options) -> ElasticsearchIndex:
        prefix = prefix or f"t{uuid.uuid4().hex[:10]}"
        created.append(ElasticsearchIndex(extractor_id="test-model", dim=DIM, hosts=[elasticsearch_url()],
                                          alias=prefix, **options))
        return created[-1]

    yield make
    for index in created:
        delete_indexes(index.client, f"{index.read_alias}__*")
        index.close()


def concrete_indexes(index: ElasticsearchIndex) -> set[str]:
    """Every index named like one of this alias's builds (not the lock)."""
    names = index.client.indices.get(index=f"{index.read_alias}__2*", allow_no_indices=True, ignore_unavailable=True)
    first = index.client.indices.get(index=f"{index.read_alias}__0*", allow_no_indices=True, ignore_unavailable=True)
    return set(names) | set(first)


def behind(index: ElasticsearchIndex, alias: str) -> set[str]:
    return set(index.client.indices.get_alias(name=alias).body)


def test_two_concurrent_rebuilds_leave_a_complete_searchable_index(make_index):
    """The second rebuild starts while the first loads; its (slow) database read ends after the first swapped."""
    first = make_index(bulk_chunk=20)
    second = make_index(first.prefix, bulk_chunk=20)
    entries = random_entries(200, DIM, products=50, seed=5)
    load(first, entries)
    first_loading, second_started, first_done = threading.Event(), threading.Event(), threading.Event()
    outcome = {}

    def first_entries():
        for n, entry in enumerate(entries):
            if n == 100:
                first_loading.set()
                second_started.wait(10)
            yield entry

    def second_entries():
        second_started.set()  # its index exists and is behind the write alias by now
        first_done.wait(10)  # a slow database read: the first rebuild finishes meanwhile
        yield from entries

    def run_second():
        first_loading.wait(10)
        try:
            outcome["loaded"] = second.rebuild(second_entries(), expected_count=len(entries))
        except IndexUnavailable as exc:
            outcome["refused"] = exc
        finally:
            second_started.set()

    thread = threading.Thread(target=run_second)
    thread.start()
    try:
        first.rebuild(first_entries(), expected_count=len(entries))
    finally:
        first_done.set()
        thread.join(30)
    first.refresh()
    hits = first.search(entries[0].vector, limit=3, filters=SearchFilters(active_only=False))
    assert hits[0].image_id == entries[0].image_id
    live = behind(first, first.read_alias)
    assert len(live) == 1
    mapping = first.client.indices.get_mapping(index=live.pop()).body
    assert next(iter(mapping.values()))["mappings"]["properties"]["vector"]["type"] == "dense_vector"
    assert first.image_ids() == {e.image_id for e in entries}
    assert concrete_indexes(first) == behind(first, first.aliases.write_alias), "no index outside the aliases"


def test_a_rebuild_is_refused_while_another_holds_the_lock(make_index):
    index = make_index()
    load(index, random_entries(20, DIM, products=5))
    before = concrete_indexes(index)
    other = make_index(index.prefix)
    with other.aliases.lock.held():
        with pytest.raises(IndexUnavailable, match="another rebuild"):
            index.rebuild(iter(random_entries(20, DIM, products=5)), expected_count=20)
        with pytest.raises(IndexUnavailable, match="another rebuild"):
            index.rollback()
    assert concrete_indexes(index) == before
    index.rebuild(iter(random_entries(20, DIM, products=5)), expected_count=20)  # released: free again


def test_an_expired_lock_of_a_crashed_run_does_not_block_forever(make_index):
    index = make_index()
    crashed = make_index(index.prefix)
    crashed.aliases.lock.ttl = 0.5
    crashed.aliases.lock.acquire()  # and never released
    with pytest.raises(IndexUnavailable, match="another rebuild"):
        index.rebuild(iter(random_entries(20, DIM, products=5)), expected_count=20)
    time.sleep(0.6)
    assert index.rebuild(iter(random_entries(20, DIM, products=5)), expected_count=20) == 20
    with pytest.raises(IndexUnavailable, match="lost"):
        crashed.aliases.lock.renew(force=True)  # the crashed run, if it wakes up, must not go on


def test_a_write_to_a_dropped_index_does_not_recreate_it(make_index, monkeypatch):
    index = make_index()
    entries = random_entries(30, DIM, products=10, seed=7)
    load(index, entries)
    stale = index.aliases.write_targets()  # a live writer lists its targets ...
    index.rebuild(iter(entries), expected_count=30)
    index.rebuild(iter(entries), expected_count=30)  # ... two rebuilds drop that index meanwhile ...
    assert not index.client.indices.exists(index=stale[0])
    current = index.aliases.write_targets()
    monkeypatch.setattr(index.aliases, "write_targets", lambda: [*stale, *current])
    index.upsert(entries[:3])  # ... and then it writes
    index.delete([entries[3].image_id])
    assert not index.client.indices.exists(index=stale[0])
    index.refresh()
    assert index.image_ids() == {e.image_id for e in entries} - {entries[3].image_id}


def test_a_search_the_server_rejects_raises_index_unavailable(make_index):
    """An index without a dense_vector field (as one auto-created by a stray write) answers kNN with 400."""
    index = make_index()
    broken = f"{index.read_alias}__20000101t000000000000"
    document = {"image_id": 1, "product_id": 1, "category": "shoes", "is_active": True, "vector": [0.5] * DIM}
    index.client.index(index=broken, document=document, refresh=True)
    index.client.indices.put_alias(index=broken, name=index.read_alias)
    with pytest.raises(IndexUnavailable, match="400"):
        index.search(random_unit_vectors(1, DIM, seed=1)[0], limit=5)


@pytest.mark.parametrize("status", [429, 400, 403])
def test_client_errors_from_the_server_raise_index_unavailable(make_index, monkeypatch, status):
    index = make_index()

    class Meta:
        pass

    meta = Meta()
    meta.status = status

    def refuse(**kwargs):
        raise ApiError(f"refused with {status}", meta=meta, body={"error": {"type": "some_exception"}})

    monkeypatch.setattr(index.client, "search", refuse)
    monkeypatch.setattr(index.client, "count", refuse)
    with pytest.raises(IndexUnavailable, match=str(status)):
        index.search(random_unit_vectors(1, DIM, seed=1)[0], limit=5)
    with pytest.raises(IndexUnavailable, match=str(status)):
        index.count()


def test_after_a_rollback_the_next_rebuild_keeps_the_index_that_was_live(make_index):
    index = make_index()
    good = random_entries(40, DIM, products=10, seed=8)
    load(index, good)
    rejected = random_entries(10, DIM, products=3, seed=9)
    index.rebuild(iter(rejected), expected_count=10)
    index.rollback()  # the new build was bad: back to `good`
    newer = random_entries(20, DIM, products=5, seed=10)
    index.rebuild(iter(newer), expected_count=20)
    index.rollback()  # this one is bad too: back to what was live before it, `good`, not the rejected build
    index.refresh()
    assert index.image_ids() == {e.image_id for e in good}
    assert len(behind(index, index.aliases.write_alias)) == 2
