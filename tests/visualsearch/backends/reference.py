"""Brute-force reference for the backend contract: the obviously-correct (slow) answer."""
from __future__ import annotations

import numpy as np

from visualsearch.backends.base import IndexEntry, SearchFilters, SearchHit


def reference_search(entries, vector, *, limit, offset=0, threshold=None, filters=SearchFilters()) -> list[SearchHit]:
    best: dict[int, SearchHit] = {}
    for entry in entries:
        if filters.active_only and not entry.is_active:
            continue
        if filters.category is not None and entry.category != filters.category:
            continue
        if entry.image_id in filters.exclude_image_ids:
            continue
        score = float(np.dot(entry.vector, vector))
        if threshold is not None and score < threshold:
            continue
        current = best.get(entry.product_id)
        if current is None or (score, -entry.image_id) > (current.score, -current.image_id):
            best[entry.product_id] = SearchHit(entry.product_id, entry.image_id, score)
    ranked = sorted(best.values(), key=lambda h: (-h.score, h.image_id))
    return ranked[offset : offset + limit]


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
