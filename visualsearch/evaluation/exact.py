"""Measurements against exact, image-level search over the dataset's stored vectors (brute force numpy).

The search service answers one hit per product, which is what shoppers see; the UKBench N-S score needs photos
ranked individually, and an approximate index is judged by how many of the exact top-k it finds.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from django.conf import settings

from ..backends.base import IndexEntry, SearchFilters, VectorIndex
from ..backends.embedded import EmbeddedIndex
from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected, decode_image
from .dataset import Row
from .metrics import ns_score


def ns_score_of(
    gallery: Sequence[tuple[int, str]],
    query_ids: Sequence[int],
    entries: Sequence[IndexEntry],
    *,
    fused: Sequence[Mapping[int, float]] | None = None,
) -> float | None:
    """N-S over the indexed photos of ``gallery`` ((image id, group) pairs) for the queries' own photos; a query
    whose photo could not be embedded is left out.

    Photos rank by exact cosine similarity of the stored vectors; ``fused`` (one mapping per query: image id →
    score, recognition's ``photo_scores``) puts a fused score in place of the cosine of the photos it names.
    """
    vectors = {entry.image_id: entry.vector for entry in entries}
    ranked = [(image_id, group) for image_id, group in gallery if image_id in vectors]
    position = {image_id: i for i, (image_id, _) in enumerate(ranked)}
    chosen = [n for n, image_id in enumerate(query_ids) if image_id in position]
    if not chosen:
        return None
    matrix = np.stack([vectors[image_id] for image_id, _ in ranked])
    groups = [group for _, group in ranked]
    query_rows = [position[query_ids[n]] for n in chosen]
    if fused is None:
        return ns_score(matrix, groups, query_rows)
    replaced = [{position[i]: s for i, s in fused[n].items() if i in position} for n in chosen]
    return ns_score(matrix, groups, query_rows, fused=replaced)


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
