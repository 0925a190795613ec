"""Image → products. The one search path behind the API, the shopper page, the admin and `evaluate`."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.db.models import QuerySet
from PIL import Image

from catalog.models import Product, ProductImage

from ..backends.base import SearchFilters, SearchHit
from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected, decode_image
from ..registry import get_extractor, get_index
from .embedding import load_stored_image, stored_vectors
from .indexing import ensure_loaded


class UnknownImage(LookupError):
    """``image_id`` names no photo (for shoppers: no photo of a product they may see)."""


class ImageUnavailable(ImageRejected):
    """The photo exists but cannot be searched with: it has no stored vector and its file cannot be read."""

    def __init__(self, image_id: int) -> None:
        super().__init__("image_unavailable", f"Image {image_id} has no stored vector and its file cannot be read.")


@dataclass(frozen=True)
class ProductMatch:
    product: Product
    image: ProductImage
    score: float


@dataclass
class SearchResult:
    extractor_id: str
    matches: list[ProductMatch]
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, embed, search, assemble, total

    @property
    def took_ms(self) -> float:
        return self.timings_ms.get("total", 0.0)


QueryVector = Callable[[FeatureExtractor, dict], np.ndarray]


def decode_query(image_bytes: bytes) -> Image.Image:
    """An uploaded query photo, decoded at the size the extractors need. Decode once and pass the pixels on
    (``search_by_image(image=...)``) when the caller needs them too, e.g. for a preview."""
    return decode_image(image_bytes, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])


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
) -> SearchResult:
    """The most similar active products to a photo, one per product, best first.

    The photo is uploaded bytes, already decoded ``image`` pixels, or any stored photo by ``image_id`` (staff
    tools; shoppers go through ``more_like_this``), which is never returned as its own match.
    """
    if image_id is not None:
        photo = _photo(image_id, ProductImage.objects.all())
        query, exclude_image_ids = _stored_vector_of(photo), exclude_image_ids | {photo.pk}
    else:
        query = _uploaded_vector(image_bytes, image)
    return _search(query, limit=limit, offset=offset, threshold=threshold, category=category,
                   exclude_image_ids=exclude_image_ids)  # fmt: skip


def more_like_this(
    *,
    image_id: int,
    limit: int = 20,
    offset: int = 0,
    threshold: float | None = None,
    category: str | None = None,
    exclude_product: bool = False,
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
                   exclude_image_ids=frozenset(excluded))  # fmt: skip


def _search(query: QueryVector, *, limit, offset, threshold, category, exclude_image_ids) -> SearchResult:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    extractor = get_extractor()
    vector = query(extractor, timings)
    with _timed(timings, "search"):
        index = ensure_loaded(get_index())
        threshold = settings.VISUALSEARCH["SEARCH_THRESHOLD"] if threshold is None else threshold
        filters = SearchFilters(active_only=True, category=category or None, exclude_image_ids=exclude_image_ids)
        hits = index.search(vector, limit=limit, offset=offset, threshold=threshold, filters=filters)
    with _timed(timings, "assemble"):
        matches = load_matches(hits)
    timings["total"] = (time.perf_counter() - started) * 1000
    return SearchResult(extractor.id, matches, timings)


def _uploaded_vector(image_bytes: bytes | None, image: Image.Image | None) -> QueryVector:
    def vector(extractor: FeatureExtractor, timings: dict) -> np.ndarray:
        pixels = image
        if pixels is None:
            with _timed(timings, "decode"):
                pixels = decode_query(image_bytes or b"")
        with _timed(timings, "embed"):
            return extractor.embed_one(pixels)

    return vector


def _photo(image_id: int, photos: QuerySet[ProductImage]) -> ProductImage:
    photo = photos.filter(pk=image_id).first()
    if photo is None:
        raise UnknownImage(f"No image with id {image_id}.")
    return photo


def _stored_vector_of(photo: ProductImage) -> QueryVector:
    """'More like this': reuse the stored vector; embed the file only when it has none yet."""

    def vector(extractor: FeatureExtractor, timings: dict) -> np.ndarray:
        stored = stored_vectors([photo.sha256], extractor.id).get(photo.sha256)
        if stored is not None:
            return stored
        try:
            with _timed(timings, "decode"):
                pixels = load_stored_image(photo)
        except (OSError, ImageRejected) as exc:  # its file is gone or damaged: the photo's state, not the request
            raise ImageUnavailable(photo.pk) from exc
        with _timed(timings, "embed"):
            return extractor.embed_one(pixels)

    return vector


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
            matches.append(ProductMatch(product, image, hit.score))
    return matches


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000
