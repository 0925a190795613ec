"""Celery entry points: thin wrappers around the same services the inline runner calls."""
from __future__ import annotations

from celery import shared_task

from .tasks import run_sync


# acks_late: a worker killed mid-batch leaves the message for another. An unreachable index is not retried here:
# the photos stay `pending` in the database, which `reindex --missing` (cron) catches up.
@shared_task(acks_late=True)
def sync_index_task(*, image_ids: list[int], product_ids: list[int]) -> None:
    run_sync(image_ids=image_ids, product_ids=product_ids)
