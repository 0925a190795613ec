"""Recognition data: the active visual vocabulary, stored local features of catalog photos, features of a query.

The vocabulary is trained on the catalog's own photos (never on queries) and stored as a file; its id is part of
the feature id every photo's features are stored under, so words of two vocabularies never meet. Features are
computed once per file content like vectors, in the same flows (on-commit sync, Celery, `reindex`), and kept in
the database so an index rebuild never decodes an image.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from PIL import Image

from catalog.models import ProductImage

from ..imaging import decode_image
from ..models import LocalFeatureSet, VisualVocabulary
from ..recognition import features, packing, vocabulary
from ..recognition.verification import PhotoFeatures
from .pools import ordered_map

logger = logging.getLogger(__name__)
_lock = threading.Lock()
_active: dict[str, Recognizer] = {}  # vocabulary id → loaded recognizer (at most one entry)
MIN_TRAINING_DESCRIPTORS = 500  # below this (a catalog of a few blank images) no vocabulary is trained
DESCRIPTORS_PER_WORD = 16  # small catalogs get a smaller vocabulary: ~16 training descriptors per word


def options() -> dict:
    return settings.VISUALSEARCH["RECOGNITION"]


def enabled() -> bool:
    return bool(options()["ENABLED"])


@dataclass(frozen=True)
class Recognizer:
    """A loaded vocabulary and the extraction settings that go with it."""

    vocabulary: vocabulary.Vocabulary
    vocabulary_id: str
    max_features: int  # per catalog photo (part of the feature id)
    catalog_side: int
    query_side: int
    query_max_features: int  # per query

    @property
    def feature_id(self) -> str:
        return f"rootsift{self.max_features}x{self.catalog_side}-{self.vocabulary_id}"

    def query_features(self, image: Image.Image, assignments: int, long_side: int | None = None) -> PhotoFeatures:
        """A query's features: each feature under its ``assignments`` nearest words (rows repeated per word, each
        with the signature relative to that word), searching candidates with the nearest word only."""
        grey = features.greyscale(image, long_side or self.query_side)
        local = features.extract(grey, max_features=self.query_max_features)
        words = self.vocabulary.assign_multiple(local.descriptors, max(1, assignments))
        first = words[:, 0] if len(words) else np.empty(0, np.int64)
        rows, order = np.nonzero(words >= 0)
        by_rank = np.lexsort((rows, order))  # all nearest words first, then all second nearest, ...
        rows, chosen = rows[by_rank], words[rows[by_rank], order[by_rank]]
        signatures = self.vocabulary.signatures(local.descriptors[rows], chosen)
        return PhotoFeatures(local.keypoints[rows], chosen, signatures, local.width, local.height, first)

    def photo_features(self, image: Image.Image, long_side: int) -> PhotoFeatures:
        local = features.extract(features.greyscale(image, long_side), max_features=self.max_features)
        words = self.vocabulary.assign(local.descriptors)
        signatures = self.vocabulary.signatures(local.descriptors, words)
        return PhotoFeatures(local.keypoints, words, signatures, local.width, local.height)


def query_assignments(recognizer: Recognizer) -> int:
    """Words per query feature: several only for large vocabularies, whose fine cells split one feature's views;
    in a small one the neighbouring words are far apart and only add false correspondences (grocery, 1,369 words:
    recall@1 0.767 → 0.749 with 3; a 38k-word vocabulary on the same photos: 0.748 → 0.776)."""
    opts = options()
    return opts["QUERY_ASSIGNMENTS"] if recognizer.vocabulary.size >= opts["MULTIPLE_ASSIGNMENT_WORDS"] else 1


def active_recognizer() -> Recognizer | None:
    """The recognizer of the active vocabulary (loaded once per process and vocabulary), or None."""
    if not enabled():
        return None
    row = VisualVocabulary.objects.filter(is_active=True).values_list("vocabulary_id", "file").first()
    if row is None:
        return None
    vocabulary_id, name = row
    recognizer = _active.get(vocabulary_id)
    if recognizer is None:
        with _lock:
            recognizer = _active.get(vocabulary_id) or _load(vocabulary_id, name)
            _active.clear()
            _active[vocabulary_id] = recognizer
    return recognizer


def newest_recognizer() -> Recognizer | None:
    """The recognizer of the newest trained vocabulary, active or not (what the next index build uses)."""
    if not enabled():
        return None
    row = VisualVocabulary.objects.order_by("-created_at", "-pk").values_list("vocabulary_id", "file").first()
    if row is None:
        return None
    active = _active.get(row[0])
    return active or _load(*row)


def _load(vocabulary_id: str, name: str) -> Recognizer:
    with default_storage.open(name, "rb") as stored:
        loaded = vocabulary.Vocabulary.from_bytes(stored.read())
    if loaded.id != vocabulary_id:
        raise ValueError(f"vocabulary file {name} holds {loaded.id}, not {vocabulary_id}: it was changed")
    return _recognizer(loaded)


def _recognizer(loaded: vocabulary.Vocabulary) -> Recognizer:
    opts = options()
    return Recognizer(loaded, loaded.id, opts["MAX_FEATURES"], opts["CATALOG_LONG_SIDE"], opts["QUERY_LONG_SIDE"],
                      opts["QUERY_FEATURES"])


# --- training -------------------------------------------------------------------------------------------------------


def train_vocabulary(
    *, words: int | None = None, max_photos: int | None = None, seed: int = 0, activate: bool = True,
    photos: Sequence[ProductImage] | None = None, progress: Callable[[int], None] = lambda n: None,
) -> VisualVocabulary | None:
    """Train a vocabulary on (a deterministic sample of) the catalog's photos — or on ``photos`` (`evaluate`
    trains on its dataset's gallery only); None if they have too few features.

    ``words`` defaults to the configured size, reduced for small catalogs (~16 training descriptors per word):
    a 15-product demo gets a few hundred words, a large catalog the full 65,536.
    """
    opts = options()
    photos = _training_sample(max_photos or opts["TRAINING_PHOTOS"], photos)
    descriptors = _training_descriptors(photos, opts, progress)
    if len(descriptors) < MIN_TRAINING_DESCRIPTORS:
        logger.warning("not training a vocabulary: %d photos gave only %d features", len(photos), len(descriptors))
        return None
    size = words or int(min(opts["WORDS"], max(64, len(descriptors) // DESCRIPTORS_PER_WORD)))
    trained = vocabulary.train(descriptors, words=size, seed=seed)
    row = VisualVocabulary.objects.filter(vocabulary_id=trained.id).first()
    if row is None:
        name = default_storage.save(f"visualsearch/vocabularies/{trained.id}.npz", ContentFile(trained.to_bytes()))
        row = VisualVocabulary.objects.create(vocabulary_id=trained.id, file=name, words=trained.size,
                                              photos=len(photos), descriptors=len(descriptors))
    if activate:
        activate_vocabulary(row)
    return row


def activate_vocabulary(row: VisualVocabulary) -> None:
    activate(row.vocabulary_id)
    row.is_active = True


def activate(vocabulary_id: str) -> None:
    """Make this vocabulary the one searches and new photos use (only after an index holds its words)."""
    with transaction.atomic():
        VisualVocabulary.objects.exclude(vocabulary_id=vocabulary_id).filter(is_active=True).update(is_active=False)
        VisualVocabulary.objects.filter(vocabulary_id=vocabulary_id).update(is_active=True)


def _training_sample(limit: int, photos: Sequence[ProductImage] | None = None) -> list[ProductImage]:
    """One photo per distinct content, spread evenly over the catalog (by content hash: stable, unbiased)."""
    if photos is None:
        photos = ProductImage.objects.order_by("pk")
    chosen: dict[str, ProductImage] = {}
    for photo in photos:
        chosen.setdefault(photo.sha256, photo)
    shas = sorted(chosen)
    if len(shas) > limit:
        shas = [shas[i] for i in np.linspace(0, len(shas) - 1, limit).astype(int)]
    return [chosen[sha] for sha in shas]


def _training_descriptors(photos: Sequence[ProductImage], opts: dict, progress) -> np.ndarray:
    def descriptors_of(photo: ProductImage) -> np.ndarray | None:
        try:
            local = features.extract(features.greyscale(load_for_features(photo, opts["CATALOG_LONG_SIDE"]),
                                                        opts["CATALOG_LONG_SIDE"]), max_features=opts["MAX_FEATURES"])
            return local.descriptors
        except Exception as exc:  # an unreadable photo is left out of training, never stops it
            logger.warning("vocabulary training skips photo %s: %s", photo.pk, exc)
            return None
        finally:
            progress(1)

    parts = [found for found in analysed_in_parallel(descriptors_of, photos) if found is not None]
    descriptors = np.concatenate(parts) if parts else np.empty((0, 128), np.float32)
    cap = opts["TRAINING_DESCRIPTORS"]
    if len(descriptors) > cap:
        rows = np.random.default_rng(0).choice(len(descriptors), cap, replace=False)
        descriptors = descriptors[np.sort(rows)]
    return descriptors


def analysed_in_parallel(analyse: Callable, items: Sequence, workers: int | None = None) -> Iterator:
    """``analyse(item)`` for each item, in order, ``ANALYSIS_WORKERS`` photos at a time (bulk paths only).

    One photo per core with OpenCV single-threaded meanwhile: OpenCV's own threads speed one SIFT up only ~1.4×
    on 2 cores (its first octave and the keypoint filtering run on one thread), two photos at once ~1.8×. Pixels
    and features of at most ``workers`` photos are in flight, not the whole batch's.
    """
    workers = options()["ANALYSIS_WORKERS"] if workers is None else workers
    if workers <= 1 or len(items) <= 1:
        yield from map(analyse, items)
        return
    with _opencv_single_threaded():
        yield from ordered_map("sift", analyse, items, workers)


_opencv_threads = {"users": 0, "before": 0}
_opencv_lock = threading.Lock()


@contextmanager
def _opencv_single_threaded():
    """OpenCV's thread count is process-wide: the first bulk analysis sets it to 1, the last one out restores it."""
    with _opencv_lock:
        if not _opencv_threads["users"]:
            _opencv_threads["before"] = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _opencv_threads["users"] += 1
    try:
        yield
    finally:
        with _opencv_lock:
            _opencv_threads["users"] -= 1
            if not _opencv_threads["users"]:
                cv2.setNumThreads(_opencv_threads["before"])


