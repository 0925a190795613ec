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


class VisualVocabulary(models.Model):
    """A trained visual vocabulary (``recognition.vocabulary``), kept as a file in the default storage because it
    is tens of MB (more than a database packet allows). The active one quantises every photo and every query;
    ``vocabulary_id`` (a hash of its content) is part of every stored feature id, so a new vocabulary can never mix
    with words of an old one: switching means `reindex`."""

    vocabulary_id = models.CharField(max_length=64, unique=True)
    file = models.FileField(upload_to="visualsearch/vocabularies/", max_length=300)
    words = models.PositiveIntegerField()
    photos = models.PositiveIntegerField(help_text="Catalog photos it was trained on.")
    descriptors = models.PositiveIntegerField(help_text="Training descriptors.")
    is_active = models.BooleanField(default=False, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.vocabulary_id}{' (active)' if self.is_active else ''}"


class LocalFeatureSet(models.Model):
    """One photo's recognition data per (file content, feature id): keypoint geometry, visual words and
    Hamming-embedding signatures in ``recognition.packing`` format (~19 bytes per keypoint, no descriptors).
    Like ImageEmbedding, the source of truth every index rebuild reads, without decoding images again."""

    sha256 = models.CharField(max_length=64)
    feature_id = models.CharField(max_length=100)  # extraction settings + vocabulary id
    keypoints = models.PositiveIntegerField()
    data = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["sha256", "feature_id"], name="unique_local_features_per_id"),
            models.CheckConstraint(condition=~models.Q(sha256=""), name="local_features_sha256_not_empty"),
        ]

    def __str__(self) -> str:
        return f"{self.sha256[:12]} @ {self.feature_id} ({self.keypoints} keypoints)"


class UnmatchedSearch(models.Model):
    """A shopper search whose best product fell below the threshold: what shoppers look for and the catalog
    lacks. Privacy-safe by default: no photo, address or user is kept; rows expire (UNMATCHED_SEARCH_DAYS)."""

    class Source(models.TextChoices):
        PAGE = "page", "Shopper page"
        API = "api", "API"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    source = models.CharField(max_length=10, choices=Source.choices)
    # One row per photo and filters (a reload or a second page of the same search is not a new search).
    query_key = models.CharField(max_length=64, unique=True)
    category = models.CharField(max_length=100, blank=True)
    filters = models.JSONField(default=dict, blank=True)  # price range, in stock, box: what narrowed the search
    best_score = models.FloatField(null=True, blank=True)  # the nearest product's score (None: none at all)
    nearest_product = models.ForeignKey("catalog.Product", null=True, blank=True, on_delete=models.SET_NULL,
                                        related_name="+")
    photo = models.ImageField(upload_to="unmatched/%Y/%m/", blank=True)  # only with KEEP_UNMATCHED_PHOTOS

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "search that found nothing close"
        verbose_name_plural = "searches that found nothing close"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.category or 'any category'}"


class PendingIndexDelete(models.Model):
    """A deleted photo whose removal from the index has not been confirmed (the index was down). Its row is gone,
    so this is the only record of it: the next successful index write, or `reindex --missing`, sends it."""

    image_id = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"delete image {self.image_id}"
