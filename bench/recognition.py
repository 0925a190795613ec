"""Recognition on: local-feature indexing cost per photo, and end-to-end search latency at 10k / 100k photos.

1. **Indexing cost.** R real ~1 MP photos (bench/dataset.py) go through the production path on a throw-away site:
   `recognition.train_vocabulary` (not activated), then `reindex`, with every call of the local-feature steps
   timed while photos are analysed for storage (decode, greyscale + resize, SIFT, words, signatures, pack) and
   the stored record sizes read back. The global CNN vector's cost per photo comes from the same reindex.
2. **End to end.** The catalog is grown to N photos with synthetic ones derived from the R real ones (computing
   SIFT for 100k photos would take hours here): each synthetic photo gets a real photo's stored vector plus
   noise (renormalised) and its stored local features with every visual word moved to another word of similar
   frequency, so it is a plausible distractor that matches no query. `reindex` then builds the index from the
   database with no model work (checked), a server runs (gunicorn with the project's config, one worker;
   ``BENCH_SERVER=runserver``: `runserver --noreload`), and query photos — new
   augmentations of the real photos, in the same orientation as the catalog photo — are POSTed to
   /api/search/ one at a time. Reported: HTTP p50/p95, the server's stage timings, recall@1 of the right
   product, the share recognised as "exact", the server's RSS. Embedded index, then Elasticsearch.

    .venv/bin/python -m bench.recognition --images 10000 --real 500 --requests 40 [--no-es]
    .venv/bin/python -m bench.recognition --images 100000 --real 500 --requests 40 [--no-es]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import dataset
from .common import (elasticsearch_url, elasticsearch_version, fmt, latency_summary_ms, log, machine_info,
                     percentile, print_tables, table, write_json)  # fmt: skip
from .dataset import Photo
from .e2e_search import post_search
from .es import client as es_client
from .es import delete_indexes, unique_prefix, wait_for_merges
from .site import SERVERS, Site, server_kind

NAME = "recognition"
QUERY_SEED = 1  # as e2e_search: queries are other augmentations of the catalog photos' sources
STAGES = ("decode", "embed", "local_features", "candidates_global", "candidates_words", "verify", "search",
          "assemble")  # fmt: skip
STEPS = ("decode", "greyscale + resize", "SIFT (detect + describe + RootSIFT)", "assign words", "signatures", "pack")
TARGET_P50_MS = {10_000: 120.0, 100_000: 200.0}  # issue 7
TARGET_INDEXING_MS, TARGET_STORAGE_BYTES = 100.0, 32 * 1024
COLD_TIMEOUT_S = 3600  # the first search loads the whole index (embedded) and the model


# --- photos and queries ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    data: bytes
    target: int  # position of the matching real photo in the catalog (manifest order)
    product: str  # relation_id of the right product
    mirrored: bool  # the query is the catalog photo's mirror image (SIFT is not mirror-invariant)


def real_photos(count: int) -> tuple[list[int], list[Photo]]:
    """``count`` generated photos spread over all source photos (both datasets), with their dataset indexes."""
    sources = len(dataset.source_paths())
    if count > sources:  # two real photos of one source photo would be two products answering the same query
        raise SystemExit(f"bench.recognition: --real must be at most {sources} (the number of source photos)")
    indexes = [k * sources // count for k in range(count)]
    photos = dataset.photos(indexes[-1] + 1)
    return indexes, [photos[i] for i in indexes]


def _flipped(index: int, seed: int) -> bool:
    """Whether dataset photo ``index`` of set ``seed`` was mirrored: replays the random draws of dataset.augment
    (crop box: three uniforms whatever the size, then the flip). Checked against a regenerated file in
    :func:`_check_replay`."""
    rng = np.random.default_rng([seed, index])
    dataset._random_crop_box((1000, 750), rng)
    return bool(rng.random() < 0.5)


def _check_replay(index: int, seed: int, photo: Photo) -> None:
    """dataset.augment still draws in the order _flipped assumes: regenerate one photo and compare its hash."""
    source = dataset.source_paths()[index % len(dataset.source_paths())]
    image = dataset.augment(dataset._open(source), np.random.default_rng([seed, index]))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=dataset.QUALITY)
    if hashlib.sha256(buffer.getvalue()).hexdigest() != photo.sha256:
        raise SystemExit("bench.recognition: dataset.augment changed; update _flipped to its new recipe")


def make_queries(indexes: list[int], per_product: int, same: int, mirrored: int) -> tuple[list[Query], list[Query]]:
    """``same`` queries in the catalog photo's orientation (the normal case) and ``mirrored`` ones, spread over
    the real photos. Each is the dataset photo of set QUERY_SEED at the real photo's index: the same source
    photo, another random crop and colour jitter."""
    kinds: dict[bool, list[int]] = {False: [], True: []}
    for k, index in enumerate(indexes):
        kinds[_flipped(index, 0) != _flipped(index, QUERY_SEED)].append(k)
    chosen = {}
    for is_mirrored, wanted in ((False, same), (True, mirrored)):
        pool = kinds[is_mirrored]
        if wanted > len(pool):
            raise SystemExit(f"bench.recognition: {wanted} {'mirrored' if is_mirrored else 'same-orientation'} "
                             f"queries asked, only {len(pool)} real photos can give one: raise --real")  # fmt: skip
        chosen[is_mirrored] = [pool[i * len(pool) // wanted] for i in range(wanted)] if wanted else []
    needed = max([indexes[k] for ks in chosen.values() for k in ks], default=0)
    photos = dataset.photos(needed + 1, seed=QUERY_SEED)
    if chosen[False]:
        k = chosen[False][0]
        _check_replay(indexes[k], QUERY_SEED, photos[indexes[k]])
    out = {m: [Query(Path(photos[indexes[k]].path).read_bytes(), k, f"bench-{k // per_product:06d}", m)
               for k in ks] for m, ks in chosen.items()}  # fmt: skip
    return out[False], out[True]


def source_groups(indexes: list[int], photos: list[Photo]) -> dict[str, str]:
    """sha256 → product group of the photo's source (groups.csv of its dataset; else the source file itself)."""
    groups: dict[str, str] = {}
    for directory in dataset.SOURCE_DIRS:
        listing = directory.parent / "groups.csv"
        if listing.exists():
            with listing.open(newline="") as f:
                for row in csv.DictReader(f):
                    groups[str((directory.parent / row["path"]).resolve())] = f"{directory.parent.name}/{row['group']}"
    sources = dataset.source_paths()
    out = {}
    for index, photo in zip(indexes, photos):
        source = str(sources[index % len(sources)].resolve())
        out[photo.sha256] = groups.get(source, source)
    return out


