"""Catalog changes → index work after the transaction commits.

Changes within one transaction are collected into one batch and handed over once, on commit, so an admin page
that saves a product with five photos costs one model batch and one bulk index write. Work is described by ids
only and reconciled against the database when it runs, which makes a late, repeated or rolled-back batch harmless.

`QuerySet.update()`, `bulk_update()` and raw SQL send no signals: after changing product categories,
prices, stock or `is_active` that way, run `manage.py reindex --products` (re-sends product fields, no model work).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save

from catalog.models import IndexStatus, Product, ProductImage

from . import tasks

logger = logging.getLogger(__name__)
_local = threading.local()
# The product fields index entries carry (searches filter on them before ranking). A save that changes none of them
# (title, description) sends nothing: re-sending would write every photo and, in-process, make every other process
# reload all vectors. A price or stock change re-sends only that product's photos.
INDEXED_PRODUCT_FIELDS = ("category", "is_active", "price", "stock")
_STORED = "_visualsearch_indexed_fields"  # pre_save → post_save, on the instance being saved


@dataclass
class _Batch:
    image_ids: set[int] = field(default_factory=set)
    product_ids: set[int] = field(default_factory=set)

    def flush(self) -> None:
        if _local.__dict__.get("batch") is self:
            del _local.batch
        tasks.schedule_sync(image_ids=self.image_ids, product_ids=self.product_ids)


def _current_batch() -> _Batch:
    """The batch of the current transaction; a new one if the last was flushed or discarded by a rollback."""
    batch = getattr(_local, "batch", None)
    connection = transaction.get_connection()
    if batch is None or not any(callback == batch.flush for _, callback, _ in connection.run_on_commit):
        batch = _local.batch = _Batch()
        # robust: an exception while indexing is logged and never turns a committed admin save into an error.
        transaction.on_commit(batch.flush, robust=True)
    return batch


def _queue(*, image_id: int | None = None, product_id: int | None = None) -> None:
    if not transaction.get_connection().in_atomic_block:
        # Autocommit: the change is already committed; run now (robustly) instead of batching.
        _safely(lambda: tasks.schedule_sync(image_ids={image_id} - {None}, product_ids={product_id} - {None}))
        return
    batch = _current_batch()
    if image_id is not None:
        batch.image_ids.add(image_id)
    if product_id is not None:
        batch.product_ids.add(product_id)


def _safely(work) -> None:
    try:
        work()
    except Exception:
        logger.exception("index work failed; the change is saved and `reindex --missing` will catch up")


def image_saved(sender, instance: ProductImage, raw: bool = False, **kwargs) -> None:
    if raw:  # fixture loads: `reindex` indexes them in bulk afterwards
        return
    if instance.index_status != IndexStatus.PENDING:
        ProductImage.objects.filter(pk=instance.pk).update(index_status=IndexStatus.PENDING, index_error="")
        instance.index_status = IndexStatus.PENDING
    _queue(image_id=instance.pk)


def image_deleted(sender, instance: ProductImage, **kwargs) -> None:
    _queue(image_id=instance.pk)


def product_saving(sender, instance: Product, raw: bool = False, update_fields=None, **kwargs) -> None:
    """Remember the indexed fields as stored, so product_saved can tell whether this save changes them."""
    if raw or instance._state.adding:
        return
    if update_fields is not None and not set(update_fields) & set(INDEXED_PRODUCT_FIELDS):
        stored = _indexed_fields(instance)  # not written by this save
    else:
        stored = Product.objects.filter(pk=instance.pk).values_list(*INDEXED_PRODUCT_FIELDS).first()
    setattr(instance, _STORED, stored)


def product_saved(sender, instance: Product, created: bool = False, raw: bool = False, **kwargs) -> None:
    if raw or created:  # a new product has no indexed photos yet
        return
    stored = instance.__dict__.pop(_STORED, None)
    if stored is not None and tuple(stored) == _indexed_fields(instance):
        return
    _queue(product_id=instance.pk)


def _indexed_fields(instance: Product) -> tuple:
    return tuple(getattr(instance, name) for name in INDEXED_PRODUCT_FIELDS)


def connect() -> None:
    post_save.connect(image_saved, sender=ProductImage, dispatch_uid="visualsearch.image_saved")
    post_delete.connect(image_deleted, sender=ProductImage, dispatch_uid="visualsearch.image_deleted")
    pre_save.connect(product_saving, sender=Product, dispatch_uid="visualsearch.product_saving")
    post_save.connect(product_saved, sender=Product, dispatch_uid="visualsearch.product_saved")
