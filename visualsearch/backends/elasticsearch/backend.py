"""Elasticsearch kNN backend: one document per photo, HNSW dense_vector, collapse on product.

Why collapse rather than one document per product with nested vectors and inner_hits: with a document per photo,
saving or deleting one photo is one small write that never needs its siblings' vectors, and bulk loads stream; the
best photo per product comes from `collapse` on product_id. Paging stays consistent because every page runs the
same kNN (fixed k and num_candidates) and only `from`/`size` change.

Writes carry an external version (the microsecond before the data was read from the database, on the writer's
clock: keep hosts in NTP sync), so when a rebuild and live writes race on the same photo, the newest data wins
whatever order they reach Elasticsearch in.

Writes name concrete indexes (an alias over several indexes takes no writes), so a write may target an index a
rebuild has just dropped. An index template forbids the cluster to auto-create any of our names: such a write fails
for that index alone instead of re-creating it with a dynamic mapping (no dense_vector) that breaks kNN.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from elasticsearch import ApiError, Elasticsearch, NotFoundError, TransportError
from elastic_transport import NdjsonSerializer
from elasticsearch.helpers import pack_dense_vector, scan
from elasticsearch.serializer import OrjsonSerializer

from ..base import EntriesRejected, IndexEntry, IndexUnavailable, SearchFilters, SearchHit, VectorIndex
from . import naming
from .aliases import DEFAULT_MERGE_TIMEOUT, AliasManager
from .documents import ADDED_FIELDS, mapping

logger = logging.getLogger(__name__)


# Elasticsearch refuses a template that overlaps another at the same priority (a catch-all `*` template is usually
# 0); the guard outranks others for our names, harmlessly: it carries no settings and our indexes bring their own.
GUARD_PRIORITY = 900

# From 9.3 a dense_vector accepts its float32s as one base64 string: ~4x smaller bulk bodies than decimal text, and
# nothing for either side to format or parse. Older clusters get float arrays.
BASE64_VECTORS_SINCE = (9, 3)


class OrjsonNdjsonSerializer(NdjsonSerializer):
    """The client's ``serializer=`` covers application/json only: bulk bodies (NDJSON) would still go through the
    standard library, 1.5 ms per 1280-d vector against 0.1 ms with orjson (measured): most of a bulk load's client
    time."""

    json_dumps = OrjsonSerializer.json_dumps
    json_loads = OrjsonSerializer.json_loads


class ElasticsearchIndex(VectorIndex):
    exact = False

    def __init__(
        self,
        *,
        extractor_id: str,
        dim: int,
        hosts: Sequence[str],
        alias: str = "images",
        shards: int = 1,
        replicas: int = 0,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 100,
        quantization: str = "int8_hnsw",
        num_candidates: int = 10_000,
        knn_window: int = 300,
        rescore_oversample: float = 2.0,
        timeout: float = 5.0,
        bulk_timeout: float = 60.0,
        bulk_chunk: int = 500,
        rebuild_lock_ttl: float = 300.0,
        rebuild_merge_timeout: float = DEFAULT_MERGE_TIMEOUT,
        rebuild_max_segments: int = 1,
    ) -> None:
        super().__init__(extractor_id=extractor_id, dim=dim)
        self.client = Elasticsearch(
            list(hosts), request_timeout=timeout, max_retries=1, retry_on_timeout=False,
            serializers={"application/json": OrjsonSerializer(), "application/x-ndjson": OrjsonNdjsonSerializer()},
        )
        # Searches and live writes fail fast (→ 503 / pending); a rebuild's multi-megabyte bulk requests may take longer.
        self.bulk_client = self.client.options(request_timeout=bulk_timeout)
        self.prefix = alias
        self.read_alias = naming.read_alias(alias, extractor_id)
        self.knn_window = knn_window
        self.rescore_oversample = rescore_oversample if quantization != "hnsw" else 0
        # HNSW explores num_candidates per shard; at 100k random 1280-d vectors 3,000 gave recall@10 0.80 and the
        # maximum, 10,000, gave 1.00 for ~2 ms more (bench/vector_search.py).
        self.num_candidates = max(knn_window, min(10_000, num_candidates))
        self.bulk_chunk = bulk_chunk
        self.settings = {"number_of_shards": shards, "number_of_replicas": replicas}
        self.mapping = mapping(
            dim=dim, index_options={"type": quantization, "m": hnsw_m, "ef_construction": hnsw_ef_construction}
        )
        self.guard_template = naming.guard_template(alias, extractor_id)
        self._fields_checked = False
        self._packs_vectors: bool | None = None  # known at the first write
        self.own_names = naming.own_names(alias, extractor_id)
        # A rebuild that crashed (SIGKILL, a lost machine) blocks the next one until its lock expires.
        self.aliases = AliasManager(self.client, alias, extractor_id, self._create_index, replicas=replicas,
                                    lock_ttl=rebuild_lock_ttl, merge_timeout=rebuild_merge_timeout,
                                    max_segments=rebuild_max_segments)

    # --- writes ------------------------------------------------------------------------------------------------

    def upsert(self, entries: Sequence[IndexEntry], *, version: int | None = None) -> None:
        for entry in entries:
            if np.shape(entry.vector) != (self.dim,):
                raise ValueError(f"vector has shape {np.shape(entry.vector)}, index expects ({self.dim},)")
        with _unavailable_on_errors():
            targets = self.aliases.write_targets()
            self._add_new_fields(targets)
            self._bulk(targets, [self._index_action(e) for e in entries], version)

    def _add_new_fields(self, targets: Sequence[str]) -> None:
        """Once per process: put fields added since an index was built on it, so its strict mapping accepts them."""
        if self._fields_checked or not targets:
            return
        properties = {name: self.mapping["properties"][name] for name in ADDED_FIELDS}
        self.client.indices.put_mapping(index=list(targets), properties=properties)
        self._fields_checked = True

    def delete(self, image_ids: Sequence[int], *, version: int | None = None) -> None:
        with _unavailable_on_errors():
            self._bulk(self.aliases.write_targets(), [("delete", int(i), None) for i in image_ids], version)

    def _bulk(
        self, targets: Sequence[str], actions: list[tuple], version: int | None = None, client=None, *,
        missing_ok: bool = True,
    ) -> None:
        """``missing_ok``: a target dropped meanwhile needs no write (live writes); a rebuild's target must exist."""
        client = client or self.client
        version = version or _now_us()
        rejected: dict[int, str] = {}
        for start in range(0, len(actions), self.bulk_chunk):
            operations = []
            for index in targets:
                for op, image_id, doc in actions[start : start + self.bulk_chunk]:
                    meta = {"_index": index, "_id": str(image_id), "version": version, "version_type": "external_gte"}
                    operations.append({op: meta})
                    if doc is not None:
                        operations.append(doc)
            if operations:
                rejected.update(_bulk_rejections(client.bulk(operations=operations), missing_ok=missing_ok))
        if rejected:
            raise EntriesRejected(rejected)

    def _index_action(self, entry: IndexEntry) -> tuple:
        if self._packs_vectors is None:
            self._packs_vectors = _accepts_base64_vectors(self.client)
        return _index_action(entry, packed=self._packs_vectors)

    def _create_index(self, name: str) -> None:
        self._forbid_auto_create()
        # gc_deletes: delete tombstones must outlive a rebuild's stale writes so versions can reject them.
        settings = {**self.settings, "gc_deletes": "30m"}
        self.client.indices.create(index=name, settings=settings, mappings=self.mapping)

    def _forbid_auto_create(self) -> None:
        """Install (idempotently) the template that stops writes from re-creating a dropped index."""
        try:
            self.client.indices.put_index_template(
                name=self.guard_template, index_patterns=[self.own_names], allow_auto_create=False,
                priority=GUARD_PRIORITY, meta={"description": "visualsearch: never auto-create these indexes"},
            )
        except ApiError as exc:  # e.g. no manage_index_templates privilege: the rebuild lock still protects
            logger.warning("cannot install index template %s (%s): a late write to a dropped index "
                           "would re-create it with a wrong mapping", self.guard_template, exc)

    # --- reads -------------------------------------------------------------------------------------------------

    def search(self, vector, *, limit, offset=0, threshold=None, filters=SearchFilters()) -> list[SearchHit]:
        if offset + limit > self.knn_window:
            limit = max(0, self.knn_window - offset)
        if limit <= 0:
            return []
        knn = {
            "field": "vector",
            "query_vector": np.asarray(vector, dtype=np.float32).tolist(),
            "k": self.knn_window,
            "num_candidates": self.num_candidates,
            "filter": _filter_clauses(filters),
        }
        if self.rescore_oversample:
            # int8/bbq quantised vectors rank approximately; rescoring the top k × oversample with the stored
            # float vectors restores exact scores (and recall) at little cost.
            knn["rescore_vector"] = {"oversample": self.rescore_oversample}
        if threshold is not None:
            knn["similarity"] = float(threshold)  # for dot_product: the raw dot product = cosine on unit vectors
        with _unavailable_on_errors():
            try:
                response = self.client.search(
                    index=self.read_alias, knn=knn, collapse={"field": "product_id"}, from_=offset, size=limit,
                    source=["product_id", "image_id"], track_total_hits=False,
                )
            except NotFoundError:
                return []  # nothing indexed yet
        return [_hit(h) for h in response["hits"]["hits"]]

    def search_words(self, words, *, limit, filters=SearchFilters()) -> list[SearchHit]:
        unique = np.unique(np.asarray(words, dtype=np.int64))
        if not len(unique) or limit <= 0:
            return []
        # One term clause per distinct word (a repeated query term would count twice); BM25 as configured on the
        # field. The caller caps the words below the boolean clause limit.
        query = {"bool": {"must": {"match": {"words": " ".join(map(str, unique.tolist()))}},
                          "filter": _filter_clauses(filters)}}
        with _unavailable_on_errors():
            try:
                response = self.client.search(index=self.read_alias, query=query, size=limit,
                                              source=["product_id"], track_total_hits=False)
            except NotFoundError:
                return []
        return [SearchHit(int(h["_source"]["product_id"]), int(h["_id"]), float(h["_score"]))
                for h in response["hits"]["hits"]]

    def count(self) -> int:
        with _unavailable_on_errors():
            try:
                return int(self.client.count(index=self.read_alias)["count"])
            except NotFoundError:
                return 0

    def image_ids(self) -> set[int]:
        with _unavailable_on_errors():
            if not self.client.indices.exists_alias(name=self.read_alias):
                return set()
            return {int(d["_id"]) for d in scan(self.client, index=self.read_alias, _source=False, size=2000)}

    def refresh(self) -> None:
        with _unavailable_on_errors():
            self.client.indices.refresh(index=self.aliases.write_alias, allow_no_indices=True,
                                        ignore_unavailable=True)

    # --- zero-downtime rebuild ---------------------------------------------------------------------------------

    def rebuild(self, entries: Iterable[IndexEntry], *, expected_count=None) -> int:
        with _unavailable_on_errors():
            return self.aliases.rebuild(lambda index, heartbeat: self._load(index, entries, heartbeat), expected_count)

    def _load(self, target: str, entries: Iterable[IndexEntry], heartbeat: Callable[[], None]) -> int:
        # Versioned as of *before* the first database read: any live write of the same photo during the build
        # carries a later version and wins, whichever reaches Elasticsearch first.
        version, loaded, batch = _now_us(), 0, []
        for entry in entries:
            batch.append(entry)
            if len(batch) >= self.bulk_chunk:
                loaded += self._load_batch(target, batch, version)
                batch = []
                heartbeat()
        return loaded + (self._load_batch(target, batch, version) if batch else 0)

    def _load_batch(self, target: str, batch: list[IndexEntry], version: int) -> int:
        for entry in batch:
            if np.shape(entry.vector) != (self.dim,):
                raise ValueError(f"vector has shape {np.shape(entry.vector)}, index expects ({self.dim},)")
        try:
            self._bulk([target], [self._index_action(e) for e in batch], version, client=self.bulk_client,
                       missing_ok=False)
        except EntriesRejected as exc:  # a rebuild goes on without them (their photos' rows say nothing: logged)
            logger.warning("rebuild: %s", exc)
            return len(_unique_ids(batch) - set(exc.rejected))
        return len(_unique_ids(batch))

    def rollback(self) -> None:
        with _unavailable_on_errors():
            self.aliases.rollback()

    def close(self) -> None:
        self.client.close()

    def check(self) -> list[str]:
        try:
            self.client.cluster.health(timeout="2s")
        except (TransportError, ApiError) as exc:
            return [f"Elasticsearch is not reachable: {exc}"]
        return []


