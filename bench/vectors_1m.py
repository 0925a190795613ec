"""Elasticsearch kNN at a million real-distribution vectors, one row per quantisation (int8_hnsw, bbq_hnsw): load
time, memory and recall@10 / latency at a few ``num_candidates``.

Memory is what a shop has to provision: the vector files Elasticsearch searches off-heap (the HNSW graph plus the
quantised vectors must stay in the page cache for fast kNN; the float32 originals are only read to rescore the top
k × oversample, a few hundred random reads a query), the store on disk, and the node's heap and RSS afterwards.

Vectors and queries as ``bench.real_vectors`` (same generator: 10 000 real embeddings, the rest from the clustered
model fitted to them). Loaded through the backend's live writes in chunks of 1000, then refreshed; we wait for the
background merges and measure the index as live writes leave it (a few dozen segments, each searched), then
force-merge it to one segment as ``reindex`` does before its swap (timed: the rebuild waits for it up to
``ELASTICSEARCH_REBUILD_MERGE_TIMEOUT``) and measure again.

    .venv/bin/python -m bench.vectors_1m [--size 1000000] [--quantizations int8_hnsw,bbq_hnsw] [--queries 200]

Needs ~6 GB of RAM for the vectors in this process and as much again for Elasticsearch's page cache; a node heap
of a few GB (``ES_HEAP=4g bash scripts/services.sh start elasticsearch``) flushes fewer, larger segments.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .common import log, machine_info, print_tables, table, write_json
from .es import client as es_client
from .es import delete_indexes, segment_count, unique_prefix, wait_for_merges
from .real_vectors import es_workload
from .vector_search import CHUNK, DEFAULT_ES, DIM, Workload, entries, es_search, measure

NAME = "vectors_1m"
QUANTIZATIONS = ["int8_hnsw", "bbq_hnsw"]
CANDIDATES = [1000, 3000, 10_000]  # with the default window of 300: the low end, the middle and the default
MERGE_WAIT_S = 3600
MB = 1 << 20


def load(work: Workload, es_url: str, alias: str, quantization: str):
    from visualsearch.backends.elasticsearch import ElasticsearchIndex

    index = ElasticsearchIndex(extractor_id="bench", dim=DIM, hosts=[es_url], alias=alias, timeout=300,
                               quantization=quantization)  # fmt: skip
    started, n = time.perf_counter(), len(work.vectors)
    for start in range(0, n, CHUNK):
        index.upsert(entries(work.vectors, start, start + CHUNK))
        if (start + CHUNK) % 100_000 == 0:
            elapsed = time.perf_counter() - started
            log(f"vectors_1m {quantization}: {start + CHUNK:,} / {n:,} in {elapsed:.0f} s "
                f"({(start + CHUNK) / elapsed:.0f} vectors/s)")
    index.refresh()
    load_s = time.perf_counter() - started
    concrete = index.aliases.write_targets()[0]
    merge_wait_s = wait_for_merges(index.client, concrete, timeout_s=MERGE_WAIT_S)
    out = {"load_s": load_s, "merge_wait_s": merge_wait_s, "segments": segment_count(index.client, concrete),
           "memory": memory(index.client, concrete), "concrete": concrete}
    index.close()
    return out


def force_merge(es_url: str, index: str) -> dict[str, Any]:
    """Merge into one segment as a rebuild does before going live; seconds it took and what it left."""
    es = es_client(es_url, timeout=MERGE_WAIT_S + 60)
    started = time.perf_counter()
    task = es.indices.forcemerge(index=index, max_num_segments=1, wait_for_completion=False)["task"]
    while not es.tasks.get(task_id=task)["completed"]:
        if time.perf_counter() - started > MERGE_WAIT_S:
            raise SystemExit(f"bench.vectors_1m: the force merge of {index} took over {MERGE_WAIT_S} s")
        time.sleep(5)
    out = {"merge_s": time.perf_counter() - started, "segments": segment_count(es, index), "memory": memory(es, index)}
    es.close()
    return out


def memory(es, index: str) -> dict[str, float]:
    """MB: the off-heap vector files by kind, the store, and the node's heap and resident memory."""
    vectors = es.indices.stats(index=index, metric="dense_vector")["_all"]["total"]["dense_vector"]["off_heap"]
    store = es.indices.stats(index=index, metric="store")["_all"]["total"]["store"]["size_in_bytes"]
    [node] = es.nodes.stats(metric="jvm")["nodes"].values()
    [info] = es.nodes.info(metric="process")["nodes"].values()
    resident = _resident(info["process"].get("id"))
    return {"graph_mb": vectors["total_vex_size_bytes"] / MB,
            "quantized_mb": (vectors["total_veq_size_bytes"] + vectors["total_veb_size_bytes"]) / MB,
            "float32_mb": vectors["total_vec_size_bytes"] / MB, "store_mb": store / MB,
            "heap_used_mb": node["jvm"]["mem"]["heap_used_in_bytes"] / MB,
            "heap_max_mb": node["jvm"]["mem"]["heap_max_in_bytes"] / MB, **resident}  # fmt: skip


