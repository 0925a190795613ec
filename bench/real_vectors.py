"""Elasticsearch kNN on vectors with the distribution of real photo embeddings: recall@10 against exact search as a
function of ``num_candidates`` (the curve to pick it from), with latency.

Random 1280-d unit vectors (``bench.vector_search``) are the worst case for HNSW: every point is about equally far
from every other. Real embeddings are not like that (non-negative pooled activations, a few dominant directions,
tight clusters of one product's photos), so the recall a setting gives on random vectors says little about a shop.

Vectors: the default CNN on R augmentations of the dev-set photos (random 70–100 % crops, mirroring, brightness and
contrast jitter; round robin over every source photo), then N − R more from a clustered model fitted to them: a
real vector plus the difference between two real augmentations of another source photo (the spread real photos of
one object show), renormalised. Queries: fresh augmentations of random source photos ("shopper" photos of products
in the catalog), the same among two other products ("cluttered", see ``cluttered``) and random unit vectors (the
worst case). Truth: exact top 10 by dot product in numpy.

    .venv/bin/python -m bench.real_vectors [--size 100000] [--real 10000] [--queries 200]
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from . import dataset
from .common import elasticsearch_url, elasticsearch_version, log, machine_info, print_tables, table, write_json
from .es import delete_indexes, unique_prefix
from .vector_search import DEFAULT_ES, DIM, K, Workload, _django, es_search, exact_top_k, load_elasticsearch, measure

NAME = "real_vectors"
INPUT = (224, 224)
CANDIDATES = [300, 500, 1000, 2000, 3000, 5000, 10_000]  # with the default window of 300 (num_candidates ≥ window)
SMALL_WINDOW = [(100, 100), (100, 300), (100, 1000)]  # (window, num_candidates): k=100 covers 30 products


def augmented(source: Image.Image, rng: np.random.Generator) -> Image.Image:
    """As ``dataset.augment`` (crop, mirror, jitter) but straight to the CNN's input size: same distribution of
    content, none of the cost of a 1 MP intermediate."""
    out = source.crop(dataset._random_crop_box(source.size, rng))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.85, 1.15)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.85, 1.15)))
    return out.resize(INPUT, Image.Resampling.BICUBIC)


def real_embeddings(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, source index) of ``count`` augmentations, round robin over the source photos; cached on disk."""
    path = dataset.cache_root() / f"real-vectors-v1-{count}-seed{seed}.npz"
    if path.exists():
        cached = np.load(path)
        return cached["vectors"], cached["sources"]
    from visualsearch.extractors.efficientnet_lite0 import EfficientNetLite0Extractor

    sources = [Image.open(p).convert("RGB") for p in dataset.source_paths()]
    extractor = EfficientNetLite0Extractor(batch_size=64)
    owners = np.arange(count) % len(sources)
    make = lambda i: augmented(sources[owners[i]], np.random.default_rng([seed, i]))  # noqa: E731
    parts = []
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, count, 1024):
            parts.append(extractor.embed(list(pool.map(make, range(start, min(count, start + 1024))))))
            log(f"real_vectors: embedded {min(count, start + 1024):,} / {count:,}")
    vectors = np.concatenate(parts).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, vectors=vectors, sources=owners)
    return vectors, owners


