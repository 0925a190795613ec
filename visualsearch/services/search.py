"""Image → products. The one search path behind the API, the shopper page, the admin and `evaluate`."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import QuerySet
from PIL import Image, ImageOps

from catalog.models import Product, ProductImage

from ..backends.base import SearchFilters, SearchHit, VectorIndex
from ..extractors.base import FeatureExtractor
from ..imaging import DRAFT_MIN_SIDE, ImageRejected, decode_image
from ..recognition.verification import PhotoFeatures
from ..registry import get_extractor, get_index
from . import recognition
from .embedding import load_stored_image, stored_vectors
from .indexing import ensure_loaded
from .recognise import Candidate, recognise
from .timing import timed


class UnknownImage(LookupError):
    """``image_id`` names no photo (for shoppers: no photo of a product they may see)."""


class ImageUnavailable(ImageRejected):
    """The photo exists but cannot be searched with: it has no stored vector and its file cannot be read."""

    def __init__(self, image_id: int) -> None:
        super().__init__("image_unavailable", f"Image {image_id} has no stored vector and its file cannot be read.")


EXACT, SIMILAR = "exact", "similar"

# With recognition on, the CNN embeds the query while SIFT analyses it: both release the GIL (ONNX Runtime or
# TensorFlow, OpenCV, Pillow's resizes), and each alone leaves part of the cores idle (the resizes and SIFT's
# first octave run on one thread), so a search's latency is about the longer of the two, not their sum.
_embed_threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="visualsearch-embed")


@dataclass(frozen=True)
class ProductMatch:
    product: Product
    image: ProductImage
    score: float  # cosine similarity of the global vectors
    match: str = SIMILAR  # "exact": recognised as this very product by its local features
    inliers: int = 0  # verified local correspondences with ``image`` (0: not verified)


@dataclass(frozen=True)
class Box:
    """The part of the query photo that shows the product, as fractions of its (upright) width and height."""

    left: float
    top: float
    right: float
    bottom: float

    MIN_SIDE = 0.02  # a box thinner than 2 % of the photo holds too few pixels to search with
    FORMAT_ERROR = "Give four numbers: left,top,right,bottom as fractions 0–1 of the photo's width and height."
    RANGE_ERROR = "Need 0 <= left < right <= 1 and 0 <= top < bottom <= 1, each side at least 2 % of the photo."

    @classmethod
    def parse(cls, value) -> Box:
        """``"left,top,right,bottom"`` or four numbers; ValueError with a message for people otherwise."""
        parts = value.split(",") if isinstance(value, str) else value
        if not isinstance(parts, (list, tuple)) or len(parts) != 4:
            raise ValueError(cls.FORMAT_ERROR)
        try:
            left, top, right, bottom = (float(p) for p in parts)
        except (TypeError, ValueError):
            raise ValueError(cls.FORMAT_ERROR) from None
        if not all(math.isfinite(v) for v in (left, top, right, bottom)):
            raise ValueError(cls.FORMAT_ERROR)
        if not (0 <= left and right <= 1 and 0 <= top and bottom <= 1
                and right - left >= cls.MIN_SIDE and bottom - top >= cls.MIN_SIDE):
            raise ValueError(cls.RANGE_ERROR)
        return cls(left, top, right, bottom)

    def __str__(self) -> str:
        return ",".join(f"{v:.4g}" for v in (self.left, self.top, self.right, self.bottom))

    def crop(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        box = (round(self.left * w), round(self.top * h), round(self.right * w), round(self.bottom * h))
        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
            raise ImageRejected("box_too_small", "The box covers less than one pixel of the photo.")
        return image.crop(box)


@dataclass
class SearchResult:
    extractor_id: str
    matches: list[ProductMatch]
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, embed, search, assemble, total
    # Recognition internals for `evaluate` (empty when it did not run): the verified shortlist, one per product,
    # best first; product ids each stage found; fused scores of every verified photo.
    shortlist: list[Candidate] = field(default_factory=list)
    stages: dict[str, set[int]] = field(default_factory=dict)
    photo_scores: dict[int, float] = field(default_factory=dict)
    # When nothing passed the threshold: the nearest product anyway (for the report of searches that found
    # nothing close); None otherwise, or when the index is empty.
    nearest: SearchHit | None = None

    @property
    def took_ms(self) -> float:
        return self.timings_ms.get("total", 0.0)


@dataclass
class Query:
    """What a search compares with: the global vector, and the local features when recognition can run."""

    vector: np.ndarray
    features: PhotoFeatures | None = None
    # Local features of the photo flipped left-right, computed only if asked: selfie cameras and some apps mirror.
    mirrored: Callable[[], PhotoFeatures] | None = None
    # Local features at the full query size when ``features`` were computed smaller (the fast first pass).
    full_size: Callable[[], PhotoFeatures] | None = None


QueryBuilder = Callable[[FeatureExtractor, "recognition.Recognizer | None", dict], Query]


def decode_query(image_bytes: bytes) -> Image.Image:
    """An uploaded query photo, decoded at the size the search needs (larger when local features are computed).
    Decode once and pass the pixels on (``search_by_image(image=...)``) when the caller needs them too."""
    if recognition.enabled():
        return decode_image(image_bytes, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"],
                            long_side=recognition.options()["QUERY_LONG_SIDE"])
    return decode_image(image_bytes, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"], min_side=DRAFT_MIN_SIDE)


def search_by_image(
    *,
    image_bytes: bytes | None = None,
    image: Image.Image | None = None,
    image_id: int | None = None,
    limit: int = 20,
    offset: int = 0,
    threshold: float | None = None,
    category: str | None = None,
    exclude_image_ids: frozenset[int] = frozenset(),
    box: Box | None = None,
    **shopper_filters,
) -> SearchResult:
    """The most similar active products to a photo, one per product, best first; recognised products first.

    The photo is uploaded bytes, already decoded ``image`` pixels, or any stored photo by ``image_id`` (staff
    tools; shoppers go through ``more_like_this``), which is never returned as its own match. ``box`` limits an
    uploaded photo to the part that shows the product, for both stages. ``min_price``, ``max_price`` and
    ``in_stock_only`` (as ``category``) filter products before ranking.
    """
    if image_id is not None:
        photo = _photo(image_id, ProductImage.objects.all())
        query, exclude_image_ids = _stored_vector_of(photo), exclude_image_ids | {photo.pk}
    else:
        query = _uploaded_query(image_bytes, image, box)
    return _search(query, limit=limit, offset=offset, threshold=threshold, category=category,
                   exclude_image_ids=exclude_image_ids, **shopper_filters)  # fmt: skip


def more_like_this(
    *,
    image_id: int,
    limit: int = 20,
    offset: int = 0,
    threshold: float | None = None,
    category: str | None = None,
    exclude_product: bool = False,
    **shopper_filters,
) -> SearchResult:
    """A shopper's "more like this": products like one of a browsable product's photos, without that photo.

    Photo ids can be enumerated, so a photo of an inactive product is answered as unknown. ``exclude_product``
    also leaves out the photo's own product (asked from that product's page, it is no news).
    """
    photo = _photo(image_id, ProductImage.objects.filter(product__in=Product.objects.browsable()))
    excluded = {photo.pk}
    if exclude_product:
        excluded.update(ProductImage.objects.filter(product_id=photo.product_id).values_list("pk", flat=True))
    return _search(_stored_vector_of(photo), limit=limit, offset=offset, threshold=threshold, category=category,
                   exclude_image_ids=frozenset(excluded), **shopper_filters)  # fmt: skip


def _search(build: QueryBuilder, *, limit, offset, threshold, category, exclude_image_ids, min_price=None,
            max_price=None, in_stock_only=False) -> SearchResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    extractor = get_extractor()
    recognizer = recognition.active_recognizer()
    query = build(extractor, recognizer, timings)
    threshold = settings.VISUALSEARCH["SEARCH_THRESHOLD"] if threshold is None else threshold
    filters = SearchFilters(
        active_only=True, category=category or None, exclude_image_ids=exclude_image_ids,
        min_price=None if min_price is None else float(min_price),
        max_price=None if max_price is None else float(max_price), in_stock_only=in_stock_only,
    )
    index = ensure_loaded(get_index())
    shortlist = None
    if recognizer is not None and query.features is not None:
        shortlist = recognise(query.features, query.vector, index=index, recognizer=recognizer,
                              extractor_id=extractor.id, filters=filters, timings=timings)
        if query.full_size is not None and not any(c.exact for c in shortlist.candidates):
            # The fast pass recognised nothing for sure: the full-size analysis decides, as if there were no cascade.
            with timed(timings, "local_features_full"):
                full = query.full_size()
            shortlist = recognise(full, query.vector, index=index, recognizer=recognizer, extractor_id=extractor.id,
                                  filters=filters, timings=timings)
        if query.mirrored is not None and not shortlist.stages["verified"]:  # SIFT is not mirror-invariant
            with timed(timings, "local_features"):
                flipped = query.mirrored()
            retry = recognise(flipped, query.vector, index=index, recognizer=recognizer, extractor_id=extractor.id,
                              filters=filters, timings=timings)
            shortlist = retry if retry.stages["verified"] else shortlist
        with timed(timings, "search"):
            ranked = _recognised_first(shortlist.candidates, query.vector, index, filters, threshold, offset + limit)
        hits = ranked[offset : offset + limit]
    else:
        with timed(timings, "search"):
            hits = index.search(query.vector, limit=limit, offset=offset, threshold=threshold, filters=filters)
    with timed(timings, "assemble"):
        matches = load_matches(hits)
    nearest = None
    if not hits and offset == 0:  # one more kNN, only for searches that came back empty
        nearest = next(iter(index.search(query.vector, limit=1, threshold=None, filters=filters)), None)
    timings["total"] = (time.perf_counter() - started) * 1000
    if shortlist is None:
        return SearchResult(extractor.id, matches, timings, nearest=nearest)
    return SearchResult(extractor.id, matches, timings, shortlist.candidates, shortlist.stages, shortlist.photo_scores,
                        nearest)


def _recognised_first(candidates: list[Candidate], vector, index: VectorIndex, filters, threshold, wanted: int):
    """The verified shortlist (exact matches always; similar ones above the threshold), then the global ranking
    for the rest. Deterministic for a query, so pages never repeat or skip a product."""
    head = [c for c in candidates if c.exact or c.cosine >= threshold]
    seen = {c.product_id for c in head}
    ranked: list = [_hit(c) for c in head]
    if len(ranked) < wanted:
        more = index.search(vector, limit=wanted + len(seen), offset=0, threshold=threshold, filters=filters)
        ranked += [hit for hit in more if hit.product_id not in seen]
    return ranked[:wanted]


@dataclass(frozen=True)
class _RecognisedHit(SearchHit):
    match: str = SIMILAR
    inliers: int = 0


def _hit(candidate: Candidate) -> _RecognisedHit:
    return _RecognisedHit(candidate.product_id, candidate.image_id, candidate.cosine,
                          EXACT if candidate.exact else SIMILAR, candidate.verification.inliers)


def _uploaded_query(image_bytes: bytes | None, image: Image.Image | None, box: Box | None) -> QueryBuilder:
    def build(extractor: FeatureExtractor, recognizer, timings: dict) -> Query:
        pixels = image
        if pixels is None:
            with timed(timings, "decode"):
                pixels = decode_query(image_bytes or b"")
        if box is not None:
            pixels = box.crop(pixels)
        if recognizer is None:
            return Query(_embed(extractor, pixels, timings))
        pixels.load()  # decoded once, before two threads read it
        embedding = _embed_threads.submit(_embed, extractor, pixels, timings)
        assignments = recognition.query_assignments(recognizer)
        fast_side = _fast_side(pixels, recognizer)
        with timed(timings, "local_features"):
            features = recognizer.query_features(pixels, assignments, fast_side)
        vector = embedding.result()
        mirror = lambda: recognizer.query_features(ImageOps.mirror(pixels), assignments)  # noqa: E731
        full_size = (lambda: recognizer.query_features(pixels, assignments)) if fast_side else None  # noqa: E731
        return Query(vector, features, mirror, full_size)

    return build


def _embed(extractor: FeatureExtractor, pixels: Image.Image, timings: dict) -> np.ndarray:
    with timed(timings, "embed"):
        return extractor.embed_one(pixels)


def _fast_side(pixels: Image.Image, recognizer) -> int | None:
    """The first-pass analysis size of the query cascade, or None when the photo would be analysed at the full
    query size anyway (small photos, or the cascade turned off)."""
    fast = recognition.options().get("FAST_QUERY_LONG_SIDE") or 0
    if 0 < fast < recognizer.query_side and max(pixels.size) > fast:
        return fast
    return None


def _photo(image_id: int, photos: QuerySet[ProductImage]) -> ProductImage:
    photo = photos.filter(pk=image_id).first()
    if photo is None:
        raise UnknownImage(f"No image with id {image_id}.")
    return photo


def _stored_vector_of(photo: ProductImage) -> QueryBuilder:
    """'More like this': reuse the stored vector and local features; embed the file only when it has no vector."""

    def build(extractor: FeatureExtractor, recognizer, timings: dict) -> Query:
        features = None
        if recognizer is not None:
            features = recognition.stored_features([photo.sha256], recognizer.feature_id).get(photo.sha256)
        return Query(_vector(extractor, timings), features)

    def _vector(extractor: FeatureExtractor, timings: dict) -> np.ndarray:
        stored = stored_vectors([photo.sha256], extractor.id).get(photo.sha256)
        if stored is not None:
            return stored
        try:
            with timed(timings, "decode"):
                pixels = load_stored_image(photo)
        except (OSError, ImageRejected) as exc:  # its file is gone or damaged: the photo's state, not the request
            raise ImageUnavailable(photo.pk) from exc
        with timed(timings, "embed"):
            return extractor.embed_one(pixels)

    return build


def load_matches(hits: list[SearchHit]) -> list[ProductMatch]:
    """Products and photos for ranked hits in two queries, keeping the ranking. Hits whose photo or product has
    gone (an index lagging behind a delete) or became inactive are dropped rather than shown."""
    images = ProductImage.objects.in_bulk([hit.image_id for hit in hits])
    products = Product.objects.browsable().in_bulk([hit.product_id for hit in hits])
    matches = []
    for hit in hits:
        image, product = images.get(hit.image_id), products.get(hit.product_id)
        if image is not None and product is not None and image.product_id == product.pk:
            image.product = product  # saves a query per result when templates follow image.product
            matches.append(ProductMatch(product, image, hit.score, getattr(hit, "match", SIMILAR),
                                        getattr(hit, "inliers", 0)))
    return matches