# --- the requests ---------------------------------------------------------------------------------------------------


def _record(query: Query, seconds: float, status: int, payload: dict[str, Any]) -> dict[str, Any]:
    results = payload.get("results", []) if status == 200 else []
    ids = [r["relation_id"] for r in results]
    top = results[0] if results else {}
    return {
        "seconds": seconds,
        "status": status,
        "timings_ms": payload.get("timings_ms", {}) if status == 200 else {},
        "error": None if status == 200 else payload,
        "target": query.target,
        "mirrored": query.mirrored,
        "results": len(results),
        "right_rank": ids.index(query.product) + 1 if query.product in ids else None,
        "top_match": top.get("match"),
        "top_inliers": top.get("inliers"),
        "top_score": top.get("score"),
        "exact_labels": sum(r["match"] == "exact" for r in results),
        "exact_right": sum(r["match"] == "exact" and r["relation_id"] == query.product for r in results),
        "synthetic_results": sum(i.startswith("synthetic-") for i in ids),
    }


def measure(site: Site, label: str, env: dict[str, str], queries: list[Query], warmup: int,
            mirrored: list[Query]) -> dict[str, Any]:
    """Start a server, send the warm-up queries (under runserver the first loads the index), then the timed ones,
    one at a time."""
    log(f"recognition: {label}: starting {server_kind()}")
    with site.serve(env, label) as server:
        base, memory_start = server.base, server.memory_mb()
        first = None
        for i, query in enumerate(queries[:warmup]):
            seconds, status, payload = post_search(base, query.data, timeout=COLD_TIMEOUT_S if i == 0 else 300)
            if i == 0:
                first = _record(query, seconds, status, payload)
                log(f"recognition: {label}: first search {seconds:.1f} s")
        timed = [_record(q, *post_search(base, q.data, timeout=300)) for q in queries[warmup:]]
        flipped = [_record(q, *post_search(base, q.data, timeout=300)) for q in mirrored]
        memory = server.memory_mb()
    result = {"first_request": first, "memory_at_start": memory_start, "memory": memory,
              "timed": summarise(timed), "mirrored": summarise(flipped) if flipped else None,
              "requests": timed, "mirrored_requests": flipped}  # fmt: skip
    t = result["timed"]
    log(f"recognition: {label}: HTTP p50 {fmt(t['http_ms']['p50'])} ms, p95 {fmt(t['http_ms']['p95'])} ms, "
        f"recall@1 {fmt(t['recall_at_1'], 3)}, exact@1 {fmt(t['exact_at_1'], 3)}, RSS {fmt(memory['rss_mb'], 0)} MB")
    return result


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in records if r["status"] == 200]
    stages = list(STAGES) + sorted({k for r in ok for k in r["timings_ms"]} - set(STAGES) - {"total"})
    n = len(ok) or 1
    labelled = sum(r["exact_labels"] for r in ok)
    return {
        "n": len(records),
        "http_ms": latency_summary_ms([r["seconds"] for r in ok]),
        "server_total_ms": {"p50": percentile([r["timings_ms"]["total"] for r in ok], 50),
                            "p95": percentile([r["timings_ms"]["total"] for r in ok], 95)},
        "stage_p50_ms": {s: percentile([r["timings_ms"].get(s, 0.0) for r in ok], 50) for s in stages},
        "stage_mean_ms": {s: statistics.fmean(r["timings_ms"].get(s, 0.0) for r in ok) if ok else float("nan")
                          for s in stages},
        # queries not settled by the fast first pass (analysed again at the full query size)
        "full_size_share": sum("local_features_full" in r["timings_ms"] for r in ok) / n,
        "outside_service_p50_ms": percentile([r["seconds"] * 1000 - r["timings_ms"]["total"] for r in ok], 50),
        "recall_at_1": sum(r["right_rank"] == 1 for r in ok) / n,
        "recall_at_results": sum(r["right_rank"] is not None for r in ok) / n,
        "exact_at_1": sum(r["right_rank"] == 1 and r["top_match"] == "exact" for r in ok) / n,
        "exact_labels": labelled,
        "exact_precision": sum(r["exact_right"] for r in ok) / labelled if labelled else None,
        "results_mean": statistics.fmean(r["results"] for r in ok) if ok else 0.0,
        "synthetic_share_of_results": (sum(r["synthetic_results"] for r in ok) / max(1, sum(r["results"] for r in ok))),
        "errors": [r["error"] for r in records if r["status"] != 200],
    }  # fmt: skip


