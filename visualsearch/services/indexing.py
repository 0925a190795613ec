"""Keep the vector index in step with the catalog. The database is the truth; every function here reconciles
the index with it, so running one twice, late, or after a crash is always safe."""
from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from functools import reduce

import numpy as np
from django.db import transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from catalog.models import IndexStatus, ProductImage

from ..backends.base import EntriesRejected, IndexEntry, IndexUnavailable, VectorIndex
from ..extractors.base import FeatureExtractor
from ..models import ImageEmbedding, IndexGeneration, PendingIndexDelete, vector_from_bytes
from ..registry import get_extractor, get_index
from . import recognition
from .embedding import EmbedOutcome, embed_images, embed_pipelined

logger = logging.getLogger(__name__)
_load_lock = threading.RLock()  # reentrant: rebuild_index holds it while bumping the generation
DEFAULT_BATCH_SIZE = 32  # photos per model batch for extractors that do not say
RESEND_PAGE = 500  # photos per index write when product fields are re-sent from stored vectors


@dataclass
class RebuildReport:
    embedded: int = 0
    failed: int = 0
    indexed: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Current:
    """A photo's row as it is in the database right before an index write."""

    sha256: str
    product_id: int
    category: str
    is_active: bool
    price: Decimal | None
    stock: int | None


# The product fields each index entry carries (what searches filter on before ranking), read with every photo row.
PRODUCT_COLUMNS = ("product__category", "product__is_active", "product__price", "product__stock")


def _product_fields(category: str, is_active: bool, price: Decimal | None, stock: int | None) -> dict:
    return {"category": category, "is_active": is_active, "price": None if price is None else float(price),
            "in_stock": stock is None or stock > 0}


def sync_images(image_ids: Iterable[int]) -> None:
    """Make the index agree with the database for these photos: embed and upsert those that exist, drop the rest.

    Runs in chunks of the extractor's batch size (decode, embed, store, write), so a big transaction or admin
    selection never holds more than one batch of decoded images. A photo whose file cannot be used any more is
    dropped from the index too, so a failed replacement never leaves the old picture searchable under its id.
    """
    extractor = get_extractor()
    for chunk in _batches(sorted(set(image_ids)), getattr(extractor, "batch_size", DEFAULT_BATCH_SIZE)):
        _sync_chunk(chunk, extractor)


def _sync_chunk(image_ids: list[int], extractor: FeatureExtractor) -> None:
    images = list(ProductImage.objects.filter(pk__in=image_ids))
    outcome = embed_images(images, extractor) if images else EmbedOutcome()
    recognizer = recognition.active_recognizer() if images and recognition.enabled() else None
    local_errors = _store_local_features([i for i in images if i.pk not in outcome.errors], recognizer)
    embedded_as = {image.pk: image.sha256 for image in images}
    # The version and the product's fields are taken *after* the model ran (and stored its vectors): a product
    # change committed meanwhile is either read here, or re-sent by its own sync with a later version, which wins.
    version = _now_us()
    current = _current_rows(image_ids)
    # A photo whose file changed meanwhile is left to the sync its save queued.
    same = {pk: row for pk, row in current.items() if row.sha256 == embedded_as.get(pk)}
    unusable = [pk for pk in same if pk in outcome.errors]
    ready = {pk: row for pk, row in same.items() if pk not in outcome.errors and row.sha256 in outcome.vectors}
    stale = sorted(set(image_ids) - set(current) | set(unusable))
    for pk in unusable:
        _mark([(pk, same[pk].sha256)], IndexStatus.FAILED, outcome.errors[pk])
    marks = [(pk, row.sha256) for pk, row in ready.items()]
    words = _stored_words((row.sha256 for row in ready.values()), recognizer.feature_id) if recognizer else {}
    entries = [_entry(pk, row, outcome.vectors[row.sha256], words.get(row.sha256)) for pk, row in ready.items()]
    rejected = _write(stale, entries, version, marks)
    if rejected is not None:
        _mark([m for m in marks if m[0] not in local_errors and m[0] not in rejected], IndexStatus.INDEXED, "")
        for pk, reason in local_errors.items():  # searchable by its global vector; says why recognition cannot
            if pk not in rejected:
                _mark([m for m in marks if m[0] == pk], IndexStatus.INDEXED, reason)


