"""Vector search alone: latency and recall@10 of the index backends on random 1280-d unit vectors.

Products = vectors (one photo each, so grouping by product changes nothing). Queries: random unit vectors, and
— closer to real use — perturbed copies of stored vectors (cosine ≈ 0.89 to their source). Recall@10 is measured
against exact brute force in numpy on the same vectors. The embedded index is loaded with ``rebuild`` (how it is
loaded in production); Elasticsearch through ``upsert`` in chunks of 1000, then ``refresh``, then we wait for its
background merges so they do not compete with the timed queries. Extra table: a few other Elasticsearch
settings (kNN window, num_candidates, rescoring) on the same index.

    .venv/bin/python -m bench.vector_search [--sizes 10000,100000] [--es-sizes 10000,100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import (elasticsearch_url, elasticsearch_version, latency_summary_ms, log, machine_info, print_tables,
                     table, time_calls, write_json)  # fmt: skip
from .es import delete_indexes, segment_count, unique_prefix, wait_for_merges

NAME = "vector_search"
DIM = 1280
K = 10
WARMUP = 50  # queries before timing: a fresh index's pages and Lucene's caches warm up first
CHUNK = 1000
PERTURBATION = 0.5  # q = normalise(v + 0.5·u), u a random unit vector: cos(q, v) ≈ 1/√1.25 ≈ 0.89
DEFAULT_ES = {"knn_window": 300, "num_candidates": 10_000, "rescore_oversample": 2.0}
ES_VARIANTS = [  # (label, options): each changes one or two knobs from the default
    ("window 300, candidates 10000, no rescore", {"rescore_oversample": 0}),
    ("window 300, candidates 3000, rescore ×2", {"num_candidates": 3000}),
    ("window 100, candidates 1000, rescore ×2", {"knn_window": 100, "num_candidates": 1000}),
    ("window 100, candidates 300, rescore ×2", {"knn_window": 100, "num_candidates": 300}),
]  # fmt: skip
VARIANT_QUERIES = 100  # of each kind, to keep the whole run short


@dataclass
class Workload:
    vectors: np.ndarray  # (n, DIM) unit rows; image id = product id = row + 1
    queries: dict[str, np.ndarray]  # kind → (q, DIM) unit rows
    truth: dict[str, np.ndarray]  # kind → (q, K) exact top-K image ids
    sources: np.ndarray  # image id each perturbed query was made from


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def workload(n: int, queries: int, seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((n, DIM), dtype=np.float32))
    source_rows = rng.choice(n, size=queries, replace=False)
    noise = unit(rng.standard_normal((queries, DIM), dtype=np.float32))
    kinds = {"random": unit(rng.standard_normal((queries, DIM), dtype=np.float32)),
             "perturbed": unit(vectors[source_rows] + PERTURBATION * noise)}  # fmt: skip
    truth = {kind: exact_top_k(vectors, q) for kind, q in kinds.items()}
    return Workload(vectors, kinds, truth, source_rows + 1)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Image ids of the k best rows by dot product (ties by id), brute force in numpy."""
    scores = queries @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.lexsort((top, -np.take_along_axis(scores, top, axis=1)), axis=1)
    return np.take_along_axis(top, order, axis=1) + 1


def entries(vectors: np.ndarray, start: int = 0, stop: int | None = None):
    from visualsearch.backends.base import IndexEntry

    stop = len(vectors) if stop is None else stop
    return [IndexEntry(i + 1, i + 1, vectors[i], "bench", True) for i in range(start, stop)]


def measure(search: Callable[[np.ndarray], list], work: Workload) -> dict[str, Any]:
    """Latency of every query (after a warm-up) and recall@K against brute force, per query kind."""
    for q in work.queries["random"][:WARMUP]:
        search(q)
    out = {}
    for kind, queries in work.queries.items():
        latencies, recalls, found = [], [], []
        for q, truth in zip(queries, work.truth[kind]):
            started = time.perf_counter()
            hits = search(q)
            latencies.append(time.perf_counter() - started)
            got = [h.image_id for h in hits[:K]]
            recalls.append(len(set(got) & set(truth.tolist())) / K)
            found.append(got[:1])
        out[kind] = {"latency_ms": latency_summary_ms(latencies), "recall_at_10": statistics.fmean(recalls)}
        if kind == "perturbed":
            out[kind]["source_at_rank_1"] = statistics.fmean(
                float(g == [s]) for g, s in zip(found, work.sources.tolist()))
    return out