def _accepts_base64_vectors(client: Elasticsearch) -> bool:
    """Whether every node takes base64 vectors: a mixed cluster mid-upgrade parses what its oldest node does. Where
    the versions cannot be read (a user without the monitor privilege, a serverless project): float arrays, which
    every version takes."""
    try:
        nodes = client.nodes.info(filter_path="nodes.*.version")["nodes"].values()
    except ApiError as exc:
        logger.info("cannot read the cluster's node versions (%s): sending vectors as float arrays", exc)
        return False
    return min(version_tuple(node["version"]) for node in nodes) >= BASE64_VECTORS_SINCE


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def _index_action(entry: IndexEntry, *, packed: bool = False) -> tuple:
    vector = np.asarray(entry.vector, dtype=np.float32)
    doc = {
        "image_id": entry.image_id,
        "product_id": entry.product_id,
        "category": entry.category,
        "is_active": entry.is_active,
        "price": entry.price,
        "in_stock": entry.in_stock,
        "indexed_at_us": _now_us(),
        "vector": pack_dense_vector(vector) if packed else vector.tolist(),
    }
    if entry.words is not None and len(entry.words):
        doc["words"] = " ".join(map(str, np.asarray(entry.words, dtype=np.int64).tolist()))  # repeats = frequency
    return ("index", entry.image_id, doc)


