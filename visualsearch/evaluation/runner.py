"""Import a dataset into a sandbox, index it, and run every query through the search service the API uses.

Returns raw measurements (per-query rankings and timings); :mod:`.summary` turns them into numbers.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Avg, Count
from django.db.models.functions import Length
from django.test import override_settings
from PIL import Image

from catalog.models import Product, ProductImage

from .. import services
from ..backends.base import IndexEntry, VectorIndex
from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected
from ..models import LocalFeatureSet
from ..registry import get_extractor, get_index
from ..services import recognition
from ..services.embedding import embed_images
from ..services.indexing import ensure_loaded
from ..services.recognise import _candidate_limits as candidate_limits
from ..services.search import EXACT, SearchResult
from . import distractors as distracting
from . import exact
from .dataset import BOTH, Dataset, Row
from .metrics import first_relevant_rank
from .sandbox import new_namespace, sandbox

# Products asked for per query: every product of the dataset for mAP and the threshold curves, up to a size a search
# can return. Distractors do not raise it: a query's product pushed past it counts as not found, and the latency
# stays that of a search of this size, not of 10,000 results.
MAX_RESULTS = 1000
STAGE_NAMES = ("global", "words", "union", "verified")  # recognition's candidate stages, in search order

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
    distractors: Sequence[distracting.Distractor] = ()  # extra gallery photos, see distractors.find_distractors


@dataclass
class Verified:
    """What recognition's verification said about one query, for calibrating "exact" after the fact: the
    shortlist's product with the most inliers, and the inliers of the product after it."""

    inliers: int
    coverage: float
    verified: bool  # a plausible homography
    right: bool  # it is the query's product
    runner_up_inliers: int


@dataclass
class QueryOutcome:
    rank: int  # of the query's product, 1-based; 0 = not returned
    scores: np.ndarray  # one per returned product, best first
    matches: np.ndarray  # bool, same order: is this the query's product
    timings_ms: dict[str, float]
    relpath: str = ""
    # Recognition (empty / False / None when it did not run): whether each candidate stage found the query's
    # product, whether the first result was labelled exact, and the verification facts behind that label.
    stages: dict[str, bool] = field(default_factory=dict)
    exact: bool = False
    verified: Verified | None = None
    photo_scores: dict[int, float] = field(default_factory=dict, repr=False)  # image id → fused score


@dataclass
class RecognitionStats:
    """The recognition stage of an evaluation: whether it ran (and why not), its vocabulary and indexing cost."""

    ran: bool = False
    note: str = ""
    vocabulary_words: int | None = None
    vocabulary_photos: int | None = None  # gallery photos it was trained on
    vocabulary_seconds: float | None = None
    photos: int = 0  # photos analysed for local features (gallery and distractors)
    failed: int = 0
    seconds: float | None = None
    mean_bytes: float | None = None  # stored per photo (LocalFeatureSet rows)
    mean_keypoints: float | None = None
    global_candidates: int | None = None  # N products and M photos of the candidate stages, as searches use them
    word_candidates: int | None = None
    exhaustive: bool = False  # the index is small enough for every photo to be a candidate


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
    ns_score: float | None = None  # only when every row is 'both'; with recognition, from its photo ranking
    ns_score_global: float | None = None  # the same from the global vectors alone
    ann_recall: float | None = None  # only for approximate indexes
    recognition: RecognitionStats = field(default_factory=RecognitionStats)
    distractors: int = 0  # distractor photos indexed
    distractors_skipped: int = 0  # unreadable, or a copy of one of the dataset's photos
    seconds: float = 0.0