def _fewer_queries(work: Workload, count: int) -> Workload:
    return Workload(work.vectors, {k: q[:count] for k, q in work.queries.items()},
                    {k: t[:count] for k, t in work.truth.items()}, work.sources[:count])  # fmt: skip


# --- backends ----------------------------------------------------------------------------------------------------


def run_embedded(work: Workload) -> dict[str, Any]:
    from visualsearch.backends.base import SearchFilters
    from visualsearch.backends.embedded import EmbeddedIndex

    index = EmbeddedIndex(extractor_id="bench", dim=DIM)
    rows = entries(work.vectors)
    started = time.perf_counter()
    index.rebuild(rows)
    load_s = time.perf_counter() - started
    one = entries(work.vectors, 0, 1)
    upsert_ms = 1000 * statistics.median(time_calls(lambda: index.upsert(one), 5))  # one photo saved
    result = measure(lambda q: index.search(q, limit=K, filters=SearchFilters()), work)
    return {"load_s": load_s, "upsert_one_ms": upsert_ms, **result}


def run_numpy_floor(work: Workload) -> dict[str, Any]:
    """What exact search costs at least here: one matrix-vector product and a partial sort, no filters or grouping."""
    from visualsearch.backends.base import SearchHit

    matrix = work.vectors

    def search(q: np.ndarray) -> list[SearchHit]:
        scores = matrix @ q
        top = np.argpartition(-scores, K)[:K]
        return [SearchHit(int(i) + 1, int(i) + 1, float(scores[i])) for i in top[np.argsort(-scores[top])]]

    return measure(search, work)


def load_elasticsearch(work: Workload, es_url: str, alias: str) -> dict[str, Any]:
    from visualsearch.backends.elasticsearch import ElasticsearchIndex

    index = ElasticsearchIndex(extractor_id="bench", dim=DIM, hosts=[es_url], alias=alias, timeout=120)
    started = time.perf_counter()
    for start in range(0, len(work.vectors), CHUNK):
        index.upsert(entries(work.vectors, start, start + CHUNK))
    upsert_s = time.perf_counter() - started
    index.refresh()
    load_s = time.perf_counter() - started
    concrete = index.aliases.write_targets()[0]
    merge_wait_s = wait_for_merges(index.client, concrete)
    return {"index": index, "upsert_s": upsert_s, "load_s": load_s, "merge_wait_s": merge_wait_s,
            "segments": segment_count(index.client, concrete),
            "json_encode_s_estimate": _json_cost(index, work)}


def _json_cost(index, work: Workload) -> float:
    """Seconds the client spends encoding the bulk bodies (documents, then NDJSON), extrapolated from 200 documents."""
    chunk = entries(work.vectors, 0, min(200, len(work.vectors)))
    serializer = index.client.transport.serializers.get_serializer("application/x-ndjson")
    started = time.perf_counter()
    operations = []
    for _, image_id, doc in (index._index_action(e) for e in chunk):
        operations += [{"index": {"_index": "x", "_id": str(image_id)}}, doc]
    serializer.dumps(operations)
    return (time.perf_counter() - started) * len(work.vectors) / len(chunk)


def es_search(options: dict[str, Any], es_url: str, alias: str) -> Callable[[np.ndarray], list]:
    from visualsearch.backends.base import SearchFilters
    from visualsearch.backends.elasticsearch import ElasticsearchIndex

    index = ElasticsearchIndex(extractor_id="bench", dim=DIM, hosts=[es_url], alias=alias, timeout=30,
                               **{**DEFAULT_ES, **options})  # fmt: skip
    return lambda q: index.search(q, limit=K, filters=SearchFilters())


def run_elasticsearch(work: Workload, es_url: str, variants: bool) -> dict[str, Any]:
    alias = unique_prefix("vectors")
    try:
        loaded = load_elasticsearch(work, es_url, alias)
        loaded.pop("index").close()
        log(f"vector: elasticsearch n={len(work.vectors):,}: loaded in {loaded['load_s']:.0f} s, "
            f"{loaded['segments']} segments; querying")
        result = {**loaded, **measure(es_search({}, es_url, alias), work)}
        if variants:
            fewer = _fewer_queries(work, VARIANT_QUERIES)
            result["variants"] = {label: measure(es_search(options, es_url, alias), fewer)
                                  for label, options in ES_VARIANTS}  # fmt: skip
    finally:
        delete_indexes(es_url, alias)
    return result


# --- report ------------------------------------------------------------------------------------------------------


