"""Image → products. The one search path behind the API, the shopper page, the admin and `evaluate`."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from catalog.models import Product, ProductImage

from ..backends.base import SearchFilters, SearchHit
from ..imaging import decode_image
from ..registry import get_extractor, get_index
from .embedding import load_stored_image, stored_vectors
from .indexing import ensure_loaded


class UnknownImage(LookupError):
    """``image_id`` names no photo."""


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


def search_by_image(
    *,
    image_bytes: bytes | None = None,
    image_id: int | None = None,
    limit: int = 20,
    offset: int = 0,
    threshold: float | None = None,
    category: str | None = None,
    exclude_image_ids: frozenset[int] = frozenset(),
) -> SearchResult:
    """The most similar active products to an uploaded photo or a stored one, one per product, best first."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    extractor = get_extractor()
    vector = _query_vector(extractor, image_bytes, image_id, timings)
    with _timed(timings, "search"):
        index = ensure_loaded(get_index())
        threshold = settings.VISUALSEARCH["SEARCH_THRESHOLD"] if threshold is None else threshold
        filters = SearchFilters(active_only=True, category=category or None, exclude_image_ids=exclude_image_ids)
        hits = index.search(vector, limit=limit, offset=offset, threshold=threshold, filters=filters)
    with _timed(timings, "assemble"):
        matches = load_matches(hits)
    timings["total"] = (time.perf_counter() - started) * 1000
    return SearchResult(extractor.id, matches, timings)


def _query_vector(extractor, image_bytes, image_id, timings) -> np.ndarray:
    if image_id is not None:
        return _stored_image_vector(extractor, image_id, timings)
    with _timed(timings, "decode"):
        pixels = decode_image(image_bytes or b"", max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])
    with _timed(timings, "embed"):
        return extractor.embed_one(pixels)


def _stored_image_vector(extractor, image_id: int, timings) -> np.ndarray:
    """'More like this': reuse the stored vector; embed the file only when it has none yet."""
    image = ProductImage.objects.filter(pk=image_id).first()
    if image is None:
        raise UnknownImage(f"No image with id {image_id}.")
    stored = stored_vectors([image.sha256], extractor.id).get(image.sha256)
    if stored is not None:
        return stored
    with _timed(timings, "decode"):
        pixels = load_stored_image(image)
    with _timed(timings, "embed"):
        return extractor.embed_one(pixels)


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
