"""The shop's own data. Knows nothing about visual search; visualsearch reacts to changes here via signals."""
from __future__ import annotations

import hashlib

from django.db import models
from django.urls import reverse


class ProductQuerySet(models.QuerySet):
    def browsable(self) -> ProductQuerySet:
        """Products a shopper may see."""
        return self.filter(is_active=True)


class Product(models.Model):
    # The key that groups a product's photos (the seed's relation_id); stable across imports, unlike the pk.
    relation_id = models.CharField(max_length=255, unique=True)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    is_active = models.BooleanField(default=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["title", "pk"]

    def __str__(self) -> str:
        return f"{self.title} ({self.relation_id})"

    def get_absolute_url(self) -> str:
        return reverse("catalog:product-detail", args=[self.pk])


def product_image_path(instance: ProductImage, filename: str) -> str:
    return f"products/{instance.product.relation_id[:80]}/{filename}"


class IndexStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    INDEXED = "indexed", "Indexed"
    FAILED = "failed", "Failed"


class ProductImage(models.Model):
    product = models.ForeignKey(Product, related_name="images", on_delete=models.CASCADE)
    image = models.ImageField(upload_to=product_image_path, width_field="width", height_field="height", max_length=500)
    # Content address of the file: identical uploads share one embedding (see visualsearch.models.ImageEmbedding).
    sha256 = models.CharField(max_length=64, editable=False, db_index=True)
    width = models.PositiveIntegerField(null=True, editable=False)
    height = models.PositiveIntegerField(null=True, editable=False)
    position = models.PositiveIntegerField(default=0, help_text="Display order; the lowest is the main photo.")
    # Visible state of the derived index entry; the durable record of pending work (reindex --missing reads it).
    index_status = models.CharField(
        max_length=10, choices=IndexStatus.choices, default=IndexStatus.PENDING, db_index=True, editable=False
    )
    index_error = models.TextField(blank=True, editable=False)
    indexed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product", "position", "pk"]

    def __str__(self) -> str:
        return f"Image {self.pk} of {self.product.relation_id}"

    def save(self, *args, **kwargs) -> None:
        if self.image and (not self.sha256 or self._file_changed() or self.width is None):
            self.sha256 = file_sha256(self.image)
            # Django fills width/height only when a file replaces another; a first upload needs this.
            self._meta.get_field("image").update_dimension_fields(self, force=True)
        super().save(*args, **kwargs)

    def _file_changed(self) -> bool:
        # A freshly assigned upload has not been committed to storage yet.
        return bool(self.image) and not getattr(self.image, "_committed", True)


def file_sha256(field_file) -> str:
    """Hash of the file's bytes. Leaves an upload as it found it (open, at 0) for storage to save; a stored
    file opened here is closed again so bulk saves do not leak file descriptors."""
    digest = hashlib.sha256()
    was_closed = field_file.closed
    field_file.open("rb")
    field_file.seek(0)
    for chunk in field_file.chunks():
        digest.update(chunk)
    field_file.seek(0)
    if was_closed:
        field_file.close()
    return digest.hexdigest()