def _store_local_features(images: Sequence[ProductImage], recognizer) -> dict[int, str]:
    """Local features for photos whose content has none under the active vocabulary (none yet: nothing to do,
    `reindex` trains one). Never fails the sync: a photo that cannot be analysed keeps its global vector."""
    if recognizer is None or not images:
        return {}
    try:
        return recognition.store_features(images, recognizer)
    except Exception as exc:
        logger.exception("local features failed for %d photos", len(images))
        return {image.pk: f"local features failed: {exc}" for image in images}


def _stored_words(sha256s: Iterable[str], feature_id: str | None = None) -> dict[str, np.ndarray]:
    """Words of these contents under ``feature_id`` (default: the active vocabulary's; none when recognition is off)."""
    if feature_id is None:
        recognizer = recognition.active_recognizer() if recognition.enabled() else None
        feature_id = recognizer.feature_id if recognizer else None
    return recognition.stored_words(sha256s, feature_id) if feature_id else {}


def _current_rows(image_ids: Iterable[int]) -> dict[int, _Current]:
    rows = ProductImage.objects.filter(pk__in=image_ids).values_list(
        "pk", "sha256", "product_id", *PRODUCT_COLUMNS
    )
    return {pk: _Current(*fields) for pk, *fields in rows}


# Deletes whose photo rows are gone wait in PendingIndexDelete while the index is down; each later write takes
# up to this many of them along.
PENDING_DELETES_PER_WRITE = 1000


def _write(stale: Sequence[int], entries: Sequence[IndexEntry], version: int, marks) -> set[int] | None:
    """Delete and upsert as one step. Returns the ids the index refused (those photos are marked failed, with the
    index's reason; the rest are written), or None when the index is down: photos are left pending for
    `reindex --missing`, and deletes are recorded so they are not lost with their rows."""
    waiting = list(PendingIndexDelete.objects.values_list("image_id", flat=True)[:PENDING_DELETES_PER_WRITE])
    deletes = sorted(set(stale) | set(waiting))
    if not deletes and not entries:
        return set()  # nothing written: no generation bump, so no other process reloads
    index = get_index()
    rejected: dict[int, str] = {}
    try:
        with _writing(index):
            if deletes:
                index.delete(deletes, version=version)
            if entries:
                try:
                    index.upsert(list(entries), version=version)
                except EntriesRejected as exc:
                    rejected = exc.rejected
            _bump_generation(index)
    except IndexUnavailable as exc:
        _mark(marks, IndexStatus.PENDING, f"index unavailable, will retry: {exc}")
        PendingIndexDelete.objects.bulk_create([PendingIndexDelete(image_id=i) for i in stale], ignore_conflicts=True)
        logger.warning("index unavailable; %d images left pending, %d deletes recorded: %s", len(marks), len(stale), exc)
        return None
    if waiting:
        PendingIndexDelete.objects.filter(image_id__in=waiting).delete()
    for pk, reason in rejected.items():
        _mark([m for m in marks if m[0] == pk], IndexStatus.FAILED, f"the index refused it: {reason}")
    return set(rejected)


def _writing(index: VectorIndex):
    """In-process indexes: writes and reloads from the database must not interleave, or a reload that read the
    database just before a write would replace the snapshot and lose that write."""
    return _load_lock if index.in_process else nullcontext()


def sync_products(product_ids: Iterable[int], *, skip_image_ids: Iterable[int] = ()) -> None:
    """Re-send the photos of these products (is_active / category changed) from their stored vectors; no model work.

    Pending photos are included: one whose sync is still embedding reads the product after the model, and one
    left pending by an outage is caught up. ``skip_image_ids`` are being synced in full anyway.
    """
    photos = ProductImage.objects.filter(product_id__in=set(product_ids)).exclude(pk__in=set(skip_image_ids))
    _resend(photos)


def resync_products(*, page_size: int = RESEND_PAGE, progress: Callable[[int], None] = lambda n: None) -> int:
    """Re-send every photo with a stored vector with its product's current fields, without running the model.

    For product changes that sent no signal (`QuerySet.update()`, `bulk_update()`, raw SQL). Returns how many
    photos were sent; raises IndexUnavailable if the index went away (the page being sent is left pending).
    """
    sent, complete = _resend(ProductImage.objects.all(), page_size=page_size, progress=progress)
    if not complete:
        raise IndexUnavailable(f"index unavailable after {sent} photos were re-sent; run it again")
    return sent


