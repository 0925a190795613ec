"""End-to-end search: HTTP POST of a ~1 MP JPEG to /api/search/ on a running server, against the bare model.

The server is the production one, gunicorn with the project's gunicorn.conf.py and one worker
(``BENCH_SERVER=runserver``: `manage.py runserver --noreload`), on a throw-away site (temp SQLite + media, DEBUG
off, no throttle) holding ≥ 10k indexed photos; requests go one at a time from this process over loopback. Each
response carries the server's own stage timings (decode / embed / search / assemble), so the table shows where the
time goes; what remains is HTTP, multipart parsing, DRF and JSON. The bare model is ``extractor.embed_one`` on a
decoded 224×224 image (median of 20). The serving process's memory (VmRSS, VmHWM) is read after the run. Run for
the embedded index and, when a server answers, for Elasticsearch.

    .venv/bin/python -m bench.e2e_search [--images 10000] [--requests 40] [--no-es]
    BENCH_SERVER=runserver .venv/bin/python -m bench.e2e_search ...
"""
from __future__ import annotations

import argparse
import http.client
import json
import statistics
import time
from pathlib import Path
from typing import Any

from . import dataset
from .bulk_indexing import Catalog, build_catalog
from .common import (elasticsearch_url, multipart, elasticsearch_version, fmt, latency_summary_ms, log,
                     machine_info, percentile, print_tables, quiet_tensorflow, ratio, table, time_calls, times,
                     write_json)  # fmt: skip
from .es import delete_indexes, unique_prefix
from .site import SERVERS, server_kind

NAME = "e2e_search"
QUERY_SEED = 1  # queries are new augmentations of the catalog's source photos: similar, never identical
STAGES = ("decode", "embed", "search", "assemble")


# --- the bare model --------------------------------------------------------------------------------------------


def bare_model(query_paths: list[str], repeat: int = 20) -> dict[str, float]:
    """Median ms of embed_one on a 224×224-ready image, and of the service's decode + embed_one on the 1 MP JPEG."""
    quiet_tensorflow()
    from PIL import Image

    from visualsearch.extractors.efficientnet_lite0 import EfficientNetLite0Extractor
    from visualsearch.imaging import decode_image

    extractor = EfficientNetLite0Extractor()
    data = Path(query_paths[0]).read_bytes()
    decoded = decode_image(data, max_pixels=40_000_000)
    ready = decoded.resize((224, 224), Image.Resampling.BICUBIC)
    for _ in range(3):
        extractor.embed_one(ready)  # build, trace, warm caches
    median = lambda f: 1000 * statistics.median(time_calls(f, repeat))  # noqa: E731
    return {
        "embed_one_224_ms": median(lambda: extractor.embed_one(ready)),
        "embed_one_1mp_ms": median(lambda: extractor.embed_one(decoded)),
        "decode_1mp_ms": median(lambda: decode_image(data, max_pixels=40_000_000)),
        "repeat": repeat,
    }


# --- requests ----------------------------------------------------------------------------------------------------


def _multipart(image: bytes, fields: dict[str, str]) -> tuple[bytes, str]:
    return multipart({"image": ("query.jpg", image, "image/jpeg")}, fields)


def post_search(base: str, image: bytes, limit: int = 20, timeout: float = 120) -> tuple[float, int, dict[str, Any]]:
    """(seconds from connect to the last response byte, HTTP status, parsed JSON) for one search."""
    body, content_type = _multipart(image, {"limit": str(limit)})
    host, port = base.removeprefix("http://").split(":")
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request("POST", "/api/search/", body, {"Content-Type": content_type})
        response = connection.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return elapsed, response.status, json.loads(raw)


def measure(base: str, queries: list[bytes], warmup: int) -> dict[str, Any]:
    for image in queries[:warmup]:
        post_search(base, image)  # the first waits for the server's model warm-up
    latencies, server, results, errors = [], [], [], []
    for image in queries[warmup:]:
        seconds, status, payload = post_search(base, image)
        if status != 200:
            errors.append({"status": status, "body": payload})
            continue
        latencies.append(seconds)
        server.append(payload["timings_ms"])
        results.append(len(payload["results"]))
    return {"latency": latencies, "server": server, "results": results, "errors": errors}


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    overhead = [lat * 1000 - s["total"] for lat, s in zip(raw["latency"], raw["server"])]
    # Recognition adds stages (local_features, candidates_*, verify): kept in the JSON, not in the table.
    stages = list(STAGES) + sorted({k for s in raw["server"] for k in s} - set(STAGES) - {"total"})
    stage_p50 = {stage: percentile([s.get(stage, 0.0) for s in raw["server"]], 50) for stage in stages}
    return {
        "http_ms": latency_summary_ms(raw["latency"]),
        "server_total_ms": {"p50": percentile([s["total"] for s in raw["server"]], 50),
                            "p95": percentile([s["total"] for s in raw["server"]], 95)},  # fmt: skip
        "stage_p50_ms": stage_p50,
        "outside_service_p50_ms": percentile(overhead, 50),
        "results_per_query_mean": statistics.fmean(raw["results"]) if raw["results"] else 0,
        "errors": raw["errors"],
    }


