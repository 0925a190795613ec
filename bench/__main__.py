"""Run every benchmark at the default scale, print a summary and issue 8's targets: ``python -m bench``.

Waits first (up to 10 minutes, polling every 30 s) until the load average is ≤ 1.5, so other people's test runs
do not distort the numbers; the load before, after the wait and at the end goes into every JSON file.
The end-to-end benchmark reuses the 10k-photo catalog that the bulk-indexing benchmark has just indexed.
The recognition benchmark (bench/recognition.py) runs at 10k photos (~10 min); ``--recognition 10000,100000`` adds
the 100k catalog (~30 min more), ``--no-recognition`` skips it. The real-distribution recall curve
(bench/real_vectors.py) needs Elasticsearch and ``../shared/data``. ``--vectors-1m`` adds the million-vector rows
(bench/vectors_1m.py: int8_hnsw and bbq_hnsw with their memory, about an hour on 2 cores).
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from . import bulk_indexing, e2e_search, real_vectors, recognition, seed_baseline, vector_search, vectors_1m
from .common import (elasticsearch_url, fmt, load_average, log, machine_info, print_tables, table, times,
                     wait_for_quiet, write_json)  # fmt: skip

QUICK = {"images": 300, "requests": 10, "seed_images": 20, "sizes": [2_000, 10_000], "es_sizes": [2_000],
         "queries": 30, "real_vectors": 5_000, "real_vectors_real": 4_000}  # fmt: skip
QUICK_RECOGNITION = {"recognition": [600], "recognition_real": 60}


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="catalog for bulk indexing and e2e (10000)")
    parser.add_argument("--requests", type=int, default=40, help="timed e2e requests per backend (40)")
    parser.add_argument("--seed-images", type=int, default=150, help="photos for the seed comparison (150)")
    parser.add_argument("--sizes", type=vector_search._sizes, default=[10_000, 100_000], help="embedded vectors")
    parser.add_argument("--es-sizes", type=vector_search._sizes, default=[10_000, 100_000], help="ES vectors")
    parser.add_argument("--queries", type=int, default=200, help="vector-search queries of each kind (200)")
    parser.add_argument("--no-es", action="store_true", help="skip Elasticsearch in e2e and vector search")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument("--quick", action="store_true", help="a small smoke run (~3 min), not for numbers")
    parser.add_argument("--recognition", type=vector_search._sizes, default=[10_000], metavar="SIZES",
                        help="bench.recognition at these catalog sizes (10000, ~10 min; 100000 adds ~30 min)")
    parser.add_argument("--no-recognition", action="store_true", help="skip bench.recognition")
    parser.add_argument("--real-vectors", type=int, default=100_000, metavar="N",
                        help="bench.real_vectors: Elasticsearch recall curve on N real-distribution vectors (100000)")
    parser.add_argument("--real-vectors-real", type=int, default=10_000, help="of which real embeddings (10000)")
    parser.add_argument("--recognition-real", type=int, default=500, help="real photos in bench.recognition (500)")
    parser.add_argument("--vectors-1m", action="store_true",
                        help="add bench.vectors_1m: Elasticsearch at 1M vectors, int8_hnsw and bbq_hnsw (~1 h)")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK)
        if args.recognition:
            vars(args).update(QUICK_RECOGNITION)
    if args.no_recognition:
        args.recognition = []
    if args.no_es:
        args.es_sizes, args.real_vectors, args.vectors_1m = [], 0, False
    return args


def run_all(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    payloads: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}

    def timed_run(name: str, function) -> None:
        log(f"=== {name}")
        started = time.perf_counter()
        payloads[name] = function()
        seconds[name] = time.perf_counter() - started
        payloads[name]["runtime_s"] = seconds[name]
        print_tables(payloads[name]["tables"])

    catalog_holder: dict[str, Any] = {}

    def bulk() -> dict[str, Any]:
        payload, catalog_holder["catalog"] = bulk_indexing.run(images=args.images, keep_site=True)
        return payload

    timed_run("bulk_indexing", bulk)
    try:
        timed_run("e2e_search", lambda: e2e_search.run(images=args.images, requests=args.requests, warmup=5,
                                                       with_es=not args.no_es, catalog=catalog_holder["catalog"]))
    finally:
        catalog_holder["catalog"].site.remove()
    timed_run("seed_baseline", lambda: seed_baseline.run(images=args.seed_images))
    timed_run("vector_search", lambda: vector_search.run(sizes=args.sizes, es_sizes=args.es_sizes,
                                                         queries=args.queries, variants_at=args.es_sizes[-1:]))
    if args.real_vectors:
        timed_run("real_vectors", lambda: real_vectors.run(size=args.real_vectors, real=args.real_vectors_real,
                                                           queries=args.queries))
    if args.vectors_1m:
        size = 20_000 if args.quick else 1_000_000
        timed_run("vectors_1m", lambda: vectors_1m.run(size=size, real=min(size, args.real_vectors_real),
                                                       queries=args.queries, quantizations=vectors_1m.QUANTIZATIONS))
    for size in args.recognition:
        timed_run(f"recognition_{size}", lambda size=size: recognition.run(
            images=size, real=min(args.recognition_real, size), requests=args.requests, warmup=5,
            mirrored=5, per_product=4, words="catalog", noise_cos="auto", with_embedded=True,
            with_es=not args.no_es))  # fmt: skip
    return payloads


def summary_table(p: dict[str, dict[str, Any]]) -> str:
    rows = []
    e2e = p["e2e_search"]
    bare = e2e["bare_model"]["embed_one_224_ms"]
    for label, r in e2e["backends"].items():
        rows.append([f"1. e2e search, {label}, {e2e['config']['images']:,} photos",
                     f"HTTP p50 {fmt(r['http_ms']['p50'])} / p95 {fmt(r['http_ms']['p95'])} ms vs bare model "
                     f"{fmt(bare)} ms", f"{times(r['http_ms']['p50'] / bare)} (p50)"])  # fmt: skip
    bulk = p["bulk_indexing"]["summary"]
    rows.append([f"2. bulk indexing, {bulk['images']:,} photos",
                 f"reindex {fmt(bulk['reindex_per_s'])} img/s vs bare batched model {fmt(bulk['model_per_s'])} img/s",
                 times(bulk["ratio_reindex_to_model"])])  # fmt: skip
    seed = p["seed_baseline"]
    seed_rate, rates = _seed_rates(seed)
    for key, rate in rates.items():
        rows.append([f"3. ours ({key}) vs seed pipeline, {seed['config']['images']} photos",
                     f"{fmt(rate)} img/s vs seed {fmt(seed_rate)} img/s", times(rate / seed_rate)])  # fmt: skip
    for backend, sizes in p["vector_search"]["results"].items():
        for size, r in sizes.items() if backend != "numpy_floor" else ():
            rows.append([f"4. vector search, {backend}, {int(size):,} vectors",
                         f"p50 {fmt(r['perturbed']['latency_ms']['p50'])} ms, recall@10 "
                         f"{r['random']['recall_at_10']:.3f} random / {r['perturbed']['recall_at_10']:.3f} perturbed",
                         "-"])  # fmt: skip
    for name, r in p.items():
        if not name.startswith("recognition_"):
            continue
        c, costs = r["config"], r["indexing"]
        rows.append([f"5. local features per photo ({c['real']} real photos)",
                     f"{fmt(costs['wall_ms_per_photo'])} ms wall (SIFT p50 "
                     f"{fmt(costs['steps_ms']['SIFT (detect + describe + RootSIFT)']['p50'])} ms) vs global vector "
                     f"{fmt(costs['global_vector_ms_per_photo'])} ms",
                     times(costs["wall_ms_per_photo"] / costs["global_vector_ms_per_photo"])])  # fmt: skip
        for label, b in r["backends"].items():
            t = b["timed"]
            rows.append([f"5. e2e search, recognition on, {label}, {c['indexed']:,} photos ({c['real']} real)",
                         f"HTTP p50 {fmt(t['http_ms']['p50'])} / p95 {fmt(t['http_ms']['p95'])} ms, recall@1 "
                         f"{t['recall_at_1']:.3f}, exact@1 {t['exact_at_1']:.3f}", "-"])  # fmt: skip
    return table("Summary", ["benchmark", "result", "ratio"], rows)


def _seed_rates(seed: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """Photos per second of the seed's pipeline, and of ours per extractor, on the same photos."""
    return (seed["config"]["images"] / seed["seed"]["seconds"],
            {key: r["embeddings"] / r["seconds"] for key, r in seed["ours"].items()})


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def targets_table(p: dict[str, dict[str, Any]]) -> str:
    """Issue 8's table of targets, every figure from this run (a benchmark left out leaves its rows out)."""
    rows: list[list[Any]] = []
    if "e2e_search" in p:
        e2e = p["e2e_search"]
        bare = e2e["bare_model"]["embed_one_224_ms"]
        for label, r in e2e["backends"].items():
            p50 = r["http_ms"]["p50"]
            rows.append([f"POST /api/search/ p50, global only, {label}, {e2e['config']['images']:,} photos",
                         f"{fmt(p50)} ms = bare model {fmt(bare)} + {fmt(p50 - bare)} ms ({times(p50 / bare)})",
                         "≤ bare model + 10 ms", _verdict(p50 <= bare + 10)])  # fmt: skip
    for name, r in p.items():
        if name.startswith("recognition_"):
            for label, b in r["backends"].items():
                p50 = b["timed"]["http_ms"]["p50"]
                target = 120 if r["config"]["indexed"] <= 10_000 else 200
                rows.append([f"same, recognition on, {label}, {r['config']['indexed']:,} photos",
                             f"{fmt(p50)} ms (recall@1 {b['timed']['recall_at_1']:.3f})", f"≤ {target} ms",
                             _verdict(p50 <= target)])  # fmt: skip
    if "bulk_indexing" in p:
        bulk = p["bulk_indexing"]["summary"]
        rows.append([f"bulk reindex of fresh 1 MP photos ({bulk['images']:,})",
                     f"{fmt(bulk['reindex_per_s'])} vs bare batched {fmt(bulk['model_per_s'])} img/s = "
                     f"{times(bulk['ratio_reindex_to_model'])}", "≥ 0.85×",
                     _verdict(bulk["ratio_reindex_to_model"] >= 0.85)])  # fmt: skip
    if "seed_baseline" in p:
        seed_rate, rates = _seed_rates(p["seed_baseline"])
        for key, goal in (("efficientnet_lite0", 25), ("vgg16", 2.5)):
            if key in rates:
                ratio = rates[key] / seed_rate
                rows.append([f"the seed's pipeline, same photos ({key})", times(ratio), f"≥ {goal}×",
                             _verdict(ratio >= goal)])
    if "real_vectors" in p:
        rows.extend(_real_vector_rows(p["real_vectors"]))
    if "vectors_1m" in p:
        rows.extend(_million_rows(p["vectors_1m"]))
    vectors = p.get("vector_search", {}).get("results", {}).get("embedded", {})
    if vectors:
        size = max(vectors, key=int)
        r = vectors[size]
        search_p50, upsert = r["perturbed"]["latency_ms"]["p50"], r["upsert_one_ms"]
        rows.append([f"embedded index at {int(size):,}: search p50 / one upsert",
                     f"{fmt(search_p50)} / {fmt(upsert, 2)} ms", "≤ 10 / ≤ 5 ms",
                     f"search {_verdict(search_p50 <= 10)}, upsert {_verdict(upsert <= 5)}"])  # fmt: skip
    for label, r in p.get("e2e_search", {}).get("backends", {}).items():
        memory = r.get("server_memory") or {}
        if memory.get("peak_rss_mb"):
            rows.append([f"search server RSS, default model loaded ({label})",
                         f"{fmt(memory['rss_mb'], 0)} MB (peak {fmt(memory['peak_rss_mb'], 0)})", "≤ 500 MB a worker",
                         _verdict(memory["peak_rss_mb"] <= 500)])  # fmt: skip
    return table("Targets (issue 8), all measured in this run", ["measure", "this run", "target", "status"], rows)


