"""Import a dataset into a sandbox, index it, and run every query through the search service the API uses.

Returns raw measurements (per-query rankings and timings); :mod:`.summary` turns them into numbers.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from PIL import Image

from catalog.models import Product, ProductImage

from .. import services
from ..backends.base import IndexEntry, VectorIndex
from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected
from ..registry import get_extractor, get_index
from ..services.embedding import embed_images
from ..services.indexing import ensure_loaded
from . import exact
from .dataset import BOTH, Dataset, Row
from .metrics import first_relevant_rank
from .sandbox import new_namespace, sandbox

MAX_RESULTS = 1000  # per query: every product for mAP and the threshold curves, up to a size a search can return

Progress = Callable[[str, int], AbstractContextManager[Any]]  # (description, total) → a bar with .update(n)


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


def silent(description: str, total: int) -> AbstractContextManager[Any]:
    return nullcontext(_Silent())


@dataclass
class Options:
    index: dict[str, Any]  # a VISUALSEARCH_INDEXES entry, see sandbox.index_config
    extractor_alias: str = "default"
    k: int = 10
    limit: int | None = None  # evaluate only the first N queries
    batch_size: int = 64
    progress: Progress = silent


@dataclass
class QueryOutcome:
    rank: int  # of the query's product, 1-based; 0 = not returned
    scores: np.ndarray  # one per returned product, best first
    matches: np.ndarray  # bool, same order: is this the query's product
    timings_ms: dict[str, float]


@dataclass
class EvaluationResult:
    dataset: str
    extractor_id: str
    backend: str
    k: int
    threshold: float  # the configured SEARCH_THRESHOLD
    products: int
    indexed: int  # photos in the evaluation index
    embedded: int  # of those, how many ran through the model (the rest shared a stored vector)
    failed_images: int
    import_seconds: float
    index_seconds: float
    search_limit: int = 0  # products asked for per query; the assemble stage grows with it
    queries: list[QueryOutcome] = field(default_factory=list)
    failed_queries: int = 0
    ns_score: float | None = None  # only when every row is 'both'
    ann_recall: float | None = None  # only for approximate indexes
    seconds: float = 0.0


@dataclass
class _Catalog:
    """The dataset as imported: product id per group, stored photo per indexed path."""

    namespace: str
    products: dict[str, int]
    photos: dict[str, ProductImage]


@dataclass
class _Indexing:
    entries: list[IndexEntry]
    embedded: int
    failed: int
    seconds: float


def run_evaluation(dataset: Dataset, options: Options) -> EvaluationResult:
    started = time.perf_counter()
    namespace = new_namespace()
    with sandbox(namespace=namespace, index=options.index, extractor_alias=options.extractor_alias):
        result = _evaluate(dataset, namespace, options)
    result.seconds = time.perf_counter() - started
    return result


def _evaluate(dataset: Dataset, namespace: str, options: Options) -> EvaluationResult:
    extractor, index = get_extractor(), get_index()
    extractor.embed_one(Image.new("RGB", (224, 224)))  # build the CNN now: seconds that are not indexing
    import_started = time.perf_counter()
    catalog = _import(dataset, namespace, options.progress)
    import_seconds = time.perf_counter() - import_started
    indexing = _index(catalog, extractor, index, options)
    result = EvaluationResult(
        dataset=str(dataset.root), extractor_id=extractor.id, backend=type(index).__name__, k=options.k,
        threshold=float(settings.VISUALSEARCH["SEARCH_THRESHOLD"]), products=len(catalog.products),
        indexed=len(indexing.entries), embedded=indexing.embedded, failed_images=indexing.failed,
        import_seconds=import_seconds, index_seconds=indexing.seconds,
        search_limit=min(max(options.k, len(catalog.products)), MAX_RESULTS),
    )  # fmt: skip
    queries = dataset.queries[: options.limit]
    result.queries, result.failed_queries = _search_all(queries, catalog, result.search_limit, options.progress)
    if dataset.all_both:
        result.ns_score = exact.ns_score_of(queries, dataset.gallery, catalog.photos, indexing.entries)
    if not index.exact:
        result.ann_recall = _ann_recall(queries, catalog, indexing, extractor, index, options)
    return result


def _import(dataset: Dataset, namespace: str, progress: Progress) -> _Catalog:
    """One product per group, one photo per indexed row; signals queue index work for a commit that never comes."""
    products = {
        group: Product.objects.create(relation_id=f"{namespace}/{group}", title=group, category=namespace).pk
        for group in dataset.groups
    }
    photos = {}
    with progress("importing", len(dataset.gallery)) as bar:
        for row in dataset.gallery:
            photo = ProductImage(product_id=products[row.group], position=row.line)
            photo.image.save(row.path.name, ContentFile(row.path.read_bytes()), save=False)
            photo.save()
            photo.image.close()  # save() hashes the file and leaves it open: thousands of photos would run out of fds
            photos[row.relpath] = photo
            bar.update(1)
    return _Catalog(namespace, products, photos)


def _index(catalog: _Catalog, extractor: FeatureExtractor, index: VectorIndex, options: Options) -> _Indexing:
    """Decode, embed, store and index the dataset's photos, and only those.

    Not rebuild_index / sync_images: inside the transaction they would also embed and mark the shop's own photos
    and bump the shared IndexGeneration row, holding its lock (and stalling live indexing) until the rollback.
    """
    started = time.perf_counter()
    photos = list(catalog.photos.values())
    entries, embedded, failed = [], 0, 0
    with options.progress("embedding", len(photos)) as bar:
        for start in range(0, len(photos), options.batch_size):
            batch = photos[start : start + options.batch_size]
            outcome = embed_images(batch, extractor)
            embedded, failed = embedded + outcome.computed, failed + len(outcome.errors)
            entries += [_entry(p, outcome.vectors[p.sha256], catalog.namespace) for p in batch
                        if p.sha256 in outcome.vectors]  # fmt: skip
            bar.update(len(batch))
    index.rebuild(entries, expected_count=len(entries))
    index.refresh()
    # An in-process index reloads itself from all stored vectors before its first search (the service's freshness
    # check): do it now, so that no timed query pays for it. This brings in the shop's own vectors for the
    # extractor too; searches filter on the evaluation's category, so they never rank them.
    ensure_loaded(index)
    return _Indexing(entries, embedded, failed, time.perf_counter() - started)


def _entry(photo: ProductImage, vector: np.ndarray, namespace: str) -> IndexEntry:
    return IndexEntry(photo.pk, photo.product_id, vector, category=namespace, is_active=True)


def _search_all(
    queries: Sequence[Row], catalog: _Catalog, limit: int, progress: Progress
) -> tuple[list[QueryOutcome], int]:
    if queries:  # untimed: the first call at a new batch shape makes the CNN trace its graph (hundreds of ms)
        _search_one(queries[0], catalog, limit)
    outcomes, failed = [], 0
    with progress("searching", len(queries)) as bar:
        for row in queries:
            outcome = _search_one(row, catalog, limit)
            if outcome is None:
                failed += 1
            else:
                outcomes.append(outcome)
            bar.update(1)
    return outcomes, failed


def _search_one(row: Row, catalog: _Catalog, limit: int) -> QueryOutcome | None:
    """One shopper's photo through the real search path; None when the file is not a usable image."""
    own = catalog.photos.get(row.relpath) if row.role == BOTH else None
    try:
        result = services.search_by_image(
            image_bytes=row.path.read_bytes(),
            limit=limit,
            threshold=-1.0,  # nothing cut: the threshold curves are computed from every score
            category=catalog.namespace,  # only the evaluation's products, even where the index holds the shop's
            exclude_image_ids=frozenset({own.pk}) if own else frozenset(),
        )
    except ImageRejected:
        return None
    expected = catalog.products[row.group]
    matches = np.array([m.product.pk == expected for m in result.matches], dtype=bool)
    scores = np.array([m.score for m in result.matches], dtype=np.float64)
    return QueryOutcome(first_relevant_rank(matches), scores, matches, dict(result.timings_ms))


def _ann_recall(
    queries: Sequence[Row],
    catalog: _Catalog,
    indexing: _Indexing,
    extractor: FeatureExtractor,
    index: VectorIndex,
    options: Options,
) -> float | None:
    # A 'both' query reuses its own photo's stored vector; the others are embedded again.
    inputs = [(row, catalog.photos[row.relpath].pk if row.role == BOTH else None) for row in queries]
    with options.progress("ANN recall", len(inputs)) as bar:
        return exact.ann_recall(
            index, indexing.entries, inputs, extractor, namespace=catalog.namespace, k=options.k, on_query=bar.update
        )