@dataclass
class _Catalog:
    """The dataset as imported: product id per group, stored photo per indexed path, and the distractors."""

    namespace: str
    products: dict[str, int]
    photos: dict[str, ProductImage]
    distractors: dict[str, ProductImage] = field(default_factory=dict)  # by Distractor.key
    distractors_skipped: int = 0

    @property
    def gallery(self) -> list[ProductImage]:
        return [*self.photos.values(), *self.distractors.values()]


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
    extractor = get_extractor()
    extractor.embed_one(Image.new("RGB", (224, 224)))  # build the CNN now: seconds that are not indexing
    import_started = time.perf_counter()
    catalog = _import(dataset, namespace, options)
    import_seconds = time.perf_counter() - import_started
    with ExitStack() as scope:
        started = time.perf_counter()
        entries, embedded, failed = _embed(catalog, extractor, options)
        embed_seconds = time.perf_counter() - started
        stats, words = _recognition(catalog, entries, options)
        if not stats.ran and recognition.enabled():
            # No vocabulary of the dataset: searches must not use the shop's (its words are not in this index).
            scope.enter_context(_recognition_off())
        entries = [dataclasses.replace(e, words=words.get(e.image_id)) for e in entries] if words else entries
        index = get_index()  # after any settings change above, which drops cached indexes
        indexing = _index(entries, embedded, failed, index, embed_seconds)
        if stats.ran:  # the shortlist sizes searches use with this index (a small one is verified exhaustively)
            opts = recognition.options()
            stats.global_candidates, stats.word_candidates = candidate_limits(index, opts)
            stats.exhaustive = (stats.global_candidates, stats.word_candidates) != (
                opts["GLOBAL_CANDIDATES"], opts["WORD_CANDIDATES"])
        result = EvaluationResult(
            dataset=str(dataset.root), extractor_id=extractor.id, backend=type(index).__name__, k=options.k,
            threshold=float(settings.VISUALSEARCH["SEARCH_THRESHOLD"]), products=len(catalog.products),
            indexed=len(indexing.entries), embedded=indexing.embedded, failed_images=indexing.failed,
            import_seconds=import_seconds, index_seconds=indexing.seconds,
            search_limit=min(max(options.k, len(catalog.products)), MAX_RESULTS),
            recognition=stats, distractors_skipped=catalog.distractors_skipped,
        )  # fmt: skip
        indexed_ids = {entry.image_id for entry in indexing.entries}
        result.distractors = sum(photo.pk in indexed_ids for photo in catalog.distractors.values())
        queries = dataset.queries[: options.limit]
        result.queries, result.failed_queries = _search_all(queries, catalog, result.search_limit, options.progress)
        if dataset.all_both:
            _ns_scores(result, queries, dataset, catalog, indexing)
        if not index.exact:
            result.ann_recall = _ann_recall(queries, catalog, indexing, extractor, index, options)
    return result


def _recognition_off():
    return override_settings(VISUALSEARCH={
        **settings.VISUALSEARCH, "RECOGNITION": {**settings.VISUALSEARCH["RECOGNITION"], "ENABLED": False},
    })  # fmt: skip


# --- import -------------------------------------------------------------------------------------------------------


def _import(dataset: Dataset, namespace: str, options: Options) -> _Catalog:
    """One product per group, one photo per indexed row; signals queue index work for a commit that never comes."""
    products = {
        group: Product.objects.create(relation_id=f"{namespace}/{group}", title=group, category=namespace).pk
        for group in dataset.groups
    }
    photos = {}
    with options.progress("importing", len(dataset.gallery)) as bar:
        for row in dataset.gallery:
            photos[row.relpath] = _save_photo(products[row.group], row.path.name, row.path.read_bytes(), row.line)
            bar.update(1)
    catalog = _Catalog(namespace, products, photos)
    if options.distractors:
        _import_distractors(catalog, options)
    return catalog


def _save_photo(product_id: int, name: str, data: bytes, position: int = 0) -> ProductImage:
    photo = ProductImage(product_id=product_id, position=position)
    photo.image.save(name, ContentFile(data), save=False)
    photo.save()
    photo.image.close()  # save() hashes the file and leaves it open: thousands of photos would run out of fds
    return photo


