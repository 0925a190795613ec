"""The feature-extractor interface: images in, unit-length float32 vectors out."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from PIL import Image


class FeatureExtractor(ABC):
    """A CNN that turns RGB images into L2-normalised vectors.

    ``id`` names the vector space: it must change whenever the model, its weights or its preprocessing change,
    because vectors from different spaces are never comparable. Every stored vector and index is tagged with it.
    """

    id: str
    dim: int

    @abstractmethod
    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Return an ``(len(images), dim)`` float32 array of unit rows for decoded RGB images."""

    def embed_one(self, image: Image.Image) -> np.ndarray:
        return self.embed([image])[0]


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length (zero rows stay zero), as float32. Done once, here, so no backend has to."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


class ExtractorConfigurationError(Exception):
    """The extractor cannot be built as configured (missing weights, bad options)."""