def _unique_ids(batch: list[IndexEntry]) -> set[int]:
    return {entry.image_id for entry in batch}


def _filter_clauses(filters: SearchFilters) -> list[dict]:
    clauses = []
    if filters.active_only:
        clauses.append({"term": {"is_active": True}})
    if filters.category is not None:
        clauses.append({"term": {"category": filters.category}})
    if filters.min_price is not None or filters.max_price is not None:
        bounds = {"gte": filters.min_price, "lte": filters.max_price}
        clauses.append({"range": {"price": {k: v for k, v in bounds.items() if v is not None}}})
    if filters.in_stock_only:
        # must_not false, not term true: documents written before the field existed count as in stock.
        clauses.append({"bool": {"must_not": {"term": {"in_stock": False}}}})
    if filters.exclude_image_ids:
        clauses.append({"bool": {"must_not": {"terms": {"image_id": sorted(filters.exclude_image_ids)}}}})
    return clauses


def _hit(hit: dict) -> SearchHit:
    # dot_product _score is (1 + cosine) / 2; callers get the cosine, as from every backend.
    return SearchHit(int(hit["_source"]["product_id"]), int(hit["_id"]), 2.0 * float(hit["_score"]) - 1.0)


def _bulk_rejections(response, *, missing_ok: bool = True) -> dict[int, str]:
    """Items the server refused for what they are (4xx: only those photos fail); an overloaded or failing server
    (429, 5xx) means the whole write must be retried later: IndexUnavailable."""
    rejected: dict[int, str] = {}
    if not response.get("errors"):
        return rejected
    for item in response["items"]:
        result = next(iter(item.values()))
        status = result.get("status", 200)
        error = result.get("error") or {}
        if status == 404 and error.get("type") == "index_not_found_exception" and not missing_ok:
            raise IndexUnavailable(f"index {result.get('_index')} was deleted while being written")
        # 409: a newer version is already there (the race versions exist to settle); 404: deleting the absent, or
        # an index dropped since the targets were listed (the template keeps it from being re-created).
        if status < 300 or status in (404, 409):
            continue
        if status == 429 or status >= 500:
            raise IndexUnavailable(f"bulk write failed: {error}")
        rejected[int(result["_id"])] = f"{error.get('type', status)}: {error.get('reason', '')}"[:500]
    return rejected


def _now_us() -> int:
    return time.time_ns() // 1000


class _unavailable_on_errors:
    """Connection problems, timeouts, server errors and refusals become IndexUnavailable (→ 503 / photos left pending).

    404 passes through: callers know what a missing index means (nothing indexed yet). 429 (overloaded) is transient;
    any other 4xx means the index or the query is wrong (say a kNN on an index without dense_vector) and will not
    heal by itself, so it is also logged as an error.
    """

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, NotFoundError):
            return False
        if isinstance(exc, ApiError):
            raise _refusal(exc) from exc
        if isinstance(exc, TransportError):
            raise IndexUnavailable(str(exc)) from exc
        return False


def _refusal(exc: ApiError) -> IndexUnavailable:
    status = exc.meta.status
    if status == 429:
        return IndexUnavailable(f"Elasticsearch is overloaded (429), try again later: {exc}")
    if status >= 500:
        return IndexUnavailable(str(exc))
    logger.error("Elasticsearch refused a request (%s): %s", status, exc)
    return IndexRejected(f"Elasticsearch refused the request ({status}): {exc}")


class IndexRejected(IndexUnavailable):
    """Elasticsearch answered 4xx: the index is mis-mapped or the request invalid; a rebuild may be needed."""
