"""Photos → stored vectors. A vector is computed once per (file content, extractor) and kept in the database."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from catalog.models import ProductImage, file_sha256, is_content_hash

from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected, decode_image
from ..models import ImageEmbedding, vector_from_bytes, vector_to_bytes
from .pools import ordered_map

logger = logging.getLogger(__name__)


@dataclass
class EmbedOutcome:
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # sha256 → unit vector
    errors: dict[int, str] = field(default_factory=dict)  # image id → reason
    computed: int = 0  # how many ran through the model (the rest were already stored)


def stored_vectors(sha256s: Sequence[str], extractor_id: str) -> dict[str, np.ndarray]:
    rows = ImageEmbedding.objects.for_extractor(extractor_id).filter(sha256__in=set(sha256s))
    return {sha: vector_from_bytes(vec) for sha, vec in rows.values_list("sha256", "vector")}


def embed_images(images: Sequence[ProductImage], extractor: FeatureExtractor) -> EmbedOutcome:
    """Vectors for ``images``, computing and storing only those the database lacks."""
    batch = plan_batch(images, extractor)
    return finish_batch(batch, decode_batch(batch), extractor)


def embed_pipelined(
    batches: Iterable[Sequence[ProductImage]], extractor: FeatureExtractor
) -> Iterator[tuple[Sequence[ProductImage], EmbedOutcome]]:
    """(batch, ``embed_images`` of it) for each batch, in order, with the next batch decoding while the model
    embeds this one (bulk paths: decoding is a quarter of a reindex, and the CNN leaves the cores partly idle).
    At most two batches of pixels are held; database work stays in the caller's thread."""
    with ThreadPoolExecutor(1, thread_name_prefix="visualsearch-prefetch") as ahead:
        pending = None
        for images in batches:
            batch = plan_batch(images, extractor)
            decoding = ahead.submit(decode_batch, batch)
            if pending is not None:
                yield pending[0], finish_batch(pending[1], pending[2].result(), extractor)
            pending = (images, batch, decoding)
        if pending is not None:
            yield pending[0], finish_batch(pending[1], pending[2].result(), extractor)


@dataclass
class PlannedBatch:
    """What a batch needs decoded: the contents without a stored vector, each with its photos."""

    outcome: EmbedOutcome
    copies: dict[str, list[ProductImage]]


def plan_batch(images: Sequence[ProductImage], extractor: FeatureExtractor) -> PlannedBatch:
    """The database half before decoding: content hashes, and the vectors already stored."""
    outcome = EmbedOutcome()
    images = _with_content_hashes(images, outcome.errors)
    outcome.vectors = stored_vectors([i.sha256 for i in images], extractor.id)
    return PlannedBatch(outcome, _copies_per_content([i for i in images if i.sha256 not in outcome.vectors]))


def decode_batch(batch: PlannedBatch) -> list[tuple[str, object]]:
    """(sha256, pixels) per content to embed; no database access, so it may run in another thread."""
    return _decode_one_copy_each(batch.copies, batch.outcome.errors)


def finish_batch(batch: PlannedBatch, decoded: list[tuple[str, object]], extractor: FeatureExtractor) -> EmbedOutcome:
    """Embed the decoded contents and store their vectors."""
    outcome, copies = batch.outcome, batch.copies
    if decoded:
        try:
            vectors = extractor.embed([pixels for _, pixels in decoded])
        except Exception as exc:  # a model failure must mark images failed, not lose them
            logger.exception("embedding %d images failed", len(decoded))
            outcome.errors.update({i.pk: f"embedding failed: {exc}" for sha, _ in decoded for i in copies[sha]})
            return outcome
        _store([sha for sha, _ in decoded], vectors, extractor)
        outcome.vectors.update({sha: vector for (sha, _), vector in zip(decoded, vectors)})
        outcome.computed = len(decoded)
    return outcome


def _with_content_hashes(images: Sequence[ProductImage], errors: dict[int, str]) -> list[ProductImage]:
    """The images, each with the hash of its file. Rows written around Model.save() (raw fixture loads, updates,
    migration 0002's placeholders) may lack one: hash them now, because photos grouped under one non-hash would
    all get the vector of one of them."""
    hashed = []
    for image in images:
        if not is_content_hash(image.sha256):
            try:
                _record_hash(image)
            except Exception as exc:  # a missing file fails this photo alone
                errors[image.pk] = f"cannot read image: {exc}"
                continue
        hashed.append(image)
    return hashed


def _record_hash(image: ProductImage) -> None:
    old, image.sha256 = image.sha256, file_sha256(image.image)
    # Only over the value we read: a file replaced meanwhile was hashed by its own save, which syncs it again.
    ProductImage.objects.filter(pk=image.pk, sha256=old).update(sha256=image.sha256)


def _copies_per_content(images: Sequence[ProductImage]) -> dict[str, list[ProductImage]]:
    copies: dict[str, list[ProductImage]] = {}
    for image in images:
        copies.setdefault(image.sha256, []).append(image)
    return copies


def _decode_one_copy_each(copies: dict[str, list[ProductImage]], errors: dict[int, str]) -> list[tuple[str, object]]:
    """(sha256, pixels) per content, from the first copy that reads. Its photos fail only when no copy reads:
    the vector belongs to the content, so a photo whose own file is unreadable still gets it from a twin.

    Contents are decoded MAX_CONCURRENT_DECODES at a time (Pillow releases the GIL while it decodes): decoding
    one by one left a core idle for a quarter of a bulk reindex."""
    decoded = []
    workers = settings.VISUALSEARCH["MAX_CONCURRENT_DECODES"]
    results = ordered_map("decode", _first_readable, copies.values(), workers)
    for sha, (pixels, failures) in zip(copies, results):
        if pixels is None:
            errors.update(failures)
            continue
        decoded.append((sha, pixels))
        if failures:
            logger.warning("photos %s: file unreadable, content %s read from another copy", sorted(failures), sha[:12])
    return decoded


def _first_readable(images: Sequence[ProductImage]):
    """The pixels of the first image that decodes (None if none does), and why the ones before it failed."""
    failures = {}
    for image in images:
        try:
            return load_stored_image(image), failures
        except Exception as exc:  # one bad file must fail alone, never stop a batch or a reindex
            failures[image.pk] = f"cannot read image: {exc}"
    return None, failures


def load_stored_image(image: ProductImage):
    with image.image.open("rb") as stored:
        data = stored.read()
    return decode_image(data, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])


def _store(sha256s: Sequence[str], vectors: np.ndarray, extractor: FeatureExtractor) -> None:
    ImageEmbedding.objects.bulk_create(
        [
            ImageEmbedding(sha256=sha, extractor_id=extractor.id, dim=extractor.dim, vector=vector_to_bytes(v))
            for sha, v in zip(sha256s, vectors)
        ],
        ignore_conflicts=True,  # a concurrent worker stored the same content first: same vector, keep theirs
    )