def _resident(pid: int | None) -> dict[str, float]:
    """The node's RSS, split into its own memory and the mapped index files it holds resident (Linux, local node)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return {}
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    kb = lambda name: int(fields.get(name, "0 kB").split()[0]) / 1024  # noqa: E731
    return {"rss_mb": kb("VmRSS"), "rss_anon_mb": kb("RssAnon"), "rss_file_mb": kb("RssFile")}


def measure_curve(work: Workload, es_url: str, alias: str, quantization: str) -> list[dict[str, Any]]:
    out = []
    for candidates in CANDIDATES:
        options = {"num_candidates": candidates, "quantization": quantization}
        result = measure(es_search(options, es_url, alias), work)
        out.append({"num_candidates": candidates, **result})
        s = result["shopper"]
        log(f"vectors_1m {quantization}: num_candidates {candidates}: shopper R@10 {s['recall_at_10']:.3f}, "
            f"p50 {s['latency_ms']['p50']:.1f} ms")
    return out


def run(*, size: int, real: int, queries: int, quantizations: list[str]) -> dict[str, Any]:
    es_url, work, stats = es_workload(NAME, size, real, queries)
    rows = {}
    for quantization in quantizations:
        alias = unique_prefix(f"million-{quantization.replace('_', '')}")
        try:
            loaded = load(work, es_url, alias, quantization)
            log(f"vectors_1m {quantization}: loaded in {loaded['load_s']:.0f} s, merges {loaded['merge_wait_s']:.0f} s,"
                f" {loaded['segments']} segments; querying")
            loaded["curve"] = measure_curve(work, es_url, alias, quantization)
            merged = force_merge(es_url, loaded.pop("concrete"))
            log(f"vectors_1m {quantization}: force-merged to {merged['segments']} segment(s) in "
                f"{merged['merge_s']:.0f} s; querying")
            merged["curve"] = measure_curve(work, es_url, alias, quantization)
            rows[quantization] = {**loaded, "merged": merged}
        finally:
            delete_indexes(es_url, alias)
    return {"benchmark": NAME, "machine": machine_info(es_url),
            "config": {"size": size, "real": real, "queries": queries, "candidates": CANDIDATES,
                       "knn_window": DEFAULT_ES["knn_window"], "rescore_oversample": DEFAULT_ES["rescore_oversample"]},
            "workload": stats, "rows": rows, "tables": tables(size, rows)}


def states(rows: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(quantization, state, measurements): each index as live writes left it, then force-merged."""
    return [(q, state, r) for q, loaded in rows.items()
            for state, r in ((f"as loaded, {loaded['segments']} segments", loaded),
                             (f"force-merged in {loaded['merged']['merge_s']:.0f} s", loaded["merged"]))]


def tables(size: int, rows: dict[str, Any]) -> list[str]:
    memory_rows = [[q, f"{r['load_s']:.0f}", f"{r['merge_wait_s']:.0f}", r["segments"],
                    f"{r['merged']['merge_s']:.0f}", r["merged"]["segments"],
                    *(f"{mb:,.0f}" for mb in (m["graph_mb"] + m["quantized_mb"], m["float32_mb"], m["store_mb"],
                                              m["heap_used_mb"], m.get("rss_mb", float("nan"))))]
                   for q, r in rows.items() for m in [r["merged"]["memory"]]]  # fmt: skip
    curve_rows = [[q, state, f"{p['num_candidates']:,}", f"{p['shopper']['recall_at_10']:.3f}",
                   p["shopper"]["latency_ms"]["p50"], p["shopper"]["latency_ms"]["p95"],
                   f"{p['cluttered']['recall_at_10']:.3f}", p["cluttered"]["latency_ms"]["p50"],
                   f"{p['random']['recall_at_10']:.3f}", p["random"]["latency_ms"]["p50"]]
                  for q, state, r in states(rows) for p in r["curve"]]  # fmt: skip
    return [
        table(f"Elasticsearch at {size:,} real-distribution 1280-d vectors: load, merge and memory once merged (MB). "
              "'Hot' = HNSW graph + quantised vectors, the files kNN reads on every query (keep them in the page "
              "cache)",
              ["quantization", "load s", "merge wait s", "segments", "force merge s", "segments after", "hot MB",
               "float32 MB", "store MB", "heap used MB", "node RSS MB"], memory_rows),
        table(f"Elasticsearch kNN at {size:,} real-distribution vectors, window {DEFAULT_ES['knn_window']}, rescore "
              f"×{DEFAULT_ES['rescore_oversample']:g}, k=10",
              ["quantization", "index", "num_candidates", "shopper R@10", "shopper p50 ms", "shopper p95 ms",
               "cluttered R@10", "cluttered p50 ms", "random R@10", "random p50 ms"], curve_rows),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vectors_1m", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="vectors indexed (default 1000000)")
    parser.add_argument("--real", type=int, default=10_000, help="of which real embeddings (default 10000)")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    parser.add_argument("--quantizations", default=",".join(QUANTIZATIONS),
                        help=f"Elasticsearch index_options types, one row each (default {','.join(QUANTIZATIONS)})")
    args = parser.parse_args(argv)
    payload = run(size=args.size, real=args.real, queries=args.queries,
                  quantizations=[q for q in args.quantizations.split(",") if q])  # fmt: skip
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
