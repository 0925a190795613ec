"""Photos → stored vectors. A vector is computed once per (file content, extractor) and kept in the database."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from catalog.models import ProductImage

from ..extractors.base import FeatureExtractor
from ..imaging import ImageRejected, decode_image
from ..models import ImageEmbedding, vector_from_bytes, vector_to_bytes

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
    outcome = EmbedOutcome(vectors=stored_vectors([i.sha256 for i in images], extractor.id))
    todo = _one_per_content([i for i in images if i.sha256 not in outcome.vectors])
    decoded = _decode_all(todo, outcome.errors)
    if decoded:
        try:
            vectors = extractor.embed([pixels for _, pixels in decoded])
        except Exception as exc:  # a model failure must mark images failed, not lose them
            logger.exception("embedding %d images failed", len(decoded))
            outcome.errors.update({image.pk: f"embedding failed: {exc}" for image, _ in decoded})
            return outcome
        _store(decoded, vectors, extractor)
        outcome.vectors.update({image.sha256: vector for (image, _), vector in zip(decoded, vectors)})
        outcome.computed = len(decoded)
    return outcome


def _one_per_content(images: Sequence[ProductImage]) -> list[ProductImage]:
    return list({image.sha256: image for image in images}.values())


def _decode_all(images: Sequence[ProductImage], errors: dict[int, str]):
    decoded = []
    for image in images:
        try:
            decoded.append((image, load_stored_image(image)))
        except Exception as exc:  # one bad file must fail alone, never stop a batch or a reindex
            errors[image.pk] = f"cannot read image: {exc}"
    return decoded


def load_stored_image(image: ProductImage):
    with image.image.open("rb") as stored:
        data = stored.read()
    return decode_image(data, max_pixels=settings.VISUALSEARCH["MAX_PIXELS"])


def _store(decoded, vectors: np.ndarray, extractor: FeatureExtractor) -> None:
    ImageEmbedding.objects.bulk_create(
        [
            ImageEmbedding(sha256=image.sha256, extractor_id=extractor.id, dim=extractor.dim, vector=vector_to_bytes(v))
            for (image, _), v in zip(decoded, vectors)
        ],
        ignore_conflicts=True,  # a concurrent worker stored the same content first: same vector, keep theirs
    )