def _resend(photos, *, page_size: int = RESEND_PAGE, progress: Callable[[int], None] = lambda n: None):
    """Upsert ``photos`` that have a stored vector, page by page; returns (sent, whether all pages were sent)."""
    rows = _with_vectors(get_extractor().id, photos).values_list(
        "pk", "sha256", "index_status", "vector", "product_id", *PRODUCT_COLUMNS
    )
    pages, sent = _pages(rows, page_size), 0
    while True:
        version = _now_us()  # before the page is read: a later change's own sync carries a later version
        page = next(pages, None)
        if page is None:
            return sent, True
        words = _stored_words(sha for _, sha, *_ in page)
        entries = [IndexEntry(pk, product, vector_from_bytes(vector), words=words.get(sha), **_product_fields(*fields))
                   for pk, sha, _, vector, product, *fields in page]
        rejected = _write((), entries, version, [(pk, sha) for pk, sha, *_ in page])
        if rejected is None:
            return sent, False
        _mark([(pk, sha) for pk, sha, status, *_ in page if status != IndexStatus.INDEXED and pk not in rejected],
              IndexStatus.INDEXED, "")
        sent += len(page)
        progress(len(page))


def _entry(image_id: int, row: _Current, vector, words=None) -> IndexEntry:
    fields = _product_fields(row.category, row.is_active, row.price, row.stock)
    return IndexEntry(image_id, row.product_id, vector, words=words, **fields)


def _mark(photos: Sequence[tuple[int, str]], status: str, error: str) -> None:
    """Set the status of photos that still hold the file (sha256) the work was done for: a photo replaced
    meanwhile belongs to the sync its save queued, whose status must not be overwritten by this older one."""
    indexed_at = timezone.now() if status == IndexStatus.INDEXED else None
    for chunk in _batches(photos, 100):
        condition = reduce(operator.or_, (Q(pk=pk, sha256=sha) for pk, sha in chunk))
        ProductImage.objects.filter(condition).update(index_status=status, index_error=error[:2000],
                                                      indexed_at=indexed_at)


# --- bulk ---------------------------------------------------------------------------------------------------------


def embed_missing(
    *, extractor: FeatureExtractor, batch_size: int, progress: Callable[[int], None] = lambda n: None
) -> tuple[int, int]:
    """Embed every photo that has no stored vector for the extractor; returns (embedded, failed)."""
    images = images_without_vectors(extractor.id).select_related("product")
    embedded = failed = 0
    for batch, outcome in embed_pipelined(_pages(images, batch_size, key=operator.attrgetter("pk")), extractor):
        embedded += outcome.computed
        failed += len(outcome.errors)
        for image in batch:
            if image.pk in outcome.errors:
                _mark([(image.pk, image.sha256)], IndexStatus.FAILED, outcome.errors[image.pk])
        progress(len(batch))
    return embedded, failed


def rebuild_index(*, batch_size: int = 64, progress: Callable[[int], None] = lambda n: None) -> RebuildReport:
    """Embed what lacks a vector, then rebuild the whole index from stored vectors (the backend swaps atomically)."""
    started = time.monotonic()
    extractor = get_extractor()
    report = RebuildReport()
    report.embedded, report.failed = embed_missing(extractor=extractor, batch_size=batch_size, progress=progress)
    recognizer = prepare_recognition(progress=progress)
    feature_id = recognizer.feature_id if recognizer else None
    index = get_index()
    with _load_lock:
        entries_read_from = timezone.now()  # deletes recorded before this have no row to be rebuilt from
        report.indexed = index.rebuild(iter_entries(extractor.id, feature_id=feature_id),
                                       expected_count=lambda: count_entries(extractor.id))
        PendingIndexDelete.objects.filter(created_at__lt=entries_read_from).delete()
        if recognizer is not None:  # a newly trained vocabulary goes live with the index built from its words
            recognition.activate(recognizer.vocabulary_id)
        _mark_all_with_vectors_indexed(extractor.id)
        _bump_generation(index, fully_loaded=True)
    report.seconds = time.monotonic() - started
    return report


def prepare_recognition(*, progress: Callable[[int], None] = lambda n: None) -> recognition.Recognizer | None:
    """Before an index build: the vocabulary to build with — the newest trained one (a fresh `train_vocabulary`
    waits for this build to go live), else one trained now on the catalog if there is none — and local features
    of every photo that lacks them under it."""
    if not recognition.enabled():
        return None
    recognizer = recognition.newest_recognizer()
    if recognizer is None and ProductImage.objects.exists():
        recognition.train_vocabulary(activate=False)
        recognizer = recognition.newest_recognizer()
    if recognizer is not None:
        _store_all_features(recognizer, progress)
    return recognizer