def _real_vector_rows(r: dict[str, Any]) -> list[list[Any]]:
    """The configured default's point on the recall curve, and the fastest point that meets both targets."""
    size, curve = r["config"]["size"], r["curve"]

    def row(point: dict[str, Any], what: str) -> list[Any]:
        s = point["shopper"]
        return [f"Elasticsearch kNN, {size:,} real-distribution vectors, {what} (window {point['knn_window']}, "
                f"num_candidates {point['num_candidates']:,})",
                f"recall@10 {s['recall_at_10']:.3f}, p50 {fmt(s['latency_ms']['p50'])} ms",
                "recall@10 ≥ 0.98, p50 ≤ 10 ms", _verdict(s["recall_at_10"] >= 0.98 and s["latency_ms"]["p50"] <= 10)]

    default = vector_search.DEFAULT_ES
    rows = [row(q, "default") for q in curve
            if (q["knn_window"], q["num_candidates"]) == (default["knn_window"], default["num_candidates"])]
    meeting = [q for q in curve if q["shopper"]["recall_at_10"] >= 0.98]
    if meeting:
        rows.append(row(min(meeting, key=lambda q: q["shopper"]["latency_ms"]["p50"]), "fastest with recall ≥ 0.98"))
    return rows


def _million_rows(r: dict[str, Any]) -> list[list[Any]]:
    """Per quantisation: the default num_candidates' point at 1M vectors, with the memory its hot files need."""
    rows = []
    for quantization, state, q in vectors_1m.states(r["rows"]):
        point = next(c for c in q["curve"] if c["num_candidates"] == vector_search.DEFAULT_ES["num_candidates"])
        s, memory = point["shopper"], q["memory"]
        rows.append([f"Elasticsearch kNN, {r['config']['size']:,} vectors, {quantization}, {state} (num_candidates "
                     f"{point['num_candidates']:,})",
                     f"recall@10 {s['recall_at_10']:.3f}, p50 {fmt(s['latency_ms']['p50'])} ms; hot vector files "
                     f"{fmt(memory['graph_mb'] + memory['quantized_mb'], 0)} MB, store {fmt(memory['store_mb'], 0)} MB",
                     "reported (no target)", "-"])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    load = {"wait": None if args.no_wait else wait_for_quiet(max_load=1.5, poll_s=30, timeout_s=600)}
    load["start"] = load_average()
    started = time.perf_counter()
    payloads = run_all(args)
    total_s = time.perf_counter() - started
    load["end"] = load_average()
    for name, payload in payloads.items():
        payload["load_average"] = load
        log(f"written {write_json(name, payload)}")
    text = summary_table(payloads) + "\n\n" + targets_table(payloads)
    print(text)
    print(f"\nTotal runtime {total_s / 60:.1f} min ({total_s:.0f} s); load average {load}")
    write_json("summary", {"machine": machine_info(elasticsearch_url()), "load_average": load,
                           "total_runtime_s": total_s,
                           "runtime_s": {k: v["runtime_s"] for k, v in payloads.items()},
                           "args": vars(args), "table": text})  # fmt: skip


if __name__ == "__main__":
    main()
