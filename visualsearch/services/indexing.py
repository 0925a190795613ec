"""Keep the vector index in step with the catalog. The database is the truth; every function here reconciles
the index with it, so running one twice, late, or after a crash is always safe."""
from __future__ import annotations

import logging
import threading
import time
from contextlib import nullcontext
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, OuterRef, Subquery
from django.utils import timezone

from catalog.models import IndexStatus, ProductImage

from ..backends.base import IndexEntry, IndexUnavailable, VectorIndex
from ..extractors.base import FeatureExtractor
from ..models import ImageEmbedding, IndexGeneration, vector_from_bytes
from ..registry import get_extractor, get_index
from .embedding import EmbedOutcome, embed_images

logger = logging.getLogger(__name__)
_load_lock = threading.RLock()  # reentrant: rebuild_index holds it while bumping the generation


@dataclass
class RebuildReport:
    embedded: int = 0
    failed: int = 0
    indexed: int = 0
    seconds: float = 0.0


def sync_images(image_ids: Iterable[int]) -> None:
    """Make the index agree with the database for these photos: embed and upsert those that exist, drop the rest.

    A photo whose file cannot be used any more is dropped from the index too, so a failed replacement never
    leaves the old picture searchable under its id.
    """
    image_ids = set(image_ids)
    # Taken before reading: any later change to these rows is sent with a later version and wins (Elasticsearch).
    read_at_us = time.time_ns() // 1000
    images = list(ProductImage.objects.filter(pk__in=image_ids).select_related("product"))
    outcome = embed_images(images, get_extractor()) if images else EmbedOutcome()
    ready = [image for image in images if image.sha256 in outcome.vectors]
    unusable = [image for image in images if image.pk in outcome.errors]
    stale = (image_ids - {image.pk for image in images}) | {image.pk for image in unusable}
    for image in unusable:
        _mark([image], IndexStatus.FAILED, outcome.errors[image.pk])
    index = get_index()
    try:
        with _writing(index):
            if stale:
                index.delete(sorted(stale), version=read_at_us)
            if ready:
                index.upsert([_entry(image, outcome.vectors[image.sha256]) for image in ready], version=read_at_us)
            _bump_generation(index)
    except IndexUnavailable as exc:
        _mark(ready, IndexStatus.PENDING, f"index unavailable, will retry: {exc}")
        logger.warning("index unavailable; %d images left pending: %s", len(ready), exc)
        return
    _mark(ready, IndexStatus.INDEXED, "")


def _writing(index: VectorIndex):
    """In-process indexes: writes and reloads from the database must not interleave, or a reload that read the
    database just before a write would replace the snapshot and lose that write."""
    return _load_lock if index.in_process else nullcontext()


def sync_products(product_ids: Iterable[int]) -> None:
    """Re-send the indexed photos of these products (is_active / category changed); no model work."""
    images = ProductImage.objects.filter(product_id__in=set(product_ids), index_status=IndexStatus.INDEXED)
    sync_images(images.values_list("pk", flat=True))


def _entry(image: ProductImage, vector) -> IndexEntry:
    product = image.product
    return IndexEntry(image.pk, product.pk, vector, product.category, product.is_active)


def _mark(images: Sequence[ProductImage], status: str, error: str) -> None:
    if not images:
        return
    indexed_at = timezone.now() if status == IndexStatus.INDEXED else None
    ProductImage.objects.filter(pk__in=[i.pk for i in images]).update(
        index_status=status, index_error=error[:2000], indexed_at=indexed_at
    )


# --- bulk ---------------------------------------------------------------------------------------------------------


def embed_missing(
    *, extractor: FeatureExtractor, batch_size: int, progress: Callable[[int], None] = lambda n: None
) -> tuple[int, int]:
    """Embed every photo that has no stored vector for the extractor; returns (embedded, failed)."""
    images = images_without_vectors(extractor.id).select_related("product").order_by("pk")
    embedded = failed = 0
    for batch in _batches(images.iterator(chunk_size=batch_size), batch_size):
        outcome = embed_images(batch, extractor)
        embedded += outcome.computed
        failed += len(outcome.errors)
        for image in batch:
            if image.pk in outcome.errors:
                _mark([image], IndexStatus.FAILED, outcome.errors[image.pk])
        progress(len(batch))
    return embedded, failed


