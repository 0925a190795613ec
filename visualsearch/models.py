"""Stored vectors: the source of truth every index is rebuilt from, without running the model again."""
from __future__ import annotations

import numpy as np
from django.db import models


class ImageEmbeddingQuerySet(models.QuerySet):
    def for_extractor(self, extractor_id: str) -> ImageEmbeddingQuerySet:
        return self.filter(extractor_id=extractor_id)


class ImageEmbedding(models.Model):
    """One vector per (file content, extractor): identical files uploaded twice, or shared by several products,
    are embedded once."""

    sha256 = models.CharField(max_length=64)
    extractor_id = models.CharField(max_length=100)
    dim = models.PositiveIntegerField()
    vector = models.BinaryField()  # float32 little-endian, unit length
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ImageEmbeddingQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["sha256", "extractor_id"], name="unique_embedding_per_model")]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} @ {self.extractor_id}"


def vector_to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector_from_bytes(data: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f4").astype(np.float32)


class IndexGeneration(models.Model):
    """A counter bumped by every index write, per extractor.

    In-process indexes compare it with the generation they last applied to notice writes made by other
    processes (a `reindex` run, another worker) and reload; remote indexes ignore it.
    """

    extractor_id = models.CharField(max_length=100, unique=True)
    generation = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.extractor_id}: {self.generation}"