def _import_distractors(catalog: _Catalog, options: Options) -> None:
    """Each distractor a product of its own in the evaluation's category, so it can only take a query's place.

    A distractor with the very content of one of the dataset's photos (and its copies) is left out: it would be
    the query's product under another name."""
    dataset_shas = {photo.sha256 for photo in catalog.photos.values()}
    duplicates: set[str] = set()
    max_pixels = settings.VISUALSEARCH["MAX_PIXELS"]
    with options.progress("distractors", len(options.distractors)) as bar:
        for n, distractor in enumerate(options.distractors):
            bar.update(1)
            if distractor.relpath in duplicates:
                catalog.distractors_skipped += 1
                continue
            try:
                data = distracting.content(distractor, max_pixels=max_pixels)
            except (OSError, ImageRejected):
                catalog.distractors_skipped += 1
                continue
            if hashlib.sha256(data).hexdigest() in dataset_shas:
                duplicates.add(distractor.relpath)
                catalog.distractors_skipped += 1
                continue
            product = Product.objects.create(relation_id=f"{catalog.namespace}:distractor/{n}",
                                             title=distractor.name, category=catalog.namespace)  # fmt: skip
            catalog.distractors[distractor.key] = _save_photo(product.pk, distractor.name, data)


# --- indexing -----------------------------------------------------------------------------------------------------


def _embed(catalog: _Catalog, extractor: FeatureExtractor, options: Options) -> tuple[list[IndexEntry], int, int]:
    """Decode, embed and store the vectors of the dataset's photos (and distractors), and only those.

    Not rebuild_index / sync_images: inside the transaction they would also embed and mark the shop's own photos
    and bump the shared IndexGeneration row, holding its lock (and stalling live indexing) until the rollback.
    """
    photos = catalog.gallery
    entries, embedded, failed = [], 0, 0
    with options.progress("embedding", len(photos)) as bar:
        for start in range(0, len(photos), options.batch_size):
            batch = photos[start : start + options.batch_size]
            outcome = embed_images(batch, extractor)
            embedded, failed = embedded + outcome.computed, failed + len(outcome.errors)
            entries += [_entry(p, outcome.vectors[p.sha256], catalog.namespace) for p in batch
                        if p.sha256 in outcome.vectors]  # fmt: skip
            bar.update(len(batch))
    return entries, embedded, failed


def _recognition(
    catalog: _Catalog, entries: Sequence[IndexEntry], options: Options
) -> tuple[RecognitionStats, dict[int, np.ndarray]]:
    """A vocabulary trained on the evaluation catalog — the dataset's gallery photos and the distractors, never
    the queries (unless they are gallery photos too, as 'both' rows) — as `reindex` trains one on a shop's
    catalog, made active inside the sandbox; then the local features of every indexed photo. Returns the words
    per image id.

    Distractors take part because they stand for the rest of a large catalog: a vocabulary of a few dozen photos
    (~1,400 words for 31) cannot tell 1,500 others apart (on grocery-packages with 1,500 UKBench distractors the
    visual-word stage found 11 % of the products, against 99 % without them)."""
    if not recognition.enabled():
        return RecognitionStats(note="off: disabled in settings (VISUALSEARCH_RECOGNITION)"), {}
    stats = RecognitionStats()
    gallery = catalog.gallery  # train_vocabulary samples TRAINING_PHOTOS of them, evenly by content
    started = time.perf_counter()
    with options.progress("vocabulary", len(gallery)) as bar:
        row = recognition.train_vocabulary(photos=gallery, activate=False, progress=bar.update)
    if row is not None and not default_storage.exists(row.file.name):
        # The shop has this very vocabulary (trained on the same photos): its file is in the shop's storage, not in
        # the sandbox's. Another seed gives the evaluation one of its own.
        row = recognition.train_vocabulary(photos=gallery, activate=False, seed=1)
    if row is not None:
        recognition.activate_vocabulary(row)  # inside the sandbox: rolled back with everything else
    stats.vocabulary_seconds = time.perf_counter() - started
    recognizer = recognition.active_recognizer() if row is not None else None
    if recognizer is None:
        stats.note = "off: the gallery photos have too few local features to train a vocabulary"
        return stats, {}
    stats.ran, stats.vocabulary_words, stats.vocabulary_photos = True, row.words, row.photos
    indexed = {entry.image_id for entry in entries}
    photos = [photo for photo in catalog.gallery if photo.pk in indexed]
    started = time.perf_counter()
    with options.progress("local features", len(photos)) as bar:
        for start in range(0, len(photos), options.batch_size):
            batch = photos[start : start + options.batch_size]
            stats.failed += len(recognition.store_features(batch, recognizer))
            bar.update(len(batch))
    stats.seconds, stats.photos = time.perf_counter() - started, len(photos)
    stored = LocalFeatureSet.objects.filter(feature_id=recognizer.feature_id).aggregate(
        bytes=Avg(Length("data")), keypoints=Avg("keypoints"), rows=Count("pk"))
    if stored["rows"]:
        stats.mean_bytes, stats.mean_keypoints = float(stored["bytes"]), float(stored["keypoints"])
    words: dict[int, np.ndarray] = {}
    for start in range(0, len(photos), 1000):
        batch = photos[start : start + 1000]
        found = recognition.stored_words((p.sha256 for p in batch), recognizer.feature_id)
        words.update({p.pk: found[p.sha256] for p in batch if p.sha256 in found})
    return stats, words