def _store_all_features(recognizer: recognition.Recognizer, progress: Callable[[int], None]) -> int:
    analysed = 0
    todo = recognition.photos_without_features(recognizer.feature_id)
    workers = recognition.options()["ANALYSIS_WORKERS"]  # reindex owns its process: a photo per core
    for batch in _pages(todo, 64, key=operator.attrgetter("pk")):
        for pk, reason in recognition.store_features(batch, recognizer, workers=workers).items():
            logger.warning("photo %s: %s", pk, reason)
        analysed += len(batch)
        progress(len(batch))
    return analysed


def add_missing_features(*, progress: Callable[[int], None] = lambda n: None) -> int:
    """`reindex --missing` for recognition: features of photos indexed without them (indexed before the first
    vocabulary existed, or analysed when it failed), then those photos re-sent with their words. No model work."""
    if not recognition.enabled():
        return 0
    recognizer = recognition.active_recognizer()
    if recognizer is None:  # the first vocabulary: trained now and live at once (no index holds words yet)
        if recognition.train_vocabulary(activate=True) is None:
            return 0
        recognizer = recognition.active_recognizer()
    lacking = list(recognition.photos_without_features(recognizer.feature_id).values_list("pk", flat=True))
    analysed = _store_all_features(recognizer, progress)
    if not lacking:
        return 0
    photos = ProductImage.objects.filter(pk__in=lacking)
    sent, complete = _resend(photos)
    if not complete:
        raise IndexUnavailable(f"index unavailable after {sent} photos were re-sent; run it again")
    return analysed


def images_without_vectors(extractor_id: str):
    stored = ImageEmbedding.objects.filter(extractor_id=extractor_id).values("sha256")
    return ProductImage.objects.exclude(sha256__in=Subquery(stored))


def _with_vectors(extractor_id: str, photos=None):
    vector = ImageEmbedding.objects.filter(sha256=OuterRef("sha256"), extractor_id=extractor_id).values("vector")[:1]
    photos = ProductImage.objects.all() if photos is None else photos
    return photos.annotate(vector=Subquery(vector)).exclude(vector=None)


def count_entries(extractor_id: str) -> int:
    return _with_vectors(extractor_id).count()


def iter_entries(extractor_id: str, chunk_size: int = 2000, *, feature_id: str | None = None) -> Iterator[IndexEntry]:
    """Every photo with a stored vector, as index entries, read from the database a page at a time."""
    rows = _with_vectors(extractor_id).values_list(
        "pk", "product_id", "vector", "sha256", *PRODUCT_COLUMNS
    )
    for page in _pages(rows, chunk_size):
        words = _stored_words((row[3] for row in page), feature_id)
        for pk, product_id, vector, sha, *fields in page:
            yield IndexEntry(pk, product_id, vector_from_bytes(vector), words=words.get(sha), **_product_fields(*fields))


def _mark_all_with_vectors_indexed(extractor_id: str) -> None:
    has_vector = ImageEmbedding.objects.filter(extractor_id=extractor_id).values("sha256")
    ProductImage.objects.filter(sha256__in=Subquery(has_vector)).exclude(index_status=IndexStatus.INDEXED).update(
        index_status=IndexStatus.INDEXED, index_error="", indexed_at=timezone.now()
    )


def _pages(rows: QuerySet, size: int, key: Callable = operator.itemgetter(0)) -> Iterator[list]:
    """Rows in primary-key order, one query per page (`pk > last … LIMIT size`).

    Unlike `.iterator(chunk_size=…)`, which on MySQL fetches the whole result at once, this holds one page at a
    time on every database. ``key`` gives a row's pk (the first value of a values_list row by default).
    """
    last = None
    while True:
        page = list((rows if last is None else rows.filter(pk__gt=last)).order_by("pk")[:size])
        if page:
            yield page
        if len(page) < size:
            return
        last = key(page[-1])


def _batches(items: Iterable, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _now_us() -> int:
    return time.time_ns() // 1000


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
    while PendingIndexDelete.objects.exists():  # deletes made while the index was down go first
        if _write((), (), _now_us(), []) is None:
            break  # still down: they stay recorded
    pending = ProductImage.objects.exclude(index_status=IndexStatus.INDEXED).values_list("pk", flat=True)
    for batch in _pages(pending, batch_size, key=lambda pk: pk):
        sync_images(batch)
        statuses = ProductImage.objects.filter(pk__in=batch).values_list("index_status", flat=True)
        report.indexed += sum(s == IndexStatus.INDEXED for s in statuses)
        report.failed += sum(s != IndexStatus.INDEXED for s in statuses)
        progress(len(batch))
    report.seconds = time.monotonic() - started
    return report
