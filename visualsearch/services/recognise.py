"""The recognition stage of a search: shortlist candidates from both indexes, verify them, decide "exact".

Candidates are the union of the global kNN's best products and the visual-word index's best photos (a global
vector alone misses many real shopper photos: its top 50 holds the right product only ~78 % of the time). Each
candidate photo is verified against the query with its stored keypoints; a product is an **exact** match when its
best photo verifies with enough inliers, clearly more than any other product (products that share artwork — a
brand's pack design, a series logo — can share dozens of inliers) and over a real part of the photo.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from catalog.models import ProductImage

from ..backends.base import SearchFilters, SearchHit, VectorIndex
from ..recognition.verification import (
    MIN_CORRESPONDENCES, NOT_VERIFIED, PhotoFeatures, Verification, correspondences_many, inlier_bounds, verify,
)
from . import recognition
from .embedding import stored_vectors
from .timing import timed

# Calibrated with `manage.py evaluate --report` on the dev sets (README): at these values every "exact" label on
# UKBench and 99.4 % on grocery-packages is the right product.
EXACT_MIN_INLIERS = 20
EXACT_MARGIN = 2.0  # the best product's inliers over the runner-up's
EXACT_MIN_COVERAGE = 0.02  # share of the catalog photo spanned by the inliers
# Similar results rank convincingly verified ones first (see ``convincing``), each group by cosine +
# log(1 + inliers) / 6 (a few inliers still say something).
FUSION_WEIGHT = 1 / 6

# The kNN runs here while the word search runs in the request's thread: on Elasticsearch they are two requests
# the cluster serves in parallel (~15–20 ms each at 10k photos), in process they are numpy that releases the GIL.
# (A backend's ``search`` therefore must not rely on the request thread's database connection; none does.)
_knn_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="visualsearch-knn")


@dataclass(frozen=True)
class Candidate:
    """One product after verification: its best photo by the verified inliers (else by global score)."""

    product_id: int
    image_id: int
    cosine: float
    verification: Verification = NOT_VERIFIED
    exact: bool = False

    @property
    def rank_key(self) -> tuple:
        if self.exact:
            return (2, self.verification.inliers, self.cosine)
        # A product whose photo verified convincingly ranks above one that merely looks alike: a CNN vector
        # scores a similar-looking pack of another brand higher than the right pack seen on a cluttered shelf.
        fused = self.cosine + FUSION_WEIGHT * math.log1p(self.verification.inliers)
        return (1 if convincing(self.verification) else 0, fused, 0)


@dataclass
class Shortlist:
    candidates: list[Candidate]  # one per product, best first
    stages: dict[str, set[int]] = field(default_factory=dict)  # product ids per stage, for `evaluate`
    # Every verified candidate *photo*: cosine + FUSION_WEIGHT × log(1 + inliers); an image-level ranking for
    # measures that rank photos, not products (UKBench's N-S in `evaluate`).
    photo_scores: dict[int, float] = field(default_factory=dict)


def recognise(
    query: PhotoFeatures, vector: np.ndarray, *, index: VectorIndex, recognizer: recognition.Recognizer,
    extractor_id: str, filters: SearchFilters, timings: dict[str, float],
) -> Shortlist:
    """Stage 1 (candidates) and stage 2 (verification) for one query; products ranked exact-first."""
    opts = recognition.options()
    global_limit, word_limit = _candidate_limits(index, opts)
    global_search = _knn_threads.submit(_global_hits, index, vector, global_limit, filters, timings)
    with timed(timings, "candidates_words"):
        word_hits = _word_hits(index, query, word_limit, opts, filters)
    global_hits = global_search.result()
    photos = {hit.image_id: hit for hit in [*word_hits, *global_hits]}
    photo_scores: dict[int, float] = {}
    with timed(timings, "verify"):
        candidates = _verified(query, vector, photos, recognizer, extractor_id, photo_scores)
    stages = {
        "global": {hit.product_id for hit in global_hits},
        "words": {hit.product_id for hit in word_hits},
        "union": {hit.product_id for hit in photos.values()},
        "verified": {c.product_id for c in candidates if c.verification.verified},
    }
    return Shortlist(candidates, stages, photo_scores)


def _candidate_limits(index: VectorIndex, opts: dict) -> tuple[int, int]:
    """(products from the kNN, photos from the words). A small catalog is verified exhaustively — every photo that
    shares a word with the query — since a shortlist could only lose the right product there, and early exit
    keeps it cheap; a large one gets the configured shortlist."""
    photos = index.count()
    if photos <= opts["EXHAUSTIVE_BELOW"]:
        return max(photos, 1), max(photos, 1)
    return opts["GLOBAL_CANDIDATES"], opts["WORD_CANDIDATES"]


def _global_hits(index: VectorIndex, vector, limit: int, filters: SearchFilters, timings: dict) -> list[SearchHit]:
    with timed(timings, "candidates_global"):
        return index.search(vector, limit=limit, threshold=None, filters=filters)


def _word_hits(index: VectorIndex, query: PhotoFeatures, limit: int, opts: dict,
               filters: SearchFilters) -> list[SearchHit]:
    words = query_words(query.words if query.search_words is None else query.search_words, opts["QUERY_WORDS"])
    if not len(words):
        return []
    try:
        return index.search_words(words, limit=limit, filters=filters)
    except NotImplementedError:
        return []


def query_words(words: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` distinct words, in the order of the query's features (strongest first, as SIFT keeps
    them): the same on every backend, and under Elasticsearch's boolean clause limit."""
    _, first = np.unique(np.asarray(words, dtype=np.int64), return_index=True)
    return np.asarray(words, dtype=np.int64)[np.sort(first)][:limit]