def _row(backend: str, n: int, r: dict[str, Any], load: str) -> list:
    rnd, per = r["random"], r["perturbed"]
    return [backend, f"{n:,}", load, rnd["latency_ms"]["p50"], rnd["latency_ms"]["p95"],
            f"{rnd['recall_at_10']:.3f}", per["latency_ms"]["p50"], per["latency_ms"]["p95"],
            f"{per['recall_at_10']:.3f}", f"{per['source_at_rank_1']:.3f}"]  # fmt: skip


HEADERS = ["backend", "vectors", "load", "random p50 ms", "random p95 ms", "random R@10", "perturbed p50 ms",
           "perturbed p95 ms", "perturbed R@10", "source @1"]  # fmt: skip


def tables(results: dict[str, dict[int, dict[str, Any]]], queries: int) -> list[str]:
    rows = [_row("embedded", n, r, f"{r['load_s']:.1f} s (rebuild)") for n, r in results["embedded"].items()]
    rows += [_row("numpy floor: V @ q + argpartition", n, r, "-") for n, r in results.get("numpy_floor", {}).items()]
    for n, r in results.get("elasticsearch", {}).items():
        rows.append(_row("elasticsearch", n, r, f"{r['load_s']:.0f} s ({r['json_encode_s_estimate']:.0f} s JSON)"))
    out = [table(f"Vector search, {queries} queries of each kind, k={K} (Elasticsearch: window 300, "
                 "num_candidates 10000, rescore ×2)", HEADERS, rows)]  # fmt: skip
    extra = [_row(f"es: {label}", n, v, "-") for n, r in results.get("elasticsearch", {}).items()
             for label, v in r.get("variants", {}).items()]  # fmt: skip
    if extra:
        out.append(table(f"Elasticsearch settings tried on the same index ({min(queries, VARIANT_QUERIES)} queries "
                         "of each kind)",
                         HEADERS, extra))
    writes = [[f"{n:,}", r["upsert_one_ms"]] for n, r in results["embedded"].items()]
    out.append(table("Embedded index: upsert of one photo (appended to preallocated buffers, replaced row masked), median ms",
                     ["vectors", "ms"], writes))  # fmt: skip
    return out


def _django() -> None:
    """The Elasticsearch backend imports the catalog models: set Django up on a throw-away var dir (never var/)."""
    from django.apps import apps

    if apps.ready:
        return
    var_dir = tempfile.mkdtemp(prefix="visualsearch-bench-vectors-")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ["DJANGO_VAR_DIR"] = var_dir
    import django

    django.setup()
    atexit.register(shutil.rmtree, var_dir, ignore_errors=True)


def run(*, sizes: list[int], es_sizes: list[int], queries: int, variants_at: list[int]) -> dict[str, Any]:
    _django()
    es_url = elasticsearch_url()
    es_version = elasticsearch_version(es_url) if es_sizes else None
    results: dict[str, dict[int, dict[str, Any]]] = {"embedded": {}}
    for n in sorted(set(sizes) | set(es_sizes if es_version else [])):
        work = workload(n, queries)
        if n in sizes:
            log(f"vector: embedded n={n:,}")
            results["embedded"][n] = run_embedded(work)
            results.setdefault("numpy_floor", {})[n] = run_numpy_floor(work)
        if es_version and n in es_sizes:
            log(f"vector: elasticsearch n={n:,}: loading")
            results.setdefault("elasticsearch", {})[n] = run_elasticsearch(work, es_url, n in variants_at)
    if es_sizes and not es_version:
        log(f"vector: no Elasticsearch at {es_url}: skipped")
    return {"benchmark": NAME, "machine": machine_info(es_url if es_version else None),
            "config": {"sizes": sizes, "es_sizes": es_sizes if es_version else [], "queries": queries, "k": K,
                       "dim": DIM, "perturbation": PERTURBATION, "es_default": DEFAULT_ES, "chunk": CHUNK},
            "results": results, "tables": tables(results, queries)}  # fmt: skip


def _sizes(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vector_search", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[10_000, 100_000], help="embedded sizes (10000,100000)")
    parser.add_argument("--es-sizes", type=_sizes, default=[10_000, 100_000], help="Elasticsearch sizes; '' skips")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    parser.add_argument("--variants-at", type=_sizes, default=None, help="sizes for the extra ES table (largest)")
    args = parser.parse_args(argv)
    variants_at = args.variants_at if args.variants_at is not None else args.es_sizes[-1:]
    payload = run(sizes=args.sizes, es_sizes=args.es_sizes, queries=args.queries, variants_at=variants_at)
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