def rebuild_index(*, batch_size: int = 64, progress: Callable[[int], None] = lambda n: None) -> RebuildReport:
    """Embed what lacks a vector, then rebuild the whole index from stored vectors (the backend swaps atomically)."""
    started = time.monotonic()
    extractor = get_extractor()
    report = RebuildReport()
    report.embedded, report.failed = embed_missing(extractor=extractor, batch_size=batch_size, progress=progress)
    index = get_index()
    with _load_lock:
        report.indexed = index.rebuild(iter_entries(extractor.id), expected_count=lambda: count_entries(extractor.id))
        _mark_all_with_vectors_indexed(extractor.id)
        _bump_generation(index, fully_loaded=True)
    report.seconds = time.monotonic() - started
    return report


def images_without_vectors(extractor_id: str):
    stored = ImageEmbedding.objects.filter(extractor_id=extractor_id).values("sha256")
    return ProductImage.objects.exclude(sha256__in=Subquery(stored))


def _with_vectors(extractor_id: str):
    vector = ImageEmbedding.objects.filter(sha256=OuterRef("sha256"), extractor_id=extractor_id).values("vector")[:1]
    return ProductImage.objects.annotate(vector=Subquery(vector)).exclude(vector=None)


def count_entries(extractor_id: str) -> int:
    return _with_vectors(extractor_id).count()


def iter_entries(extractor_id: str, chunk_size: int = 2000) -> Iterator[IndexEntry]:
    """Every photo with a stored vector, as index entries, streamed from the database in chunks."""
    rows = _with_vectors(extractor_id).order_by("pk").values_list(
        "pk", "product_id", "vector", "product__category", "product__is_active"
    )
    for pk, product_id, vector, category, is_active in rows.iterator(chunk_size=chunk_size):
        yield IndexEntry(pk, product_id, vector_from_bytes(vector), category, is_active)


def _mark_all_with_vectors_indexed(extractor_id: str) -> None:
    has_vector = ImageEmbedding.objects.filter(extractor_id=extractor_id).values("sha256")
    ProductImage.objects.filter(sha256__in=Subquery(has_vector)).exclude(index_status=IndexStatus.INDEXED).update(
        index_status=IndexStatus.INDEXED, index_error="", indexed_at=timezone.now()
    )


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# --- in-process index freshness -----------------------------------------------------------------------------------


def ensure_loaded(index: VectorIndex) -> VectorIndex:
    """Load an in-process index from the stored vectors when another process has written since (or never loaded)."""
    if not index.in_process:
        return index
    current = _generation(index.extractor_id)
    if index.loaded_generation != current:
        with _load_lock:
            current = _generation(index.extractor_id)
            if index.loaded_generation != current:
                index.rebuild(iter_entries(index.extractor_id))
                index.loaded_generation = current
    return index


def _generation(extractor_id: str) -> int:
    row = IndexGeneration.objects.filter(extractor_id=extractor_id).values_list("generation", flat=True).first()
    return row or 0


def _bump_generation(index: VectorIndex, fully_loaded: bool = False) -> None:
    """Record that the index changed. Our own in-process copy stays current only if nobody else wrote meanwhile
    (or it was just loaded in full)."""
    if not index.in_process:
        return
    with transaction.atomic():
        IndexGeneration.objects.get_or_create(extractor_id=index.extractor_id)
        IndexGeneration.objects.filter(extractor_id=index.extractor_id).update(generation=F("generation") + 1)
        new = _generation(index.extractor_id)
    seen_every_write = index.loaded_generation is not None and index.loaded_generation == new - 1
    index.loaded_generation = new if (seen_every_write or fully_loaded) else None


def index_pending(*, batch_size: int = 64, progress: Callable[[int], None] = lambda n: None) -> RebuildReport:
    """Catch up on photos that are not indexed (pending after an outage, failed after a bad file), in batches."""
    started = time.monotonic()
    report = RebuildReport()
    pending = ProductImage.objects.exclude(index_status=IndexStatus.INDEXED).order_by("pk")
    for batch in _batches(pending.values_list("pk", flat=True).iterator(), batch_size):
        sync_images(batch)
        statuses = ProductImage.objects.filter(pk__in=batch).values_list("index_status", flat=True)
        report.indexed += sum(s == IndexStatus.INDEXED for s in statuses)
        report.failed += sum(s != IndexStatus.INDEXED for s in statuses)
        progress(len(batch))
    report.seconds = time.monotonic() - started
    return report
