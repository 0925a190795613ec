"""Brute-force reference for the backend contract: the obviously-correct (slow) answer."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from visualsearch.backends.base import IndexEntry, SearchFilters, SearchHit


def reference_search(entries, vector, *, limit, offset=0, threshold=None, filters=SearchFilters()) -> list[SearchHit]:
    best: dict[int, SearchHit] = {}
    for entry in filter(lambda e: passes(e, filters), entries):
        score = float(np.dot(entry.vector, vector))
        if threshold is not None and score < threshold:
            continue
        current = best.get(entry.product_id)
        if current is None or (score, -entry.image_id) > (current.score, -current.image_id):
            best[entry.product_id] = SearchHit(entry.product_id, entry.image_id, score)
    ranked = sorted(best.values(), key=lambda h: (-h.score, h.image_id))
    return ranked[offset : offset + limit]


def passes(entry: IndexEntry, filters: SearchFilters) -> bool:
    return ((entry.is_active or not filters.active_only)
            and (filters.category is None or entry.category == filters.category)
            and (filters.min_price is None or (entry.price is not None and entry.price >= filters.min_price))
            and (filters.max_price is None or (entry.price is not None and entry.price <= filters.max_price))
            and (entry.in_stock or not filters.in_stock_only)
            and entry.image_id not in filters.exclude_image_ids)


def priced(entries: list[IndexEntry], seed: int) -> list[IndexEntry]:
    """The same photos with a price (whole and half units 0–100, a tenth without one) and stock per product."""
    rng = np.random.default_rng(seed)
    products = sorted({e.product_id for e in entries})
    prices = {p: None if rng.random() < 0.1 else float(rng.integers(0, 201)) / 2 for p in products}
    in_stock = {p: bool(rng.random() > 0.3) for p in products}
    return [replace(e, price=prices[e.product_id], in_stock=in_stock[e.product_id]) for e in entries]


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def random_entries(n: int, dim: int, *, products: int, seed: int = 0) -> list[IndexEntry]:
    """Photos of random products; category and is_active are product fields, so equal for a product's photos."""
    rng = np.random.default_rng(seed + 1)
    vectors = random_unit_vectors(n, dim, seed)
    categories = rng.choice(["shoes", "bags", "hats"], size=products + 1)
    active = rng.random(products + 1) > 0.1
    entries = []
    for i in range(n):
        product = int(rng.integers(1, products + 1))
        entries.append(IndexEntry(i + 1, product, vectors[i], str(categories[product]), bool(active[product])))
    return entries


def clustered_entries(n_products: int, per_product: int, dim: int, seed: int = 0) -> list[IndexEntry]:
    """Photos that really look alike within a product (a centre plus noise), as in a catalog."""
    rng = np.random.default_rng(seed)
    centres = random_unit_vectors(n_products, dim, seed + 7)
    entries = []
    for p in range(n_products):
        for j in range(per_product):
            v = centres[p] + rng.normal(scale=0.35 / np.sqrt(dim), size=dim) * np.sqrt(dim) * 0.3
            v = (v / np.linalg.norm(v)).astype(np.float32)
            entries.append(IndexEntry(len(entries) + 1, p + 1, v, "misc", True))
    return entries


def reference_word_search(entries, words, *, limit, filters=SearchFilters(), k1=1.2, b=0.75) -> list[SearchHit]:
    """BM25 over visual words, photo by photo, written out: idf = ln(1 + (N - df + 0.5) / (df + 0.5)) over the
    photos that have words; tf weight = tf (k1 + 1) / (tf + k1 (1 - b + b len / avglen)); query words once."""
    with_words = [e for e in entries if e.words is not None]
    n = len(with_words)
    avg = sum(len(e.words) for e in with_words) / max(n, 1)
    query = set(int(w) for w in words)
    df = {w: sum(1 for e in with_words if w in set(e.words.tolist())) for w in query}
    hits = []
    for entry in filter(lambda e: passes(e, filters), with_words):
        counts = {}
        for w in entry.words.tolist():
            counts[w] = counts.get(w, 0) + 1
        score = 0.0
        for w in query:
            tf = counts.get(w, 0)
            if tf:
                idf = np.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(entry.words) / avg))
        if score > 0:
            hits.append(SearchHit(entry.product_id, entry.image_id, score))
    return sorted(hits, key=lambda h: (-h.score, h.image_id))[:limit]


def entries_with_words(n: int, dim: int, *, products: int, vocabulary: int = 400, seed: int = 0) -> list[IndexEntry]:
    """Random photos with Zipf-like visual words (some words common, most rare) of varying counts."""
    rng = np.random.default_rng(seed + 5)
    entries = random_entries(n, dim, products=products, seed=seed)
    result = []
    for entry in entries:
        count = int(rng.integers(20, 120))
        words = np.minimum(rng.zipf(1.3, size=count), vocabulary).astype(np.int64) - 1
        result.append(IndexEntry(entry.image_id, entry.product_id, entry.vector, entry.category, entry.is_active,
                                 words))
    return result