# --- the run --------------------------------------------------------------------------------------------------------


def _no_model_work(reindex: dict[str, Any]) -> bool:
    """True when a reindex embedded nothing, analysed no photo and trained no vocabulary (only loaded rows)."""
    model_phases = [p for p in reindex["phase_calls"] if not p.startswith("index rebuild")]
    return not model_phases


def per_photo_costs(reindex: dict[str, Any]) -> dict[str, Any]:
    """Per-photo ms of each local-feature step (one call per photo), their per-photo sum, and the amortised rest
    of store_features (DB rows, bookkeeping); the global vector's cost per photo from the same reindex."""
    samples = {k: np.asarray(v) * 1000 for k, v in (reindex.get("per_photo_s") or {}).items()}
    steps = {s: samples[s] for s in STEPS if s in samples}
    counts = {s: len(v) for s, v in steps.items()}
    photos = max(counts.values(), default=0)
    if not photos:
        raise RuntimeError("bench.recognition: the reindex of the real photos analysed none (per-photo timings empty)")
    if len(set(counts.values())) == 1 and len(steps) == len(STEPS):
        total = np.sum(list(steps.values()), axis=0)
    else:  # a photo failed part-way (its error is in the reindex summary): no per-photo sums, only the means
        log(f"recognition: WARNING: per-photo step counts differ {counts}; the total is a sum of means")
        total = np.array([sum(float(np.mean(v)) for v in steps.values())])
    # Photos are analysed ANALYSIS_WORKERS at a time, so the steps' per-call times overlap: what a photo costs
    # the reindex is the wall time of the store_features batches per photo, not the sum of its steps.
    batches = samples.get("store_features batch", np.zeros(0))
    wall = float(batches.sum()) / photos
    describe = lambda v: {"p50": float(np.median(v)), "p95": float(np.percentile(v, 95)),  # noqa: E731
                          "mean": float(np.mean(v))}
    phases, calls = reindex["phases_s"], reindex["phase_calls"]
    embedded = reindex["embeddings"] or 1
    global_ms = 1000 * (phases.get("decode (read + decode file)", 0) + phases.get("embed (resize + CNN)", 0)) / embedded
    return {
        "photos": photos,
        "calls_per_step": counts,
        "steps_ms": {s: describe(v) for s, v in steps.items()},
        "total_ms": describe(total),
        "workers": reindex.get("analysis_workers"),
        "wall_ms_per_photo": wall,
        "global_vector_ms_per_photo": global_ms,
        "global_vector_calls": {k: calls.get(k) for k in ("decode (read + decode file)", "embed (resize + CNN)")},
    }