def clustered(real: np.ndarray, owners: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` vectors: a real vector + the difference of two real augmentations of one other source photo."""
    by_source: dict[int, list[int]] = {}
    for row, owner in enumerate(owners.tolist()):
        by_source.setdefault(owner, []).append(row)
    groups = [np.array(rows) for rows in by_source.values() if len(rows) >= 2]
    if not groups:
        raise SystemExit(f"bench.real_vectors: the clustered model needs two real embeddings of a source photo: "
                         f"--real must be at least twice the {len(by_source):,} source photos")
    base = rng.integers(0, len(real), count)
    chosen = [groups[g] for g in rng.integers(0, len(groups), count)]
    pairs = np.array([rng.choice(rows, 2, replace=False) for rows in chosen])
    out = np.empty((count, real.shape[1]), np.float32)
    for start in range(0, count, 65_536):  # in slices: at 1M vectors the whole sum would take three 5 GB temporaries
        part = slice(start, start + 65_536)
        rows = real[base[part]] + real[pairs[part, 0]] - real[pairs[part, 1]]
        out[part] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return out


def cluttered(shopper: np.ndarray, real: np.ndarray, rng: np.random.Generator, others: int = 2) -> np.ndarray:
    """A shelf or table photo: the product among ``others`` other products. A max-pooled CNN vector of a scene
    is roughly the union of its objects' activations, so: the shopper vector plus other real photos' vectors,
    renormalised. Their nearest cosine is ~0.8 (shopper photos: ~0.9): between a clean photo and the worst case,
    though real shelf photos can score lower still (0.4–0.6 against their product)."""
    rows = shopper + real[rng.integers(0, len(real), (len(shopper), others))].sum(axis=1)
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def workload(size: int, real: int, queries: int) -> tuple[Workload, dict[str, Any]]:
    started = time.perf_counter()
    vectors, owners = real_embeddings(real, seed=0)
    rng = np.random.default_rng(0)
    if size > real:
        vectors = np.concatenate([vectors, clustered(vectors, owners, size - real, rng)])
    shopper, _ = real_embeddings(queries, seed=1)  # other crops of the first sources: products in the catalog
    random = rng.standard_normal((queries, DIM)).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    kinds = {"random": random, "shopper": shopper, "cluttered": cluttered(shopper, vectors[:real], rng)}
    truth = {kind: exact_top_k(vectors, q) for kind, q in kinds.items()}

    def cosine_p50(kind: str, rank: int) -> float:  # of the rank-th nearest vector (ids are rows + 1, best first)
        return float(np.median(np.einsum("ij,ij->i", kinds[kind], vectors[truth[kind][:, rank] - 1])))

    stats = {"seconds": time.perf_counter() - started, "real": real, "synthetic": max(0, size - real),
             "shopper_cos_top1_p50": cosine_p50("shopper", 0),
             "shopper_cos_top10_p50": cosine_p50("shopper", K - 1),
             "cluttered_cos_top1_p50": cosine_p50("cluttered", 0),
             "mean_vector_norm": float(np.linalg.norm(vectors.mean(axis=0)))}  # fmt: skip
    return Workload(vectors, kinds, truth, np.zeros(0, np.int64)), stats


def curve(work: Workload, es_url: str, alias: str) -> list[dict[str, Any]]:
    settings = [(DEFAULT_ES["knn_window"], c) for c in CANDIDATES] + SMALL_WINDOW
    out = []
    for window, candidates in settings:
        result = measure(es_search({"knn_window": window, "num_candidates": candidates}, es_url, alias), work)
        out.append({"knn_window": window, "num_candidates": candidates, **result})
        s = result["shopper"]
        log(f"real_vectors: window {window}, num_candidates {candidates}: shopper R@10 {s['recall_at_10']:.3f}, "
            f"p50 {s['latency_ms']['p50']:.1f} ms")
    return out


def es_workload(name: str, size: int, real: int, queries: int) -> tuple[str, Workload, dict[str, Any]]:
    """What a benchmark of Elasticsearch on these vectors starts from: its URL (checked), the vectors and truth."""
    _django()
    es_url = elasticsearch_url()
    if not elasticsearch_version(es_url):
        raise SystemExit(f"bench.{name}: no Elasticsearch at {es_url} (bash scripts/services.sh start)")
    work, stats = workload(size, min(real, size), queries)
    log(f"{name}: {size:,} vectors ({stats['real']:,} real) and exact truth in {stats['seconds']:.0f} s")
    return es_url, work, stats


def run(*, size: int, real: int, queries: int) -> dict[str, Any]:
    es_url, work, stats = es_workload(NAME, size, real, queries)
    alias = unique_prefix("realvectors")
    try:
        loaded = load_elasticsearch(work, es_url, alias)
        loaded.pop("index").close()
        points = curve(work, es_url, alias)
    finally:
        delete_indexes(es_url, alias)
    return {"benchmark": NAME, "machine": machine_info(es_url),
            "config": {"size": size, "real": real, "queries": queries, "k": K, "candidates": CANDIDATES,
                       "small_window": SMALL_WINDOW},
            "workload": stats, "load": loaded, "curve": points, "tables": tables(size, stats, loaded, points)}


def tables(size: int, stats: dict[str, Any], loaded: dict[str, Any], points: list[dict[str, Any]]) -> list[str]:
    rows = [[p["knn_window"], f"{p['num_candidates']:,}", f"{p['shopper']['recall_at_10']:.3f}",
             p["shopper"]["latency_ms"]["p50"], p["shopper"]["latency_ms"]["p95"],
             f"{p['cluttered']['recall_at_10']:.3f}", p["cluttered"]["latency_ms"]["p50"],
             f"{p['random']['recall_at_10']:.3f}", p["random"]["latency_ms"]["p50"]] for p in points]  # fmt: skip
    return [table(f"Elasticsearch kNN on {size:,} real-distribution vectors ({stats['real']:,} real embeddings), "
                  f"rescore ×2, k={K}; loaded in {loaded['load_s']:.0f} s. Shopper queries: nearest cosine p50 "
                  f"{stats['shopper_cos_top1_p50']:.3f}, 10th {stats['shopper_cos_top10_p50']:.3f}; cluttered: "
                  f"nearest {stats['cluttered_cos_top1_p50']:.3f}",
                  ["window", "num_candidates", "shopper R@10", "shopper p50 ms", "shopper p95 ms", "cluttered R@10",
                   "cluttered p50 ms", "random R@10", "random p50 ms"], rows)]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.real_vectors", description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000, help="vectors indexed (default 100000)")
    parser.add_argument("--real", type=int, default=10_000, help="of which real embeddings (default 10000)")
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind (default 200)")
    args = parser.parse_args(argv)
    payload = run(size=args.size, real=args.real, queries=args.queries)
    print_tables(payload["tables"])
    print(f"\nwritten {write_json(NAME, payload)}")


if __name__ == "__main__":
    main()
