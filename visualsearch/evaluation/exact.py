"""Measurements against exact, image-level search over the dataset's stored vectors (brute force numpy).

The search service answers one hit per product, which is what shoppers see; the UKBench N-S score needs photos
ranked individually, and an approximate index is judged by how many of the exact top-k it finds.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from django.conf import settings

from catalog.models import ProductImage

from ..backends.base import IndexEntry, SearchFilters, VectorIndex
from ..backends.embedded import EmbeddedIndex
from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected, decode_image
from .dataset import Row
from .metrics import ns_score


def ns_score_of(
    queries: Sequence[Row], gallery: Sequence[Row], photos: Mapping[str, ProductImage], entries: Sequence[IndexEntry]
) -> float | None:
    """N-S over the indexed photos; queries whose own photo could not be embedded are left out."""
    vectors = {entry.image_id: entry.vector for entry in entries}
    ranked = [row for row in gallery if photos[row.relpath].pk in vectors]
    position = {row.relpath: i for i, row in enumerate(ranked)}
    query_rows = [position[row.relpath] for row in queries if row.relpath in position]
    if not query_rows:
        return None
    matrix = np.stack([vectors[photos[row.relpath].pk] for row in ranked])
    return ns_score(matrix, [row.group for row in ranked], query_rows)


def ann_recall(
    index: VectorIndex,
    entries: Sequence[IndexEntry],
    queries: Sequence[tuple[Row, int | None]],
    extractor: FeatureExtractor,
    *,
    namespace: str,
    k: int,
    on_query: Callable[[int], None] = lambda n: None,
) -> float | None:
    """Mean share of the exact top-k products that the approximate index also returns in its top k.

    Compared at the index level, for the same query vectors, so only the approximation differs. The exact side is
    loaded with the very entries given to the index (the stored vectors), not re-read from the database, which
    would stream the whole shop's vectors too.
    """
    reference = EmbeddedIndex(extractor_id=extractor.id, dim=extractor.dim)
    reference.rebuild(entries)
    stored = {entry.image_id: entry.vector for entry in entries}
    filters = SearchFilters(active_only=True, category=namespace)
    recalls = []
    for row, own_id in queries:
        vector = stored.get(own_id) if own_id is not None else None
        vector = vector if vector is not None else _embed_file(row, extractor)
        if vector is not None:
            truth = {hit.product_id for hit in reference.search(vector, limit=k, filters=filters)}
            found = {hit.product_id for hit in index.search(vector, limit=k, filters=filters)}
            recalls.append(len(truth & found) / max(len(truth), 1))
        on_query(1)
    return float(np.mean(recalls)) if recalls else None


def _embed_file(row: Row, extractor: FeatureExtractor) -> np.ndarray | None:
    try:
        pixels = decode_image(row.path.read_bytes(), max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])
    except ImageRejected:
        return None
    return extractor.embed_one(pixels)