def run(*, images: int, real: int, requests: int, warmup: int, mirrored: int, per_product: int, words: str,
        noise_cos: str, with_embedded: bool, with_es: bool, keep_site: bool = False) -> dict[str, Any]:
    if real > images:
        raise SystemExit("bench.recognition: --real must not exceed --images")
    started = time.perf_counter()
    indexes, photos = real_photos(real)
    same, flipped = make_queries(indexes, per_product, warmup + requests, mirrored)
    log(f"recognition: {real} real photos and {len(same) + len(flipped)} queries ready "
        f"({time.perf_counter() - started:.0f} s, cached in {dataset.cache_root()})")
    site = Site.create("recognition")
    site.base_env["VISUALSEARCH_RECOGNITION"] = "on"  # whatever the caller's shell says
    setup: dict[str, Any] = {}
    backends: dict[str, Any] = {}
    es_url = elasticsearch_url()
    es_version = elasticsearch_version(es_url) if with_es else None
    try:
        manifest = site.root / "manifest.json"
        manifest.write_text(json.dumps([p.__dict__ for p in photos]))
        groups = site.root / "groups.json"
        groups.write_text(json.dumps(source_groups(indexes, photos)))
        setup["populate_real"] = site.job("populate", "--manifest", str(manifest), "--per-product", str(per_product))
        log(f"recognition: training a vocabulary on {real} real photos (words: {words})")
        setup["vocabulary"] = site.job("train-vocabulary", "--words", words, "--catalog-size", str(images))
        v = setup["vocabulary"]
        log(f"recognition: vocabulary {v['vocabulary_id']}: {v['words_effective']:,} words from "
            f"{v['descriptors']:,} descriptors, {v['seconds']:.0f} s; reindexing the real photos")
        setup["reindex_real"] = site.job("reindex", "--per-photo")
        log(f"recognition: {setup['reindex_real']['summary']}")
        costs = per_photo_costs(setup["reindex_real"])
        log(f"recognition: synthesizing {images - real:,} photos")
        setup["synthesize"] = site.job("synthesize", "--catalog-size", str(images), "--per-product",
                                       str(per_product), "--noise-cos", noise_cos, "--groups", str(groups))
        s = setup["synthesize"]
        log(f"recognition: {s['photos_total']:,} photos ({s['seconds']:.0f} s); reindex from stored rows")
        setup["reindex_catalog"] = site.job("reindex")
        setup["reindex_catalog"]["no_model_work"] = _no_model_work(setup["reindex_catalog"])
        log(f"recognition: {setup['reindex_catalog']['summary']}")
        if not setup["reindex_catalog"]["no_model_work"]:
            log(f"recognition: WARNING: the catalog reindex did model work: {setup['reindex_catalog']['phase_calls']}")
        if with_embedded:
            backends["embedded"] = measure(site, "embedded", {}, same, warmup, flipped)
        if es_version:
            prefix = unique_prefix("recognition")
            env = {"ELASTICSEARCH_URL": es_url, "ELASTICSEARCH_INDEX_ALIAS": prefix}
            try:
                log("recognition: elasticsearch: reindex from stored rows")
                load = site.job("reindex", ELASTICSEARCH_TIMEOUT="120", **env)
                load["no_model_work"] = _no_model_work(load)
                es = es_client(es_url)
                load["merges_wait_s"] = wait_for_merges(es, f"{prefix}*")  # as in production's steady state
                es.close()
                log(f"recognition: {load['summary']} (+ {load['merges_wait_s']:.0f} s waiting for merges)")
                backends["elasticsearch"] = measure(site, "elasticsearch", env, same, warmup, flipped)
                backends["elasticsearch"]["reindex"] = load
            finally:
                deleted = delete_indexes(es_url, prefix)
                log(f"recognition: deleted {len(deleted)} Elasticsearch indexes {prefix}*")
        elif with_es:
            log(f"recognition: no Elasticsearch at {es_url}: skipped")
    finally:
        if keep_site:
            log(f"recognition: site kept in {site.root}")
        else:
            site.remove()
    indexed = setup["reindex_catalog"]["indexed"]
    config = {"images": images, "indexed": indexed, "real": real, "synthetic": images - real, "requests": requests,
              "warmup": warmup, "mirrored": mirrored, "per_product": per_product, "words": words,
              "noise_cos": noise_cos, "limit": 20, "query_seed": QUERY_SEED,
              "server": SERVERS[server_kind()]}  # fmt: skip
    payload = {"benchmark": NAME, "machine": machine_info(es_url if es_version else None), "config": config,
               "indexing": costs, "setup": setup, "backends": backends,
               "runtime_s": time.perf_counter() - started}  # fmt: skip
    payload["tables"] = tables(payload)
    return payload


