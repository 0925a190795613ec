"""Photo files follow their rows: the file of a deleted photo, and the file a new upload replaced, are removed from
storage once the transaction commits (never before: a rollback keeps the row, so it must keep its file), unless
another photo row still names the same file. Files left behind anyway (a crash between the row and the file, a
bulk `QuerySet.delete()` that sends no signal) are found by `manage.py media_orphans`."""
from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_delete, post_init, post_save

from .models import ProductImage

logger = logging.getLogger(__name__)
_STORED = "_catalog_stored_file"


def connect() -> None:
    post_init.connect(_remember, sender=ProductImage, dispatch_uid="catalog.housekeeping.remember")
    post_save.connect(_after_save, sender=ProductImage, dispatch_uid="catalog.housekeeping.save")
    post_delete.connect(_after_delete, sender=ProductImage, dispatch_uid="catalog.housekeeping.delete")


def _remember(instance: ProductImage, **kwargs) -> None:
    if "image" in instance.__dict__:  # not deferred
        value = instance.__dict__["image"]
        instance.__dict__[_STORED] = getattr(value, "name", value) or ""


def _after_save(instance: ProductImage, **kwargs) -> None:
    old, new = instance.__dict__.get(_STORED), instance.image.name
    if old and old != new:
        _delete_after_commit(instance.image.storage, old)
    instance.__dict__[_STORED] = new


def _after_delete(instance: ProductImage, **kwargs) -> None:
    if instance.image.name:
        _delete_after_commit(instance.image.storage, instance.image.name)


def _delete_after_commit(storage, name: str) -> None:
    def delete() -> None:
        if ProductImage.objects.filter(image=name).exists():
            return  # another photo row uses this very file
        try:
            storage.delete(name)
        except OSError as exc:  # the photo row is gone or moved on either way; an orphan is the worst case
            logger.warning("could not delete photo file %s: %s", name, exc)

    transaction.on_commit(delete, robust=True)
