"""The shop's own data. Knows nothing about visual search; visualsearch reacts to changes here via signals."""
from __future__ import annotations

import hashlib
import re

from django.core import checks
from django.core.files import File
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models.fields.files import ImageFieldFile
from django.db.models.signals import post_init
from django.urls import reverse


class ProductQuerySet(models.QuerySet):
    def browsable(self) -> ProductQuerySet:
        """Products a shopper may see."""
        return self.filter(is_active=True)

    def categories(self) -> list[str]:
        """The distinct non-empty categories of these products, sorted."""
        return list(self.exclude(category="").order_by("category").values_list("category", flat=True).distinct())


class Product(models.Model):
    # The key that groups a product's photos (the seed's relation_id); stable across imports, unlike the pk.
    relation_id = models.CharField(max_length=255, unique=True)
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True,
                                validators=[MinValueValidator(0)])
    # Units available; empty when the shop does not track stock (such a product always counts as in stock).
    stock = models.PositiveIntegerField(null=True, blank=True, help_text="Units available; leave empty if not tracked.")
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

    @property
    def in_stock(self) -> bool:
        return self.stock is None or self.stock > 0


def product_image_path(instance: ProductImage, filename: str) -> str:
    return f"products/{instance.product.relation_id[:80]}/{filename}"


class IndexStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    INDEXED = "indexed", "Indexed"
    FAILED = "failed", "Failed"


_CONTENT_HASH = re.compile(r"[0-9a-f]{64}")


def is_content_hash(value: str) -> bool:
    """A real sha256 digest, as opposed to empty or the ``unhashed:<pk>`` placeholder left by migration 0002."""
    return bool(_CONTENT_HASH.fullmatch(value or ""))


class ContentFieldFile(ImageFieldFile):
    def save(self, name, content, save=True) -> None:
        # Hash the bytes being written (an upload in memory or a temp file, not read back from storage). The name
        # cannot tell a new file: storages that overwrite keep it.
        content = content if hasattr(content, "chunks") else File(content, name)  # as Storage.save() accepts
        digest = file_sha256(content)
        super().save(name, content, save=False)
        self.field.record_file(self.instance, digest)
        if save:
            self.instance.save()

    save.alters_data = True


class ContentImageField(models.ImageField):
    """An ImageField that keeps the sha256 of its file in ``hash_field``, as it keeps the size in width_field.

    The hash is taken whenever a file is written through the field, and on every save or ``bulk_create`` where
    the file is not the one the hash was taken of: another stored name assigned, or no real hash yet. A hash
    that comes with its file name (loaded from the database, or given to the constructor) is trusted.
    """

    attr_class = ContentFieldFile

    def __init__(self, *args, hash_field: str, **kwargs) -> None:
        self.hash_field = hash_field
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, path, args, {**kwargs, "hash_field": self.hash_field}

    def contribute_to_class(self, cls, name, **kwargs) -> None:
        super().contribute_to_class(cls, name, **kwargs)
        if not cls._meta.abstract:
            post_init.connect(self._remember_hashed_name, sender=cls)

    def check(self, **kwargs):
        return [*super().check(**kwargs), *self._check_hash_field()]

    def _check_hash_field(self) -> list[checks.Error]:
        names = [f.name for f in self.model._meta.concrete_fields]
        if self.hash_field in names and names.index(self.hash_field) > names.index(self.name):
            return []
        # pre_save runs in field order: the hash it sets is written only if its field comes later.
        message = f"hash_field '{self.hash_field}' must name a field declared after '{self.name}'."
        return [checks.Error(message, obj=self, id="catalog.E001")]

    @property
    def _hashed_name_key(self) -> str:
        return f"_{self.attname}_hashed_name"

    def _remember_hashed_name(self, instance, **kwargs) -> None:
        if self.attname in instance.__dict__:  # not deferred
            value = instance.__dict__[self.attname]
            instance.__dict__[self._hashed_name_key] = getattr(value, "name", value)

    def record_file(self, instance, digest: str) -> None:
        """The instance's file is new: keep its hash, and its size (Django measures only a file replacing one)."""
        setattr(instance, self.hash_field, digest)
        instance.__dict__[self._hashed_name_key] = getattr(instance, self.attname).name
        self.update_dimension_fields(instance, force=True)

    def pre_save(self, model_instance, add: bool):
        file = super().pre_save(model_instance, add)  # stores a new upload, which hashes it
        if file and not self._hash_is_current(model_instance, file):
            self.record_file(model_instance, file_sha256(file))
        return file

    def _hash_is_current(self, instance, file) -> bool:
        return is_content_hash(getattr(instance, self.hash_field)) and (
            file.name == instance.__dict__.get(self._hashed_name_key)
        )


class ProductImage(models.Model):
    product = models.ForeignKey(Product, related_name="images", on_delete=models.CASCADE)
    image = ContentImageField(
        upload_to=product_image_path, width_field="width", height_field="height", hash_field="sha256", max_length=500
    )
    # Content address of the file: identical uploads share one embedding (see visualsearch.models.ImageEmbedding).
    # Never empty (a constraint): photos with an empty hash would all be one content, and so get one vector.
    sha256 = models.CharField(max_length=64, editable=False, db_index=True)
    width = models.PositiveIntegerField(null=True, editable=False)
    height = models.PositiveIntegerField(null=True, editable=False)
    position = models.PositiveIntegerField(default=0, help_text="Display order; the lowest is the main photo.")
    # Where `import_catalog` got the photo (URL or path as written in the import): a re-import finds it here and
    # neither downloads nor embeds it again. Empty for photos uploaded by hand.
    source_url = models.CharField(max_length=2000, blank=True, editable=False)
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
        constraints = [models.CheckConstraint(condition=~models.Q(sha256=""), name="productimage_sha256_not_empty")]

    def __str__(self) -> str:
        return f"Image {self.pk} of {self.product.relation_id}"

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "image" in update_fields:
            # Saving the file (re)computes these in the image field's pre_save: write them with it.
            kwargs["update_fields"] = {*update_fields, "sha256", "width", "height"}
        super().save(*args, **kwargs)


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


def category_exists(category: str) -> bool:
    """Whether shoppers can see any product of this category (filters name only real ones)."""
    return Product.objects.browsable().filter(category=category).exists()


class CatalogImport(models.Model):
    """An import started from the admin: its file, progress and per-row report (runs in the background)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Stopped by an error"

    file = models.FileField(upload_to="imports/%Y/%m/", help_text="CSV (header row) or JSON Lines (.jsonl)")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True)  # created, updated, unchanged, photos added / kept / removed
    failures = models.JSONField(default=list, blank=True)  # [{line, relation_id, source, code, message}], capped
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Import {self.pk} ({self.file.name.rsplit('/', 1)[-1]})"