# --- tables ---------------------------------------------------------------------------------------------------------


def tables(p: dict[str, Any]) -> list[str]:
    c, costs, setup = p["config"], p["indexing"], p["setup"]
    vocab, synth = setup["vocabulary"], setup["synthesize"]
    rows = [[step, d["p50"], d["p95"], d["mean"]] for step, d in costs["steps_ms"].items()]
    rows.append(["one photo's steps, summed", costs["total_ms"]["p50"], costs["total_ms"]["p95"],
                 costs["total_ms"]["mean"]])  # fmt: skip
    rows.append([f"= extra indexing cost per photo: reindex wall time, {costs.get('workers') or 1} photo(s) "
                 f"at a time, DB rows included (target ≤ {TARGET_INDEXING_MS:.0f} ms)", "-", "-",
                 costs["wall_ms_per_photo"]])  # fmt: skip
    rows.append(["global CNN vector, same reindex (decode + resize + CNN, batched)", "-", "-",
                 costs["global_vector_ms_per_photo"]])  # fmt: skip
    indexing = table(f"Local features: indexing cost per photo, ms (reindex of {costs['photos']} real ~1 MP photos, "
                     "one call per photo and step; calls of photos analysed at once overlap)", ["step", "p50", "p95", "mean"], rows)  # fmt: skip
    real = synth["real"]
    whole = lambda d: [f"{d['p50']:,.0f}", f"{d['mean']:,.0f}", f"{d['max']:,}"]  # noqa: E731
    storage = table(f"Storage per photo ({real['with_vector_and_features']} real photos)",
                    ["what", "p50", "mean", "max", "target"], [
        ["packed local features, bytes", *whole(real["record_bytes"]), f"≤ {TARGET_STORAGE_BYTES:,}"],
        ["keypoints", *whole(real["keypoints"]), "-"],
        ["global vector, bytes", *[f"{real['vector_bytes']:,}"] * 3, "-"],
    ])  # fmt: skip
    qa = vocab["query_analysis"]
    once = table("Vocabulary (one-off per catalog) and setup", ["what", "value"], [
        ["vocabulary", f"{vocab['words_effective']:,} words ({vocab['coarse']} × ≤{vocab['fine_per_coarse']}), "
                       f"{vocab['descriptors']:,} descriptors of {vocab['photos']} photos, file "
                       f"{vocab['file_bytes'] / 1e6:.1f} MB"],
        ["vocabulary size rule", f"--words {vocab['mode']}: {vocab['words_requested']:,} asked (production rule "
                                 f"on these {vocab['photos']} photos alone: "
                                 f"{vocab['words_production_rule_on_sample']:,})"],
        ["vocabulary training s (SIFT of the sample / k-means)",
         f"{vocab['seconds']:.1f} ({vocab['analysis_s']:.1f} / {vocab['kmeans_s']:.1f})"],
        ["query photo: uploaded → decoded → analysed (px)",
         f"{'×'.join(map(str, qa['uploaded']))} → {'×'.join(map(str, qa['decoded']))} → "
         f"{'×'.join(map(str, qa.get('analysed_fast', qa['analysed'])))} first, "
         f"{'×'.join(map(str, qa['analysed']))} when that finds no exact match "
         f"(FAST_QUERY_LONG_SIDE {qa.get('fast_long_side_setting')}, QUERY_LONG_SIDE {qa['query_long_side_setting']})"],
        ["synthetic photos / products", f"{synth['synthetic_photos']:,} / {synth['synthetic_products']:,} "
                                        f"({synth['seconds']:.0f} s to build and insert)"],
        ["synthetic vector: cos to its base (target / measured)",
         f"{synth['noise']['target_cos_to_base']:.3f} ({synth['noise']['mode']}) / "
         f"{fmt(synth['noise']['synthetic_cos_to_base_mean'], 3)}; real photos' nearest other product p50 "
         f"{synth['noise']['real_nearest_other_group_cos']['p50']:.3f}"],
        ["synthetic words changed", fmt(synth["words_changed_mean"], 3)],
        ["database size", f"{(synth['database_bytes'] or 0) / 1e6:,.0f} MB"],
        [f"reindex of {c['indexed']:,} photos, embedded (no model work: "
         f"{setup['reindex_catalog']['no_model_work']})", f"{setup['reindex_catalog']['seconds']:.1f} s"],
        ["reindex process peak RSS: the real photos (CNN + SIFT) / the whole catalog from stored rows",
         f"{fmt(setup['reindex_real'].get('peak_rss_mb'), 0)} / {fmt(setup['reindex_catalog'].get('peak_rss_mb'), 0)} MB"],
        *[[f"reindex of {c['indexed']:,} photos, elasticsearch (no model work: {b['reindex']['no_model_work']})",
           f"{b['reindex']['seconds']:.1f} s"] for label, b in p["backends"].items() if "reindex" in b],
        *[[f"first search, {label} (runserver: loads the index, warms the model; gunicorn: done before serving)",
           f"{b['first_request']['seconds']:.1f} s"] for label, b in p["backends"].items()],
        *[[f"server memory after the run, {label}", f"RSS {fmt(b['memory']['rss_mb'], 0)} MB, peak "
           f"{fmt(b['memory']['peak_rss_mb'], 0)} MB (at start {fmt(b['memory_at_start']['rss_mb'], 0)} MB)"]
          for label, b in p["backends"].items()],
    ])  # fmt: skip
    out = [indexing, storage, once]
    if p["backends"]:
        target = TARGET_P50_MS.get(c["indexed"])
        headers = ["backend", "queries", "photos (real)", "HTTP p50", "HTTP p95", "server p50", "decode", "embed",
                   "local feat.", "full-size pass", "cand. global", "cand. words", "verify", "search", "assemble", "outside service",
                   "recall@1", "exact@1", "exact precision", "synthetic in results", "p50 target"]  # fmt: skip
        rows = []
        for label, b in p["backends"].items():
            for kind, r in (("", b["timed"]), (", mirrored", b["mirrored"])):
                if r is None:
                    continue
                st = r["stage_p50_ms"]
                rows.append([f"{label}{kind}", str(r["n"]), f"{c['indexed']:,} ({c['real']:,})", r["http_ms"]["p50"],
                             r["http_ms"]["p95"], r["server_total_ms"]["p50"], *[st.get(s, 0.0) for s in STAGES[:3]],
                             f"{100 * r.get('full_size_share', 0.0):.0f} %", *[st.get(s, 0.0) for s in STAGES[3:]],
                             r["outside_service_p50_ms"], fmt(r["recall_at_1"], 3), fmt(r["exact_at_1"], 3),
                             fmt(r["exact_precision"], 3), f"{100 * r['synthetic_share_of_results']:.0f} %",
                             "-" if target is None or kind else
                             f"≤ {target:.0f}: {'met' if r['http_ms']['p50'] <= target else 'missed'}"])  # fmt: skip
        out.append(table("End-to-end search with recognition on, ms (HTTP = client-measured; stage columns are the "
                         "server's p50s; 'mirrored' queries are the catalog photo's mirror image)", headers, rows))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.recognition", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="photos in the catalog, real + synthetic (10000)")
    parser.add_argument("--real", type=int, default=500, help="real photos (vectors and SIFT computed) (500)")
    parser.add_argument("--requests", type=int, default=40, help="timed requests per backend (40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests first; the first loads the index (5)")
    parser.add_argument("--mirrored", type=int, default=5, help="extra mirrored-query requests, reported apart (5)")
    parser.add_argument("--per-product", type=int, default=4, help="photos per product (4)")
    parser.add_argument("--words", default="catalog", help="vocabulary size: 'catalog' (production's rule for "
                        "--images photos), 'sample' (its rule for the --real photos) or a number (catalog)")
    parser.add_argument("--noise-cos", default="auto", help="cosine of a synthetic vector to its base: a number, "
                        "or 'auto' = median cosine of a real photo to its nearest other product (auto)")
    parser.add_argument("--no-es", action="store_true", help="skip Elasticsearch")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded index")
    parser.add_argument("--keep-site", action="store_true", help="keep the temp site (for inspection)")
    args = parser.parse_args(argv)
    payload = run(images=args.images, real=args.real, requests=args.requests, warmup=args.warmup,
                  mirrored=args.mirrored, per_product=args.per_product, words=args.words, noise_cos=args.noise_cos,
                  with_embedded=not args.no_embedded, with_es=not args.no_es, keep_site=args.keep_site)
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(f'{NAME}_{args.images}', payload)}")


if __name__ == "__main__":
    main()