def load_for_features(photo: ProductImage, long_side: int) -> Image.Image:
    """A stored photo decoded large enough for local features (reduced decode down to about ``long_side``)."""
    with photo.image.open("rb") as stored:
        data = stored.read()
    return decode_image(data, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"], long_side=long_side)


# --- stored features ------------------------------------------------------------------------------------------------


def store_features(photos: Sequence[ProductImage], recognizer: Recognizer, *, workers: int = 1) -> dict[int, str]:
    """Compute and store features for photos whose content has none under the recognizer's feature id.

    ``workers`` > 1 analyses that many contents at once (bulk paths: see ``analysed_in_parallel``).
    Returns {photo id: reason} for photos whose file could not be analysed: they keep their global vector.
    """
    photos = [p for p in photos if p.sha256]
    have = set(LocalFeatureSet.objects.filter(feature_id=recognizer.feature_id, sha256__in={p.sha256 for p in photos})
               .values_list("sha256", flat=True))
    copies: dict[str, list[ProductImage]] = {}
    for photo in photos:
        if photo.sha256 not in have:
            copies.setdefault(photo.sha256, []).append(photo)
    errors, rows = {}, []
    analyse = lambda same_content: _analyse_content(same_content, recognizer)  # noqa: E731
    for sha, (found, failed) in zip(copies, analysed_in_parallel(analyse, list(copies.values()), workers)):
        if found is None:
            errors.update(failed)
        else:
            rows.append(LocalFeatureSet(sha256=sha, feature_id=recognizer.feature_id, keypoints=len(found),
                                        data=packing.pack(found)))
    LocalFeatureSet.objects.bulk_create(rows, ignore_conflicts=True)
    return errors


def _analyse_content(copies: Sequence[ProductImage], recognizer: Recognizer) -> tuple[PhotoFeatures | None, dict]:
    """Features of one content from the first of its photos whose file can be read (one bad copy fails alone)."""
    failed = {}
    for photo in copies:
        try:
            image = load_for_features(photo, recognizer.catalog_side)
            return recognizer.photo_features(image, recognizer.catalog_side), failed
        except Exception as exc:
            failed[photo.pk] = f"local features failed: {exc}"
    return None, failed


def photos_without_features(feature_id: str):
    stored = LocalFeatureSet.objects.filter(feature_id=feature_id).values("sha256")
    return ProductImage.objects.exclude(sha256__in=stored)


def stored_words(sha256s: Iterable[str], feature_id: str) -> dict[str, np.ndarray]:
    rows = LocalFeatureSet.objects.filter(feature_id=feature_id, sha256__in=set(sha256s))
    return {sha: packing.words_of(data) for sha, data in rows.values_list("sha256", "data")}


class _FeatureCache:
    """Unpacked features of recently verified photos: popular products are verified again and again."""

    def __init__(self, size: int) -> None:
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], PhotoFeatures]:
        with self.lock:
            found = {key: self.items[key] for key in keys if key in self.items}
            for key in found:
                self.items.move_to_end(key)
        return found

    def put_many(self, found: dict[tuple[str, str], PhotoFeatures]) -> None:
        with self.lock:
            self.items.update(found)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_cache = _FeatureCache(4096)


def stored_features(sha256s: Iterable[str], feature_id: str) -> dict[str, PhotoFeatures]:
    keys = {(sha, feature_id) for sha in sha256s}
    found = _cache.get_many(keys)
    missing = {sha for sha, _ in keys - found.keys()}
    if missing:
        rows = LocalFeatureSet.objects.filter(feature_id=feature_id, sha256__in=missing).values_list("sha256", "data")
        loaded = {(sha, feature_id): packing.unpack(data) for sha, data in rows}
        _cache.put_many(loaded)
        found.update(loaded)
    return {sha: features_ for (sha, _), features_ in found.items()}