def _index(entries: list[IndexEntry], embedded: int, failed: int, index: VectorIndex, seconds: float) -> _Indexing:
    started = time.perf_counter()
    index.rebuild(entries, expected_count=len(entries))
    index.refresh()
    # An in-process index reloads itself from all stored vectors before its first search (the service's freshness
    # check): do it now, so that no timed query pays for it. This brings in the shop's own vectors for the
    # extractor too (and the words of the active vocabulary, the dataset's); searches filter on the evaluation's
    # category, so they never rank them.
    ensure_loaded(index)
    return _Indexing(entries, embedded, failed, seconds + time.perf_counter() - started)


def _entry(photo: ProductImage, vector: np.ndarray, namespace: str) -> IndexEntry:
    return IndexEntry(photo.pk, photo.product_id, vector, category=namespace, is_active=True)


# --- searching ----------------------------------------------------------------------------------------------------


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
    outcome = QueryOutcome(first_relevant_rank(matches), scores, matches, dict(result.timings_ms), row.relpath)
    if result.stages:
        _recognition_facts(outcome, result, expected)
    return outcome


def _recognition_facts(outcome: QueryOutcome, result: SearchResult, expected: int) -> None:
    outcome.stages = {stage: expected in result.stages.get(stage, ()) for stage in STAGE_NAMES}
    outcome.exact = bool(result.matches) and result.matches[0].match == EXACT
    outcome.photo_scores = dict(result.photo_scores)
    by_inliers = sorted(result.shortlist, key=lambda c: -c.verification.inliers)  # stable, as the service decides
    if by_inliers:
        top = by_inliers[0].verification
        outcome.verified = Verified(
            inliers=int(top.inliers), coverage=float(top.coverage), verified=bool(top.verified),
            right=by_inliers[0].product_id == expected,
            runner_up_inliers=int(by_inliers[1].verification.inliers) if len(by_inliers) > 1 else 0,
        )  # fmt: skip


# --- image-level measures -----------------------------------------------------------------------------------------


def _ns_scores(result: EvaluationResult, queries: Sequence[Row], dataset: Dataset, catalog: _Catalog,
               indexing: _Indexing) -> None:  # fmt: skip
    """UKBench N-S over every indexed photo (distractors too: each its own group, so they can only take places)."""
    gallery = [(catalog.photos[row.relpath].pk, row.group) for row in dataset.gallery]
    gallery += [(photo.pk, f"\0distractor:{key}") for key, photo in catalog.distractors.items()]
    own = [catalog.photos[row.relpath].pk for row in queries]
    result.ns_score_global = exact.ns_score_of(gallery, own, indexing.entries)
    if result.recognition.ran:
        # Every photo by recognition's fused score: cosine + log(1 + inliers) / 6 for the candidates it verified,
        # the cosine alone for the rest. (Putting every candidate first instead would rank an unverified candidate
        # of another product above the query's own other views: 3.758 instead of 3.952 on ukbench-1000.)
        searched = {q.relpath: q.photo_scores for q in result.queries}
        fused = [searched.get(row.relpath, {}) for row in queries]
        result.ns_score = exact.ns_score_of(gallery, own, indexing.entries, fused=fused)
    else:
        result.ns_score = result.ns_score_global


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