# --- backends ----------------------------------------------------------------------------------------------------


def run_backend(catalog: Catalog, label: str, env: dict[str, str], queries: list[bytes], warmup: int):
    log(f"e2e: {label}: starting {server_kind()}")
    with catalog.site.serve(env, label) as server:
        raw = measure(server.base, queries, warmup)
        memory = server.memory_mb()
    result = {**summarise(raw), "server_memory": memory}
    log(f"e2e: {label}: HTTP p50 {result['http_ms']['p50']:.0f} ms, p95 {result['http_ms']['p95']:.0f} ms, "
        f"server RSS {fmt(memory['rss_mb'], 0)} MB (peak {fmt(memory['peak_rss_mb'], 0)} MB)")
    return result


def run_elasticsearch(catalog: Catalog, es_url: str, queries: list[bytes], warmup: int) -> dict[str, Any]:
    """Load the catalog's stored vectors into a fresh Elasticsearch index (`reindex`, no model work), then search."""
    prefix = unique_prefix("e2e")
    env = {"ELASTICSEARCH_URL": es_url, "ELASTICSEARCH_INDEX_ALIAS": prefix}
    try:
        log("e2e: elasticsearch: reindex from stored vectors")
        # A long client timeout for the bulk load only: 500 docs × 1280 floats is ~12 MB a request.
        load = catalog.site.job("reindex", ELASTICSEARCH_TIMEOUT="60", **env)
        result = run_backend(catalog, "elasticsearch", env, queries, warmup)
        result["reindex"] = load
    finally:
        deleted = delete_indexes(es_url, prefix)
        log(f"e2e: deleted {len(deleted)} Elasticsearch indexes {prefix}*")
    return result


def tables(backends: dict[str, dict[str, Any]], model: dict[str, float], images: int) -> list[str]:
    bare = model["embed_one_224_ms"]
    rows = []
    for label, r in backends.items():
        http_ms, stages = r["http_ms"], r["stage_p50_ms"]
        rows.append([label, f"{images:,}", http_ms["p50"], http_ms["p95"], r["server_total_ms"]["p50"],
                     stages["decode"], stages["embed"], stages["search"], stages["assemble"],
                     r["outside_service_p50_ms"], bare, times(ratio(http_ms["p50"], bare)),
                     times(ratio(http_ms["p95"], bare)), _memory(r.get("server_memory"))])  # fmt: skip
    headers = ["backend", "photos", "HTTP p50", "HTTP p95", "server p50", "decode", "embed", "search", "assemble",
               "outside service", "bare model", "p50 / model", "p95 / model", "server RSS (peak), MB"]  # fmt: skip
    n = next(iter(backends.values()))["http_ms"]["n"]
    main = table(f"End-to-end search under {server_kind()}, ms (n={n} requests per backend, stage columns are "
                 "server-side p50s)", headers, rows)  # fmt: skip
    model_rows = [["embed_one on a decoded 224×224 image (the bare model)", bare],
                  ["embed_one on the decoded 1 MP photo (+ resize in the extractor)", model["embed_one_1mp_ms"]],
                  ["decode_image of the 1 MP JPEG (imaging.decode_image)", model["decode_1mp_ms"]]]  # fmt: skip
    return [main, table(f"Bare model, median of {model['repeat']} calls, ms", ["what", "ms"], model_rows)]


def _memory(memory: dict[str, float | None] | None) -> str:
    return f"{fmt(memory['rss_mb'], 0)} ({fmt(memory['peak_rss_mb'], 0)})" if memory else "-"


def run(*, images: int, requests: int, warmup: int, with_es: bool, catalog: Catalog | None = None) -> dict[str, Any]:
    own = catalog is None
    catalog = catalog or build_catalog(images)
    try:
        query_paths = [p.path for p in dataset.photos(requests + warmup, seed=QUERY_SEED)]
        queries = [Path(p).read_bytes() for p in query_paths]
        model = bare_model(query_paths)
        backends = {"embedded": run_backend(catalog, "embedded", {}, queries, warmup)}
        es_url = elasticsearch_url()
        es_version = elasticsearch_version(es_url) if with_es else None
        if es_version:
            backends["elasticsearch"] = run_elasticsearch(catalog, es_url, queries, warmup)
        elif with_es:
            log(f"e2e: no Elasticsearch at {es_url}: skipped")
    finally:
        if own:
            catalog.site.remove()
    indexed = catalog.reindex["indexed"]
    return {"benchmark": NAME, "machine": machine_info(es_url if es_version else None),
            "config": {"images": indexed, "requests": requests, "warmup": warmup, "limit": 20,
                       "query_bytes_mean": statistics.fmean(len(q) for q in queries),
                       "server": SERVERS[server_kind()]},
            "bare_model": model, "backends": backends,
            "catalog_reindex": catalog.reindex if own else "see bulk_indexing",
            "tables": tables(backends, model, indexed)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e_search", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="photos in the catalog (default 10000)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per backend (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first (default 5)")
    parser.add_argument("--no-es", action="store_true", help="skip the Elasticsearch backend")
    args = parser.parse_args(argv)
    payload = run(images=args.images, requests=args.requests, warmup=args.warmup, with_es=not args.no_es)
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