def _verified(query, vector, photos: dict[int, SearchHit], recognizer, extractor_id: str,
              photo_scores: dict[int, float]) -> list[Candidate]:
    rows = ProductImage.objects.filter(pk__in=photos).values_list("pk", "sha256", "product_id")
    shas = {pk: sha for pk, sha, _ in rows}
    features = recognition.stored_features(shas.values(), recognizer.feature_id)
    cosines = _cosines(vector, photos, shas, extractor_id)
    verdicts = _verify_until_clear(query, {pk: features.get(sha) for pk, sha in shas.items()},
                                   {pk: hit.product_id for pk, hit in photos.items()})
    best: dict[int, Candidate] = {}
    for pk in shas:
        verdict = verdicts.get(pk, NOT_VERIFIED)
        product_id = photos[pk].product_id
        candidate = Candidate(product_id, pk, cosines.get(pk, -1.0), verdict)
        photo_scores[pk] = candidate.cosine + FUSION_WEIGHT * math.log1p(verdict.inliers)
        current = best.get(product_id)
        if current is None or _better_photo(candidate, current):
            best[product_id] = candidate
    return _decide(list(best.values()))


def _verify_until_clear(query: PhotoFeatures, features: dict[int, PhotoFeatures | None],
                        products: dict[int, int]) -> dict[int, Verification]:
    """Verify photos in decreasing order of their possible inliers and stop at a clear winner: once the best
    product's inliers exceed EXACT_MARGIN × every bound left, no unverified photo could change "exact" (their
    inliers then only nudge the order of similar results, which stay ranked by cosine)."""
    stored = [pk for pk, f in features.items() if f is not None]
    found = correspondences_many(query, [features[pk] for pk in stored])
    pairs = dict(zip(stored, found))
    bounds = dict(zip(stored, inlier_bounds(query, found)))
    order = sorted(pairs, key=lambda pk: (-bounds[pk], pk))
    verdicts: dict[int, Verification] = {}
    best: dict[int, int] = {}  # product → inliers
    for position, pk in enumerate(order):
        bound = bounds[pk]
        if bound < MIN_CORRESPONDENCES:
            break  # sorted: no later photo can verify either
        leader = max(best.values(), default=0)
        if leader >= EXACT_MIN_INLIERS and leader >= EXACT_MARGIN * bound and _leader_is_clear(best):
            break
        verdicts[pk] = verify(query, features[pk], pairs=pairs[pk])
        best[products[pk]] = max(best.get(products[pk], 0), verdicts[pk].inliers)
    return verdicts


def _leader_is_clear(best: dict[int, int]) -> bool:
    ranked = sorted(best.values(), reverse=True)
    return len(ranked) < 2 or ranked[0] >= EXACT_MARGIN * ranked[1]


def _better_photo(new: Candidate, old: Candidate) -> bool:
    return (new.verification.inliers, new.cosine, -new.image_id) > (old.verification.inliers, old.cosine, -old.image_id)


def _cosines(vector, photos: dict[int, SearchHit], shas: dict[int, str], extractor_id: str) -> dict[int, float]:
    """The global cosine of each candidate photo (word candidates have none from their search)."""
    vectors = stored_vectors(list(set(shas.values())), extractor_id)
    query = np.asarray(vector, dtype=np.float32)
    return {pk: float(vectors[sha] @ query) for pk, sha in shas.items() if sha in vectors}


def convincing(verification: Verification) -> bool:
    """Enough inliers over a real part of the photo: what "exact" asks, short of the margin over the next product."""
    v = verification
    return v.verified and v.inliers >= EXACT_MIN_INLIERS and v.coverage >= EXACT_MIN_COVERAGE


def _decide(candidates: list[Candidate]) -> list[Candidate]:
    """Label exact matches (enough inliers, a clear margin over the next product, a real area) and rank."""
    by_inliers = sorted(candidates, key=lambda c: -c.verification.inliers)
    runner_up = by_inliers[1].verification.inliers if len(by_inliers) > 1 else 0
    decided = []
    for position, candidate in enumerate(by_inliers):
        v = candidate.verification
        exact = position == 0 and convincing(v) and v.inliers >= EXACT_MARGIN * runner_up
        decided.append(Candidate(candidate.product_id, candidate.image_id, candidate.cosine, v, exact))
    return sorted(decided, key=lambda c: (c.rank_key, -c.image_id), reverse=True)

